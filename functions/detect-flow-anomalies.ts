import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { captureDepsFromEnv } from '../shared/capture/deps.ts';
import { evidenceStore, notifyDeps, startCapture } from '../shared/capture/start-capture.ts';
import {
  type DetectDeps,
  type DetectReport,
  detectFlowAnomalies,
} from '../shared/detection/detect.ts';
import { TaplineError } from '../shared/errors.ts';
import { makeLogger } from '../shared/observability.ts';
import { loadRules } from '../shared/rules/config.ts';

const logger = makeLogger('detect-flow-anomalies');

/**
 * VPC Flow Logs → findings → notifications → capture requests. Accepts CloudWatch Logs
 * subscription deliveries, S3 notifications and EventBridge "Object Created" events for the
 * flow-log bucket. Bad records are counted (never fatal); a batch or capture that failed for a
 * reason a retry can fix (S3 or SSM unavailable) makes the invocation fail after everything else
 * was handled, so Lambda retries it; the capture core's cooldown holds back repeated captures.
 */
export async function depsFromEnv(): Promise<DetectDeps> {
  const captureDeps = captureDepsFromEnv(logger);
  const { config, clients } = captureDeps;
  return {
    rules: loadRules(config.RULES_OVERRIDE),
    flowLogFormat: config.FLOW_LOG_FORMAT,
    s3: clients.s3,
    logger,
    notify: await notifyDeps(captureDeps),
    // finding-notice markers: one notification per fingerprint and rules.notifyWindowSeconds
    notices: await evidenceStore(captureDeps),
    startCapture: (request) =>
      startCapture(request, { ...captureDeps, invokedBy: 'tapline detect-flow-anomalies' }),
  };
}

export interface DetectResponse {
  batches: number;
  records: number;
  malformed: number;
  /** Sources damaged part-way (read up to the damage; their findings kept; not retried). */
  damaged: string[];
  findings: Array<{ rule: string; fingerprint: string; severity: string; records: number }>;
  captures: DetectReport['captures'];
  /** Findings not published: their fingerprint was already published in this window. */
  notificationsSuppressed: number;
}

/** Deps are built once per container (config, rules, topic ARN) and reused. */
export function makeHandler(deps: () => Promise<DetectDeps>) {
  let cached: Promise<DetectDeps> | undefined;
  return middy(async (event: unknown, _context: Context): Promise<DetectResponse> => {
    cached ??= deps().catch((error: unknown) => {
      cached = undefined;
      throw error;
    });
    const report = await detectFlowAnomalies(event, await cached);
    const response: DetectResponse = {
      batches: report.batches.length,
      records: report.batches.reduce((n, b) => n + b.stats.records, 0),
      malformed: report.batches.reduce((n, b) => n + b.stats.malformed, 0),
      damaged: report.batches.filter((b) => b.damaged).map((b) => b.source),
      findings: report.findings.map((f) => ({
        rule: f.rule,
        fingerprint: f.fingerprint,
        severity: f.severity,
        records: f.records,
      })),
      captures: report.captures,
      notificationsSuppressed: report.notificationsSuppressed,
    };
    logger.info('flow-log batch done', { ...response });
    if (report.retryable > 0) {
      throw new TaplineError(
        `${report.retryable} flow-log batch(es) or capture(s) failed and will be retried`,
        {
          code: 'FLOW_LOG_BATCH_FAILED',
          details: {
            batches: report.batches.filter((b) => b.error && !b.damaged).map((b) => b.source),
            captures: report.captures
              .filter((c) => c.status === 'failed')
              .map((c) => c.fingerprint),
          },
        },
      );
    }
    return response;
  }).use(injectLambdaContext(logger));
}

export const handler = makeHandler(depsFromEnv);
