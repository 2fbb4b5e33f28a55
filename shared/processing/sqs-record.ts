import type { SQSRecord } from 'aws-lambda';
import { type ProcessDeps, type ProcessOutcome, processPcapObject } from './process-pcap-object.ts';
import { parseS3Message } from './s3-event.ts';

export interface RecordResult {
  messageId: string;
  kind: 'test-event' | 'objects';
  outcomes: ProcessOutcome[];
  skipped: number;
}

/**
 * One SQS record of the processing queue: an S3 TestEvent (ignored) or S3 event records.
 * Objects outside `pcaps/` and non-create events are skipped with a log line; every pcap is
 * processed in turn. Any error fails this record only (the batch handler reports it).
 */
export async function processSqsRecord(
  record: Pick<SQSRecord, 'messageId' | 'body'>,
  deps: ProcessDeps,
): Promise<RecordResult> {
  const parsed = parseS3Message(record.body);
  if (parsed.kind === 'test-event') {
    deps.logger.info('s3:TestEvent ignored', {
      messageId: record.messageId,
      bucket: parsed.bucket,
    });
    return { messageId: record.messageId, kind: 'test-event', outcomes: [], skipped: 0 };
  }
  for (const skip of parsed.skipped) {
    deps.logger.info('S3 event record skipped', {
      messageId: record.messageId,
      bucket: skip.bucket,
      key: skip.key,
      eventName: skip.eventName,
      reason: skip.reason,
    });
  }
  const outcomes: ProcessOutcome[] = [];
  for (const object of parsed.objects) outcomes.push(await processPcapObject(object, deps));
  return { messageId: record.messageId, kind: 'objects', outcomes, skipped: parsed.skipped.length };
}
