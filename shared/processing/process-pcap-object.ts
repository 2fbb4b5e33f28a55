import { HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { TaplineConfig } from '../config.ts';
import { CorruptPcapError, MalformedEventError } from '../errors.ts';
import type { NotifyDeps, PublishResult } from '../notify/publish.ts';
import { publishEvent } from '../notify/publish.ts';
import type { CoreLogger } from '../observability.ts';
import {
  type AnalyzeLimits,
  type AnalyzeOptions,
  analyzePcap,
  type PcapAnalysis,
} from '../pcap/index.ts';
import { type CarveMode, type CarveTally, s3CarveOptions } from './carve.ts';
import {
  DecoderFailedError,
  IntegrityAlertUndeliveredError,
  ProcessingDeadlineError,
  ResultSetCompletedError,
  ResultWriteError,
  SourceObjectError,
} from './errors.ts';
import {
  checkHostHash,
  checkManifestHash,
  checkOtherVersions,
  checkS3Checksum,
  type IntegrityResult,
  integrityVerdict,
} from './integrity.ts';
import {
  type PcapKeyParts,
  parsePcapKey,
  type ResultLayout,
  type ResultTable,
  resultLayout,
} from './layout.ts';
import { checkProvenance, readManifestFacts } from './manifest.ts';
import {
  JsonLinesGzipWriter,
  putResultBytes,
  putResultJsonLines,
  type ResultStore,
  type WrittenObject,
} from './result-store.ts';
import {
  conversationRows,
  dnsRows,
  type FileColumns,
  httpRows,
  portZeroRows,
  summaryRow,
  tlsRows,
} from './rows.ts';
import {
  HashingSource,
  inspectSourceObject,
  openSourceBody,
  otherVersionsOf,
  type SourceObjectInfo,
} from './source.ts';

/** The object to process: what an S3 event names (key already URL-decoded). */
export interface PcapRef {
  bucket: string;
  key: string;
  versionId?: string | undefined;
  size?: number | undefined;
}

export interface ProcessDeps {
  s3: S3Client;
  /** EventBridge + SNS publisher settings (see shared/notify/publish.ts). */
  notify: NotifyDeps;
  config: Pick<TaplineConfig, 'EVIDENCE_BUCKET' | 'CARVE_MODE'>;
  /** Evidence key ARN for SSE-KMS on every result object. */
  kmsKeyArn: string;
  logger: CoreLogger;
  clock?: () => Date;
  /** Decoder limits (tests lower them). */
  limits?: AnalyzeLimits;
  /** The decoder; tests may wrap it (e.g. to observe the stream), production uses analyzePcap. */
  analyze?: typeof analyzePcap;
  /**
   * When reading the pcap must be over (epoch ms): the handler sets it from the invocation's
   * remaining time, so a stalled download or a file too slow for the time left fails its own
   * record (ProcessingDeadlineError) instead of running into Lambda's timeout.
   */
  deadline?: number;
}

export interface ProcessOutcome {
  status: 'processed' | 'already-processed' | 'completed-concurrently';
  bucket: string;
  key: string;
  versionId: string | null;
  /** The file's result folder and its completion record. */
  resultPrefix: string;
  completionKey: string;
  integrity?: IntegrityResult['verdict'];
  decodeStatus?: string;
  packets?: number;
  /** Bytes of the pcap object read and hashed. */
  bytesRead?: number;
  tables?: Partial<Record<ResultTable, WrittenObject & { records?: number }>>;
  carve?: CarveTally & { mode: CarveMode };
  notifications?: { processed: PublishResult; integrityFailed?: PublishResult };
}

export const COMPLETION_SCHEMA = 'tapline.processing.completion/v1';

function errorName(error: unknown): string {
  return error && typeof error === 'object' && 'name' in error ? String(error.name) : '';
}

async function completionExists(s3: S3Client, bucket: string, key: string): Promise<boolean> {
  try {
    await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch (error) {
    const name = errorName(error);
    const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (name === 'NotFound' || name === 'NoSuchKey' || status === 404) return false;
    // Without s3:ListBucket, S3 answers 403 for a missing key. Treating it as absent is safe:
    // if results really are forbidden, the writes that follow fail loudly.
    if (status === 403) return false;
    throw new ResultWriteError(`cannot check ${key}: ${name || error}`, { key }, error);
  }
}

/**
 * Processes one pcap object version into its result set: verify, decode, write, notify,
 * then the completion record. Safe to run any number of times, also concurrently, for the
 * same (bucket, key, versionId): see docs/processing.md, "Idempotency".
 */
export async function processPcapObject(ref: PcapRef, deps: ProcessDeps): Promise<ProcessOutcome> {
  const { s3, logger } = deps;
  const clock = deps.clock ?? (() => new Date());
  const started = clock();
  if (ref.bucket !== deps.config.EVIDENCE_BUCKET) {
    throw new MalformedEventError(
      `event names bucket ${ref.bucket}; this processor serves ${deps.config.EVIDENCE_BUCKET}`,
      { bucket: ref.bucket, key: ref.key },
    );
  }
  const keyParts = parsePcapKey(ref.key);

  // A re-delivery after success costs one HEAD when the event names the version.
  if (ref.versionId) {
    const early = resultLayout(keyParts, ref.versionId);
    if (await completionExists(s3, ref.bucket, early.completion)) {
      logger.info('pcap already processed; duplicate delivery ignored', {
        key: ref.key,
        versionId: ref.versionId,
        completion: early.completion,
      });
      return alreadyProcessed(ref, ref.versionId, early);
    }
  }

  const info = await inspectSourceObject(s3, ref, logger);
  const layout = resultLayout(keyParts, info.versionId);
  if (!ref.versionId && ref.size !== undefined && ref.size !== info.size) {
    logger.warn('event names no version and its size differs: a newer upload replaced it', {
      key: ref.key,
      eventSize: ref.size,
      size: info.size,
      versionId: info.versionId ?? null,
    });
  }
  if (!ref.versionId && (await completionExists(s3, ref.bucket, layout.completion))) {
    logger.info('pcap already processed; duplicate delivery ignored', {
      key: ref.key,
      versionId: info.versionId ?? null,
    });
    return alreadyProcessed(ref, info.versionId, layout);
  }

  try {
    return await writeResultSet(ref, deps, keyParts, info, layout, started);
  } catch (error) {
    if (!(error instanceof ResultSetCompletedError)) throw error;
    logger.info('pcap completed concurrently by another delivery; its result set stands', {
      key: ref.key,
      versionId: info.versionId ?? null,
      completion: layout.completion,
      differing: error.details.key,
    });
    return { ...alreadyProcessed(ref, info.versionId, layout), status: 'completed-concurrently' };
  }
}

/**
 * Decode, write, notify, commit: everything after the duplicate checks. A different result
 * object is replaced only while the set has no completion record (ResultStore.beforeReplace).
 */
async function writeResultSet(
  ref: PcapRef,
  deps: ProcessDeps,
  keyParts: PcapKeyParts,
  info: SourceObjectInfo,
  layout: ResultLayout,
  started: Date,
): Promise<ProcessOutcome> {
  const { s3, logger } = deps;
  const clock = deps.clock ?? (() => new Date());
  const [manifest, otherVersions] = await Promise.all([
    readManifestFacts(
      s3,
      ref.bucket,
      keyParts.captureId,
      keyParts.instanceId,
      ref.key,
      info.versionId,
      logger,
    ),
    otherVersionsOf(s3, info, logger),
  ]);
  const store: ResultStore = {
    s3,
    bucket: ref.bucket,
    kmsKeyArn: deps.kmsKeyArn,
    logger,
    beforeReplace: async (key) => {
      if (await completionExists(s3, ref.bucket, layout.completion)) {
        throw new ResultSetCompletedError(
          `${key} differs from ours, but ${layout.completion} already completes its result set`,
          { key, completion: layout.completion },
        );
      }
    },
  };
  const carveMode = deps.config.CARVE_MODE as CarveMode;
  const tally: CarveTally = { created: 0, existing: 0, replaced: 0 };
  const carve = s3CarveOptions(carveMode, store, layout.streams, manifest.request, tally);

  // One pass: S3 body → hash (whole + per part) → decoder → carve uploads. Conversations
  // come out of the decoder in batches (each awaited) and stream through gzip into the
  // multipart upload of their table, so neither the rows nor the compressed table are held.
  // The table becomes visible only at finish(), after the integrity checks; any failure
  // before that aborts its upload.
  const ctx: FileColumns = {
    capture_id: keyParts.captureId,
    instance_id: keyParts.instanceId,
    file: keyParts.file,
    version_id: info.versionId ?? 'null',
  };
  const conversationTable = new JsonLinesGzipWriter(store, layout.tables.conversations);
  let decoded: DecodedObject;
  try {
    decoded = await decodeAndHash(ref, info, deps, {
      ...(carve ? { carve } : {}),
      ...(deps.limits ? { limits: deps.limits } : {}),
      onConversations: (batch) => conversationTable.add(conversationRows(ctx, batch)),
    });
    const streamed = conversationTable.records;
    if (decoded.analysis && streamed !== decoded.analysis.conversationCount) {
      throw new DecoderFailedError(
        `the decoder reported ${decoded.analysis.conversationCount} conversations of ${ref.key} but streamed ${streamed}`,
        { key: ref.key, versionId: info.versionId, streamed },
      );
    }
  } catch (error) {
    await conversationTable.abort();
    throw error;
  }
  const { analysis, decodeError, hashed } = decoded;
  const integrity = integrityVerdict(
    hashed.sha256,
    hashed.bytes,
    checkHostHash(info.metadata.sha256, hashed.sha256),
    checkS3Checksum(info.checksumSha256, info.checksumType, info.parts, hashed),
    checkManifestHash(manifest.file, hashed.sha256, manifest.otherVersions),
    checkOtherVersions(otherVersions, hashed.sha256, hashed.bytes),
    checkProvenance(manifest, keyParts.captureId, keyParts.instanceId),
  );

  const summary = summaryRow({
    ctx,
    source: info,
    analysis,
    decodeError,
    integrity,
    manifest,
    carveMode,
  });
  const [summaryObject, conversations, dns, tls, http, portZero] = await Promise.all([
    putResultBytes(
      store,
      layout.tables.summary,
      Buffer.from(`${JSON.stringify(summary)}\n`),
      'application/json',
    ),
    conversationTable.finish(),
    putResultJsonLines(store, layout.tables.dns, dnsRows(ctx, analysis ? analysis.dns : [])),
    putResultJsonLines(store, layout.tables.tls, tlsRows(ctx, analysis ? analysis.tls : [])),
    putResultJsonLines(store, layout.tables.http, httpRows(ctx, analysis ? analysis.http : [])),
    putResultJsonLines(
      store,
      layout.tables.port_zero,
      portZeroRows(ctx, analysis ? analysis.portZero : []),
    ),
  ]);
  const tables = {
    summary: { ...summaryObject, records: 1 },
    conversations,
    dns,
    tls,
    http,
    port_zero: portZero,
  };

  const eventBase = {
    captureId: keyParts.captureId,
    instanceId: keyParts.instanceId,
    bucket: ref.bucket,
    key: ref.key,
    versionId: info.versionId ?? null,
    resultPrefix: layout.home,
    summaryKey: layout.completion,
  };
  let integrityFailed: PublishResult | undefined;
  if (integrity.verdict !== 'verified') {
    logger.error('PCAP INTEGRITY FAILED: the object is processed but marked', {
      key: ref.key,
      versionId: info.versionId ?? null,
      verdict: integrity.verdict,
      sha256: integrity.sha256,
      problems: integrity.problems,
    });
    integrityFailed = await publishEvent(deps.notify, 'Pcap Integrity Failed', {
      ...eventBase,
      verdict: integrity.verdict,
      sha256: integrity.sha256,
      bytes: integrity.bytesRead,
      host: integrity.host,
      s3: integrity.s3,
      manifest: integrity.manifest,
      versions: integrity.versions,
      provenance: integrity.provenance,
      problems: integrity.problems,
    });
    if (integrityFailed.eventBridge === 'failed' && integrityFailed.sns === 'failed') {
      // Completing now would make every re-delivery a no-op: the alert would never be sent.
      throw new IntegrityAlertUndeliveredError(
        `integrity ${integrity.verdict} on ${ref.key} could not be notified (EventBridge and SNS publish both failed); the completion record is held back so the record is retried`,
        { key: ref.key, versionId: info.versionId ?? null, verdict: integrity.verdict },
      );
    }
  }
  const processed = await publishEvent(deps.notify, 'Pcap Processed', {
    ...eventBase,
    integrity: integrity.verdict,
    decodeStatus: summary.decode_status,
    format: summary.format,
    packets: summary.packets,
    bytes: summary.bytes,
    firstTs: summary.first_ts,
    lastTs: summary.last_ts,
    conversations: summary.conversations,
    tcpStreams: summary.tcp_streams,
    dnsRecords: summary.dns_records,
    tlsRecords: summary.tls_records,
    httpRecords: summary.http_records,
    portZeroPackets: summary.port_zero_packets,
    anomalies: summary.anomaly_total,
    kernelDrops: summary.kernel_drops,
    carvedStreams: analysis?.carve?.streamsCarved ?? 0,
  });
  const notifications = { processed, ...(integrityFailed ? { integrityFailed } : {}) };

  // Last: the completion record. Its presence is what "processed" means.
  const finished = clock();
  const record = {
    schema: COMPLETION_SCHEMA,
    status: 'complete',
    source: {
      bucket: ref.bucket,
      key: ref.key,
      versionId: info.versionId ?? null,
      size: info.size,
      etag: info.etag ?? null,
    },
    resultPrefix: layout.home,
    integrity,
    summary,
    tables: Object.fromEntries(
      Object.entries(tables).map(([name, t]) => [
        name,
        {
          key: t.key,
          versionId: t.versionId,
          records: t.records,
          bytes: t.bytes,
          checksumSha256: t.checksumSha256,
          outcome: t.outcome,
        },
      ]),
    ),
    streams: { mode: carveMode, prefix: layout.streams, ...tally, stats: analysis?.carve ?? null },
    anomalySamples: analysis?.anomalySamples ?? [],
    notifications,
    processedAt: finished.toISOString(),
    processingMs: finished.getTime() - started.getTime(),
  };
  const created = await createCompletionRecord(store, layout.completion, record);
  const outcome: ProcessOutcome = {
    status: created ? 'processed' : 'completed-concurrently',
    bucket: ref.bucket,
    key: ref.key,
    versionId: info.versionId ?? null,
    resultPrefix: layout.home,
    completionKey: layout.completion,
    integrity: integrity.verdict,
    decodeStatus: String(summary.decode_status),
    packets: Number(summary.packets),
    bytesRead: integrity.bytesRead,
    tables,
    carve: { mode: carveMode, ...tally },
    notifications,
  };
  logger.info(created ? 'pcap processed' : 'pcap completed concurrently by another delivery', {
    key: ref.key,
    versionId: outcome.versionId,
    integrity: integrity.verdict,
    packets: outcome.packets,
    completion: layout.completion,
  });
  return outcome;
}

interface DecodedObject {
  /** null when the file cannot be decoded at all (decodeError says why). */
  analysis: PcapAnalysis | null;
  decodeError: { code: string; message: string } | null;
  /** Digests of every byte of the object version (whole and per S3 part). */
  hashed: ReturnType<HashingSource['hasher']['finish']> & { bytes: number };
}

/**
 * Streams the object version through the hasher into the decoder, then reads (and hashes)
 * whatever the decoder left, so the hash always covers the whole object. A file the decoder
 * cannot read is a result (decodeError), not a failure; a broken download, a short read or a
 * decoder bug is a failure (the record is retried).
 */
async function decodeAndHash(
  ref: PcapRef,
  info: SourceObjectInfo,
  deps: ProcessDeps,
  options: AnalyzeOptions,
): Promise<DecodedObject> {
  const body = await openSourceBody(deps.s3, info);
  const deadline = deps.deadline;
  const source: HashingSource = new HashingSource(
    body,
    info.partPlan,
    undefined,
    deadline === undefined
      ? undefined
      : {
          at: deadline,
          expired: (): Error =>
            new ProcessingDeadlineError(
              `reading s3://${ref.bucket}/${ref.key} did not finish in the time this invocation has left (${source.hasher.bytes} of ${info.size} bytes read): the download stalled or the file is too slow to process; the record is failed alone and retried`,
              {
                key: ref.key,
                versionId: info.versionId,
                bytesRead: source.hasher.bytes,
                size: info.size,
                deadline: new Date(deadline).toISOString(),
              },
            ),
        },
  );
  let analysis: PcapAnalysis | null = null;
  let decodeError: { code: string; message: string } | null = null;
  try {
    analysis = await (deps.analyze ?? analyzePcap)(source, options);
  } catch (error) {
    if (error instanceof CorruptPcapError) {
      decodeError = { code: error.code, message: error.message };
      deps.logger.warn('pcap object cannot be decoded; recording it as unreadable', {
        key: ref.key,
        error: error.message,
      });
    } else {
      await source.abort().catch(() => undefined);
      if (
        error instanceof ResultWriteError ||
        error instanceof SourceObjectError ||
        error instanceof ProcessingDeadlineError
      )
        throw error;
      const detail = error instanceof Error ? error.message : String(error);
      const where = { key: ref.key, versionId: info.versionId, bytesRead: source.hasher.bytes };
      if (source.sourceError !== undefined) {
        throw new SourceObjectError(`reading ${ref.key} failed: ${detail}`, where, error);
      }
      throw new DecoderFailedError(`the decoder failed on ${ref.key}: ${detail}`, where, error);
    }
  }
  try {
    await source.drain();
  } catch (error) {
    if (error instanceof ProcessingDeadlineError) throw error;
    throw new SourceObjectError(
      `reading ${ref.key} failed`,
      { key: ref.key, bytesRead: source.hasher.bytes },
      error,
    );
  }
  const bytes = source.hasher.bytes;
  if (bytes !== info.size) {
    throw new SourceObjectError(
      `read ${bytes} bytes of ${ref.key}, S3 says ${info.size}: short read`,
      { key: ref.key, versionId: info.versionId, bytesRead: bytes, size: info.size },
    );
  }
  return { analysis, decodeError, hashed: { ...source.hasher.finish(), bytes } };
}

function alreadyProcessed(
  ref: PcapRef,
  versionId: string | undefined,
  layout: ResultLayout,
): ProcessOutcome {
  return {
    status: 'already-processed',
    bucket: ref.bucket,
    key: ref.key,
    versionId: versionId ?? null,
    resultPrefix: layout.home,
    completionKey: layout.completion,
  };
}

/** Create-only; false when another delivery got there first (its record stands). */
async function createCompletionRecord(
  store: ResultStore,
  key: string,
  record: Record<string, unknown>,
): Promise<boolean> {
  const body = Buffer.from(`${JSON.stringify(record, null, 2)}\n`);
  try {
    await store.s3.send(
      new PutObjectCommand({
        Bucket: store.bucket,
        Key: key,
        Body: body,
        ContentLength: body.byteLength,
        ContentType: 'application/json',
        IfNoneMatch: '*',
        ServerSideEncryption: 'aws:kms',
        SSEKMSKeyId: store.kmsKeyArn,
        BucketKeyEnabled: true,
      }),
    );
    return true;
  } catch (error) {
    const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (errorName(error) === 'PreconditionFailed' || status === 412) return false;
    if (errorName(error) === 'ConditionalRequestConflict' || status === 409) {
      // Another delivery is writing it right now; S3 lets one win. Ask again once it settles.
      await new Promise((r) => setTimeout(r, 500));
      if (await completionExists(store.s3, store.bucket, key)) return false;
    }
    throw new ResultWriteError(
      `cannot write completion record ${key}: ${errorName(error) || error}`,
      { key },
      error,
    );
  }
}
