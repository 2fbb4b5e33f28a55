import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { parser } from '@aws-lambda-powertools/parser/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { z } from 'zod';
import { captureDepsFromEnv } from '../shared/capture/deps.ts';
import type { CaptureRequestInput } from '../shared/capture/request.ts';
import { type CaptureDeps, startCapture } from '../shared/capture/start-capture.ts';
import { isTaplineError } from '../shared/errors.ts';
import { makeLogger } from '../shared/observability.ts';

const logger = makeLogger('start-capture');

/** Anything JSON-object-shaped reaches the core, which validates it (typed errors, not a crash). */
const invokeEventSchema = z.record(z.string(), z.unknown());

export interface StartCaptureResponse {
  ok: boolean;
  captureId?: string;
  state?: string;
  started?: unknown[];
  refused?: unknown[];
  manifestKey?: string;
  deadline?: string;
  ssmAvailabilityUnknown?: string;
  error?: { name: string; code: string; message: string; details?: Record<string, unknown> };
}

/**
 * Manual captures (`serverless invoke -f startCapture --data '{…}'`, Lambda Invoke, the CLI).
 * Always answers with a structured result: started and refused hosts, or the validation error
 * with the field, token and position that are wrong. Only infrastructure failures throw.
 */
export function makeHandler(deps: () => CaptureDeps) {
  return middy(
    async (
      event:
        | { success: true; data: Record<string, unknown> }
        | { success: false; error: Error; originalEvent?: unknown },
      context: Context,
    ): Promise<StartCaptureResponse> => {
      if (!event.success) {
        return {
          ok: false,
          error: {
            name: 'MalformedEventError',
            code: 'EVENT_MALFORMED',
            message: 'the invoke payload must be a JSON object (a capture request)',
          },
        };
      }
      // A caller cannot claim to be the schedule or the detector through this function.
      // Unvalidated here on purpose: startCapture validates and answers with typed errors.
      const request = {
        ...event.data,
        source: event.data.source === 'cli' ? 'cli' : 'manual',
      } as CaptureRequestInput;
      const base = deps();
      const invokedBy = `lambda:${context.invokedFunctionArn ?? 'local'} request ${context.awsRequestId ?? 'local'}`;
      try {
        const outcome = await startCapture(request, { ...base, invokedBy });
        return { ok: outcome.started.length > 0, ...outcome };
      } catch (error) {
        if (isTaplineError(error)) {
          logger.warn('capture request rejected', { error: error.toJSON() });
          return {
            ok: false,
            error: {
              name: error.name,
              code: error.code,
              message: error.message,
              details: error.details,
            },
          };
        }
        throw error;
      }
    },
  )
    .use(injectLambdaContext(logger))
    .use(parser({ schema: invokeEventSchema, safeParse: true }));
}

export const handler = makeHandler(() => captureDepsFromEnv(logger));
