import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import { makeLogger } from '../shared/observability.ts';

const logger = makeLogger('process-pcap');

/** Placeholder until its issue lands: logs the event shape and does nothing else. */
export const handler = middy(async (event: unknown) => {
  logger.info('event received', {
    keys: event && typeof event === 'object' ? Object.keys(event) : [],
  });
  return { ok: true };
}).use(injectLambdaContext(logger));
