/** The processing job: one pcap object version → verified, queryable results. */
export { type CarveMode, findingsPredicate, indicatorsFromRequest } from './carve.ts';
export {
  DecoderFailedError,
  IntegrityAlertUndeliveredError,
  ProcessingDeadlineError,
  ResultSetCompletedError,
  ResultWriteError,
  SourceObjectError,
  UnexpectedPcapKeyError,
} from './errors.ts';
export type { IntegrityResult, IntegrityVerdict, SourceStatus } from './integrity.ts';
export {
  parsePcapKey,
  RESULT_TABLES,
  type ResultTable,
  resultLayout,
  TABLES_PREFIX,
} from './layout.ts';
export {
  COMPLETION_SCHEMA,
  type PcapRef,
  type ProcessDeps,
  type ProcessOutcome,
  processPcapObject,
} from './process-pcap-object.ts';
export { decodeS3Key, type ParsedS3Message, parseS3Message } from './s3-event.ts';
export { processSqsRecord, type RecordResult } from './sqs-record.ts';
