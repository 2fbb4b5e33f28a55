import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { captureDepsFromEnv } from '../shared/capture/deps.ts';
import { rollingCapture } from '../shared/capture/rolling-capture.ts';
import type { CaptureDeps } from '../shared/capture/start-capture.ts';
import { makeLogger } from '../shared/observability.ts';

const logger = makeLogger('rolling-capture');

/** EventBridge schedule → a capture on every ROLLING_TAG host for the interval plus overlap. */
export function makeHandler(deps: () => CaptureDeps) {
  return middy(async (event: { 'detail-type'?: string; time?: string }) => {
    logger.info('rolling run', { detailType: event?.['detail-type'], time: event?.time });
    const outcome = await rollingCapture(deps());
    logger.info('rolling capture', {
      captureId: outcome.capture.captureId,
      started: outcome.capture.started.length,
      refused: outcome.capture.refused.length,
      timedOut: outcome.timedOut.length,
    });
    return outcome;
  }).use(injectLambdaContext(logger));
}

export const handler = makeHandler(() => captureDepsFromEnv(logger));
