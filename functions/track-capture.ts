import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { captureDepsFromEnv } from '../shared/capture/deps.ts';
import type { CaptureDeps } from '../shared/capture/start-capture.ts';
import {
  sweepTimedOutCaptures,
  type TrackOutcome,
  trackCommandStatus,
} from '../shared/capture/track-capture.ts';
import { makeLogger } from '../shared/observability.ts';

const logger = makeLogger('track-capture');

/**
 * EventBridge "EC2 Command Invocation Status-change Notification" (source aws.ssm) → manifest,
 * lock release, notifications. A "Scheduled Event" (optional schedule on this function) only
 * runs the timed-out sweep; every status event runs it too, after its own work.
 */
export function makeHandler(deps: () => CaptureDeps) {
  return middy(async (event: { 'detail-type'?: string } & Record<string, unknown>) => {
    const d = deps();
    let tracked: TrackOutcome | undefined;
    if (event['detail-type'] !== 'Scheduled Event') {
      tracked = await trackCommandStatus(event, d);
      logger.info('command status tracked', { ...tracked });
    }
    const timedOut = await sweepTimedOutCaptures(d).catch((error) => {
      logger.error('timed-out sweep failed', { error: String(error) });
      return [];
    });
    return { tracked, timedOut };
  }).use(injectLambdaContext(logger));
}

export const handler = makeHandler(() => captureDepsFromEnv(logger));
