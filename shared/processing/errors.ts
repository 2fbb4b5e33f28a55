import { TaplineError } from '../errors.ts';

/**
 * Processing-specific errors. Each one fails only the SQS record it came from; the record is
 * retried (SQS visibility timeout) and lands in the DLQ after `maxReceiveCount` receives.
 */

/** An object under `pcaps/` whose key does not follow `pcaps/<captureId>/<instanceId>/<file>`. */
export class UnexpectedPcapKeyError extends TaplineError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, { code: 'PCAP_KEY_UNEXPECTED', details });
  }
}

/** The pcap object could not be read completely (gone, access denied, connection cut short). */
export class SourceObjectError extends TaplineError {
  constructor(message: string, details: Record<string, unknown> = {}, cause?: unknown) {
    super(message, { code: 'PCAP_SOURCE_UNREADABLE', details, cause });
  }
}

/**
 * The capture manifest could not be read for a reason that may pass (throttling, a cut
 * connection): the record is retried rather than recording its provenance as unknown for good.
 */
export class ManifestReadError extends TaplineError {
  constructor(message: string, details: Record<string, unknown> = {}, cause?: unknown) {
    super(message, { code: 'MANIFEST_READ_FAILED', details, cause });
  }
}

/** A result object could not be written (after the conditional-write conflict handling). */
export class ResultWriteError extends TaplineError {
  constructor(
    message: string,
    details: Record<string, unknown> = {},
    cause?: unknown,
    code = 'RESULT_WRITE_FAILED',
  ) {
    super(message, { code, details, cause });
  }
}

/**
 * A result object differs from ours, but the result set it belongs to is already complete (a
 * concurrent delivery wrote its completion record first): that set is final and is not
 * touched. Not a failure: the job reports the object as completed concurrently.
 */
export class ResultSetCompletedError extends ResultWriteError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, details, undefined, 'RESULT_SET_COMPLETED');
  }
}

/**
 * Reading the pcap did not finish by the record's deadline (a download that stalled, or a file
 * too slow to get through in the time the invocation has left). The record fails alone, with
 * this reason, instead of running into Lambda's timeout, which would fail the whole batch.
 */
export class ProcessingDeadlineError extends TaplineError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, { code: 'PROCESSING_DEADLINE', details });
  }
}

/**
 * A pcap failed its integrity check and the alert reached no channel (EventBridge and SNS both
 * failed). The completion record is held back so that the record is retried and the alert sent
 * then; after maxReceiveCount the record lands in the DLQ, whose alarm is loud too.
 */
export class IntegrityAlertUndeliveredError extends TaplineError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, { code: 'INTEGRITY_ALERT_UNDELIVERED', details });
  }
}

/**
 * The decoder threw something other than CorruptPcapError: a bug in Tapline, not a property of
 * the file. The record is retried and dead-lettered so the file is reprocessed after a fix.
 */
export class DecoderFailedError extends TaplineError {
  constructor(message: string, details: Record<string, unknown> = {}, cause?: unknown) {
    super(message, { code: 'PCAP_DECODER_FAILED', details, cause });
  }
}
