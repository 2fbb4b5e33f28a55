import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { awsSettingsFromEnv, makeAwsClients } from '../shared/aws/clients.ts';
import { resolveKeyArn, resolveTopicArn } from '../shared/aws/resolve.ts';
import { getConfig } from '../shared/config.ts';
import { TaplineError } from '../shared/errors.ts';
import { makeLogger, makeMetrics } from '../shared/observability.ts';
import type { ProcessDeps, RecordResult } from '../shared/processing/index.ts';
import { processSqsRecord } from '../shared/processing/index.ts';

const logger = makeLogger('process-pcap');
const metrics = makeMetrics('process-pcap');

/** CloudWatch metrics (EMF) per record: what an alarm on integrity failures needs. */
function countOutcomes(result: RecordResult): void {
  for (const outcome of result.outcomes) {
    if (outcome.status !== 'processed') {
      metrics.addMetric('DuplicateDeliveries', MetricUnit.Count, 1);
      continue;
    }
    metrics.addMetric('PcapsProcessed', MetricUnit.Count, 1);
    metrics.addMetric('PcapBytesProcessed', MetricUnit.Bytes, outcome.bytesRead ?? 0);
    if (outcome.integrity !== 'verified')
      metrics.addMetric('PcapIntegrityFailures', MetricUnit.Count, 1);
    if (outcome.decodeStatus === 'unreadable')
      metrics.addMetric('PcapsUnreadable', MetricUnit.Count, 1);
  }
}

/** A record is not started with less time than this left (its retry comes back via SQS). */
const MIN_REMAINING_MS = 45_000;
/**
 * Reading a pcap must be over this long before the invocation's end: the time to write its
 * results, fail it cleanly and answer with the partial batch response.
 */
const RESERVE_MS = 20_000;

export interface HandlerTiming {
  /** Do not start a record with less time left than this. */
  minRemainingMs?: number;
  /** Stop reading a pcap this long before the invocation's end. */
  reserveMs?: number;
}

/** Clients, config, resolved key and topic: built once per container, rebuilt after a failure. */
async function productionDeps(): Promise<ProcessDeps> {
  const config = getConfig();
  const clients = makeAwsClients(awsSettingsFromEnv());
  const [kmsKeyArn, topicArn] = await Promise.all([
    resolveKeyArn(clients.kms, config.EVIDENCE_KEY_ID),
    resolveTopicArn(clients.sts, config.AWS_REGION, config.NOTIFICATION_TOPIC),
  ]);
  return {
    s3: clients.s3,
    notify: {
      eventBridge: clients.eventBridge,
      sns: clients.sns,
      eventBusName: config.EVENT_BUS_NAME,
      topicArn,
      logger,
    },
    config,
    kmsKeyArn,
    logger,
  };
}

/**
 * The SQS batch handler, built around a deps factory (tests pass their own). Records are
 * processed one after another (a pcap job is memory- and network-heavy); a record that throws
 * is reported in `batchItemFailures` and retried alone, the others are deleted.
 */
export function makeHandler(makeDeps: () => Promise<ProcessDeps>, timing: HandlerTiming = {}) {
  const minRemainingMs = timing.minRemainingMs ?? MIN_REMAINING_MS;
  const reserveMs = timing.reserveMs ?? RESERVE_MS;
  let deps: Promise<ProcessDeps> | undefined;
  const processor = new BatchProcessor(EventType.SQS);
  return middy(async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
    deps ??= makeDeps();
    const ready = await deps.catch((error: unknown) => {
      deps = undefined;
      throw error;
    });
    const recordHandler = async (record: SQSRecord) => {
      logger.appendKeys({ messageId: record.messageId });
      try {
        const remainingMs = context.getRemainingTimeInMillis();
        if (remainingMs < minRemainingMs || remainingMs <= reserveMs) {
          // Starting a pcap we cannot finish would end in a timeout that returns the whole
          // batch to the queue; failing this record alone lets SQS hand it over again.
          throw new TaplineError('not enough time left in this invocation; record deferred', {
            code: 'PROCESSING_DEFERRED',
            details: { remainingMs: context.getRemainingTimeInMillis() },
          });
        }
        // A stalled download or a file too slow for the time left fails this record alone
        // (ProcessingDeadlineError); Lambda's timeout would fail the whole batch.
        const deadline = Date.now() + remainingMs - reserveMs;
        const result = await processSqsRecord(record, { ...ready, deadline });
        countOutcomes(result);
        return result;
      } catch (error) {
        metrics.addMetric('RecordsFailed', MetricUnit.Count, 1);
        logger.error('processing record failed; it will be retried (then dead-lettered)', {
          messageId: record.messageId,
          receiveCount: record.attributes?.ApproximateReceiveCount,
          error,
        });
        throw error;
      } finally {
        logger.removeKeys(['messageId']);
      }
    };
    return processPartialResponse(event, recordHandler, processor, {
      context,
      processInParallel: false,
      throwOnFullBatchFailure: false,
    });
  })
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .use(logMetrics(metrics, { throwOnEmptyMetrics: false }));
}

export const handler = makeHandler(productionDeps);
