import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { createGzip, type Gzip } from 'node:zlib';
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { CoreLogger } from '../observability.ts';
import { ResultWriteError } from './errors.ts';

/**
 * Writes result objects so that a result set is written once per source version, however
 * often (and however concurrently) the job runs:
 *
 * - every object is created with `IfNoneMatch: '*'` and a SHA-256 checksum (composite for
 *   multipart), SSE-KMS with the evidence key;
 * - when the key already exists (412: an earlier attempt that crashed before its completion
 *   record, or a concurrent duplicate delivery), the stored checksum is compared with ours:
 *   equal → the object is reused (`existing`); different → it is overwritten (`replaced`, a
 *   new version; the completion record pins the version IDs it vouches for), since no
 *   completion record exists yet for this set;
 * - a stored object that shows no checksum is never taken as "different": it may be one a
 *   concurrent writer is still completing (moto makes the key visible before it records the
 *   checksum; treating that as a mismatch made duplicate deliveries write a second version).
 *   The store asks again with a short back-off and, if the checksum still does not show
 *   (an object written without one), hashes the stored bytes and compares whole-object SHA-256;
 * - `*.jsonl.gz` results are streamed (JsonLinesGzipWriter: rows → gzip → parts of exactly
 *   PART_BYTES → multipart upload) while they are produced, never built as one string or
 *   buffer.
 */

export const PART_BYTES = 8 * 1024 * 1024;
const CONFLICT_RETRIES = 4;
/** Back-off (ms) between HEADs while a just-created object shows no checksum yet. */
const CHECKSUM_WAITS_MS = [25, 50, 100, 200, 400];

export interface ResultStore {
  s3: S3Client;
  bucket: string;
  /** Evidence key ARN (see shared/aws/resolve.ts). */
  kmsKeyArn: string;
  logger: CoreLogger;
  /**
   * Called before an existing, different object is replaced; throws (ResultSetCompletedError)
   * when the result set it belongs to is already complete, so a set a completion record
   * vouches for is never overwritten by a late concurrent delivery.
   */
  beforeReplace?: (key: string) => Promise<void>;
}

export type WriteOutcome = 'created' | 'existing' | 'replaced';

export interface WrittenObject {
  key: string;
  versionId: string | null;
  bytes: number;
  /** S3-style SHA-256 checksum of the stored bytes: base64 digest, or composite `…-N`. */
  checksumSha256: string;
  outcome: WriteOutcome;
}

function errorName(error: unknown): string {
  return error && typeof error === 'object' && 'name' in error ? String(error.name) : '';
}

function httpStatus(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

function isPreconditionFailed(error: unknown): boolean {
  return errorName(error) === 'PreconditionFailed' || httpStatus(error) === 412;
}

function isConditionalConflict(error: unknown): boolean {
  return errorName(error) === 'ConditionalRequestConflict' || httpStatus(error) === 409;
}

function stripPartSuffix(checksum: string | undefined): string | undefined {
  return checksum?.replace(/-\d+$/, '');
}

/** Runs a conditional write, retrying S3's 409 for a concurrent conditional write. */
async function conditional<T>(run: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      if (!isConditionalConflict(error) || attempt >= CONFLICT_RETRIES) throw error;
      await sleep(150 * 2 ** attempt);
    }
  }
}

async function storedChecksum(
  store: ResultStore,
  key: string,
): Promise<{ checksum: string | undefined; versionId: string | null }> {
  const head = await store.s3.send(
    new HeadObjectCommand({ Bucket: store.bucket, Key: key, ChecksumMode: 'ENABLED' }),
  );
  return { checksum: stripPartSuffix(head.ChecksumSHA256), versionId: head.VersionId ?? null };
}

function sse(store: ResultStore) {
  return {
    ServerSideEncryption: 'aws:kms' as const,
    SSEKMSKeyId: store.kmsKeyArn,
    BucketKeyEnabled: true,
  };
}

/** One object from bytes already in memory (small things: summaries, carved stream pieces). */
export async function putResultBytes(
  store: ResultStore,
  key: string,
  body: Uint8Array,
  contentType: string,
): Promise<WrittenObject> {
  const checksum = createHash('sha256').update(body).digest('base64');
  const put = (ifNoneMatch: boolean) =>
    store.s3.send(
      new PutObjectCommand({
        Bucket: store.bucket,
        Key: key,
        Body: body,
        ContentLength: body.byteLength,
        ContentType: contentType,
        ChecksumAlgorithm: 'SHA256',
        ChecksumSHA256: checksum,
        ...(ifNoneMatch ? { IfNoneMatch: '*' } : {}),
        ...sse(store),
      }),
    );
  try {
    const out = await conditional(() => put(true));
    return {
      key,
      versionId: out.VersionId ?? null,
      bytes: body.byteLength,
      checksumSha256: checksum,
      outcome: 'created',
    };
  } catch (error) {
    if (!isPreconditionFailed(error)) {
      throw new ResultWriteError(
        `cannot write ${key}: ${errorName(error) || error}`,
        { key },
        error,
      );
    }
  }
  const digests = { checksum, fullSha256: checksum };
  return settleExisting(store, key, digests, body.byteLength, async () => {
    const out = await put(false);
    return out.VersionId ?? null;
  });
}

/** SHA-256 (base64) of a stored object version, streamed. */
async function hashStored(
  store: ResultStore,
  key: string,
  versionId: string | null,
): Promise<string> {
  const out = await store.s3.send(
    new GetObjectCommand({
      Bucket: store.bucket,
      Key: key,
      ...(versionId ? { VersionId: versionId } : {}),
    }),
  );
  const hash = createHash('sha256');
  for await (const chunk of out.Body as AsyncIterable<Uint8Array>) hash.update(chunk);
  return hash.digest('base64');
}

/** What a writer knows of its own bytes: the S3-style checksum and the whole-object SHA-256. */
interface OurDigests {
  /** Base64 digest, or composite `…-N` for multipart. */
  checksum: string;
  /** Base64 SHA-256 of all the bytes (equals `checksum` for a single PUT). */
  fullSha256: string;
}

/**
 * After a 412: reuse an identical object, or replace a different one. "Identical" is decided
 * on the stored checksum; while none shows (a concurrent writer still completing the object)
 * the HEAD is repeated, and an object that never shows one is hashed.
 */
async function settleExisting(
  store: ResultStore,
  key: string,
  ours: OurDigests,
  bytes: number,
  overwrite: () => Promise<string | null>,
): Promise<WrittenObject> {
  const { checksum } = ours;
  try {
    let existing = await storedChecksum(store, key);
    for (const wait of CHECKSUM_WAITS_MS) {
      if (existing.checksum !== undefined) break;
      await sleep(wait);
      existing = await storedChecksum(store, key);
    }
    const same =
      existing.checksum !== undefined
        ? existing.checksum === stripPartSuffix(checksum)
        : (await hashStored(store, key, existing.versionId)) === ours.fullSha256;
    if (same) {
      store.logger.info(
        'result object already written by an earlier or concurrent attempt; reused',
        {
          key,
          versionId: existing.versionId,
          comparedBy: existing.checksum !== undefined ? 'checksum' : 'content-hash',
        },
      );
      return {
        key,
        versionId: existing.versionId,
        bytes,
        checksumSha256: checksum,
        outcome: 'existing',
      };
    }
    await store.beforeReplace?.(key);
    store.logger.warn('result object from an earlier attempt differs; replacing it', {
      key,
      existing: existing.checksum ?? null,
      ours: checksum,
    });
    const versionId = await overwrite();
    return { key, versionId, bytes, checksumSha256: checksum, outcome: 'replaced' };
  } catch (error) {
    if (error instanceof ResultWriteError) throw error;
    throw new ResultWriteError(
      `cannot settle existing ${key}: ${errorName(error) || error}`,
      { key },
      error,
    );
  }
}

/**
 * Cuts a byte stream into parts of exactly PART_BYTES (the last one shorter): the first part
 * stays in memory (most results end as one PutObject); past that a multipart upload starts and
 * each part goes out as it fills, awaited, so at most one part is held whatever the object's
 * size. Part boundaries depend only on the bytes, never on how they arrived in chunks, so the
 * same bytes always give the same composite checksum (which is how a re-run recognises them).
 */
class PartUploader {
  private readonly store: ResultStore;
  private readonly key: string;
  private readonly contentType: string;
  /** The first part, as it arrives (most results never fill it). */
  private chunks: Buffer[] = [];
  /** Once the first part has filled: the one buffer every later part is copied into. */
  private partBuffer: Buffer | undefined;
  private buffered = 0;
  private uploadId: string | undefined;
  private readonly parts: CompletedPart[] = [];
  private readonly digests: Buffer[] = [];
  /** Whole-object SHA-256, to compare with a stored object that shows no checksum. */
  private readonly whole = createHash('sha256');
  bytes = 0;

  constructor(store: ResultStore, key: string, contentType: string) {
    this.store = store;
    this.key = key;
    this.contentType = contentType;
  }

  async push(chunk: Buffer): Promise<void> {
    this.whole.update(chunk);
    this.bytes += chunk.byteLength;
    let rest = chunk;
    while (rest.byteLength > 0) {
      const take = Math.min(rest.byteLength, PART_BYTES - this.buffered);
      if (this.partBuffer) rest.copy(this.partBuffer, this.buffered, 0, take);
      else this.chunks.push(take === rest.byteLength ? rest : rest.subarray(0, take));
      this.buffered += take;
      rest = rest.subarray(take);
      if (this.buffered === PART_BYTES) await this.flushPart();
    }
  }

  /**
   * The bytes buffered so far, as one buffer. After the first part that is a view of
   * `partBuffer`, reused for the next part once this one's upload has resolved: a multipart
   * upload holds one part's memory, not one per part until the GC frees them.
   */
  private takeBuffered(): Buffer {
    let body: Buffer;
    if (this.partBuffer) {
      body = this.partBuffer.subarray(0, this.buffered);
    } else {
      body = Buffer.concat(this.chunks, this.buffered);
      this.chunks = [];
      if (body.byteLength === PART_BYTES) this.partBuffer = body;
    }
    this.buffered = 0;
    return body;
  }

  private async flushPart(): Promise<void> {
    const body = this.takeBuffered();
    if (!this.uploadId) {
      const created = await this.store.s3.send(
        new CreateMultipartUploadCommand({
          Bucket: this.store.bucket,
          Key: this.key,
          ContentType: this.contentType,
          ChecksumAlgorithm: 'SHA256',
          ...sse(this.store),
        }),
      );
      this.uploadId = created.UploadId;
    }
    const digest = createHash('sha256').update(body).digest();
    const partNumber = this.parts.length + 1;
    const out = await this.store.s3.send(
      new UploadPartCommand({
        Bucket: this.store.bucket,
        Key: this.key,
        UploadId: this.uploadId,
        PartNumber: partNumber,
        Body: body,
        ContentLength: body.byteLength,
        ChecksumAlgorithm: 'SHA256',
        ChecksumSHA256: digest.toString('base64'),
      }),
    );
    this.digests.push(digest);
    this.parts.push({
      PartNumber: partNumber,
      ETag: out.ETag,
      ChecksumSHA256: digest.toString('base64'),
    });
  }

  async finish(): Promise<WrittenObject> {
    if (!this.uploadId && this.parts.length === 0) {
      return putResultBytes(this.store, this.key, this.takeBuffered(), this.contentType);
    }
    if (this.buffered > 0) {
      try {
        await this.flushPart();
      } catch (error) {
        await this.abort();
        throw new ResultWriteError(
          `cannot upload the last part of ${this.key}: ${errorName(error) || error}`,
          { key: this.key },
          error,
        );
      }
    }
    const uploadId = this.uploadId;
    const checksum = `${createHash('sha256').update(Buffer.concat(this.digests)).digest('base64')}-${this.parts.length}`;
    const complete = (ifNoneMatch: boolean) =>
      this.store.s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.store.bucket,
          Key: this.key,
          UploadId: uploadId,
          MultipartUpload: { Parts: this.parts },
          ...(ifNoneMatch ? { IfNoneMatch: '*' } : {}),
        }),
      );
    try {
      const out = await conditional(() => complete(true));
      this.uploadId = undefined; // completed: nothing left to abort
      return {
        key: this.key,
        versionId: out.VersionId ?? null,
        bytes: this.bytes,
        checksumSha256: checksum,
        outcome: 'created',
      };
    } catch (error) {
      if (!isPreconditionFailed(error)) {
        await this.abort();
        throw new ResultWriteError(
          `cannot complete ${this.key}: ${errorName(error) || error}`,
          { key: this.key },
          error,
        );
      }
    }
    try {
      const digests = { checksum, fullSha256: this.whole.digest('base64') };
      const settled = await settleExisting(this.store, this.key, digests, this.bytes, async () => {
        const out = await complete(false);
        this.uploadId = undefined;
        return out.VersionId ?? null;
      });
      if (settled.outcome === 'existing') await this.abort();
      return settled;
    } catch (error) {
      await this.abort();
      throw error;
    }
  }

  /** Drops the parts uploaded so far (nothing becomes visible); safe to call more than once. */
  async abort(): Promise<void> {
    this.chunks = [];
    this.partBuffer = undefined;
    this.buffered = 0;
    if (!this.uploadId) return;
    const uploadId = this.uploadId;
    this.uploadId = undefined;
    await this.store.s3
      .send(
        new AbortMultipartUploadCommand({
          Bucket: this.store.bucket,
          Key: this.key,
          UploadId: uploadId,
        }),
      )
      .catch((error) =>
        this.store.logger.warn('could not abort a multipart upload', {
          key: this.key,
          error: String(error),
        }),
      );
  }
}

/** Text handed to gzip in strings of about this size, so it sees few, sizeable writes. */
const LINE_BATCH_CHARS = 64 * 1024;

/**
 * A `*.jsonl.gz` result (one JSON object per line: what Athena's JSON SerDe reads), written
 * while its rows are produced: rows → JSON lines → gzip (level 6) → parts of PART_BYTES → S3.
 * `add` resolves once gzip has taken the rows, and waits while the upload is behind (the
 * gzip buffers are full while a part goes out), so memory stays flat for any row count: at
 * most one part, the gzip buffers and one batch of text. The object appears only at
 * `finish` (PutObject or CompleteMultipartUpload, both `IfNoneMatch: '*'`, then the same
 * reuse/replace rules as every result object); `abort` drops the parts uploaded so far.
 */
export class JsonLinesGzipWriter {
  readonly key: string;
  #records = 0;
  readonly #gzip: Gzip;
  readonly #uploader: PartUploader;
  /** gzip → uploader; rejects if compressing or a part upload fails. */
  readonly #compressing: Promise<void>;
  #state: 'open' | 'finishing' | 'aborted' = 'open';

  constructor(store: ResultStore, key: string) {
    this.key = key;
    this.#gzip = createGzip({ level: 6 });
    this.#uploader = new PartUploader(store, key, 'application/gzip');
    this.#compressing = pipeline(this.#gzip, async (compressed: AsyncIterable<Buffer>) => {
      for await (const chunk of compressed) await this.#uploader.push(chunk);
    });
    // Observed by add/finish/abort; do not let an early failure count as unhandled.
    this.#compressing.catch(() => undefined);
  }

  /** Rows written so far. */
  get records(): number {
    return this.#records;
  }

  async add(rows: Iterable<unknown>): Promise<void> {
    if (this.#state !== 'open') {
      throw new ResultWriteError(`cannot add rows to ${this.key}: writer is ${this.#state}`, {
        key: this.key,
      });
    }
    let batch = '';
    try {
      for (const row of rows) {
        batch += `${JSON.stringify(row)}\n`;
        this.#records += 1;
        if (batch.length >= LINE_BATCH_CHARS) {
          await this.#write(batch);
          batch = '';
        }
      }
      if (batch.length > 0) await this.#write(batch);
    } catch (error) {
      throw this.#failure(error);
    }
  }

  async #write(text: string): Promise<void> {
    const gzip = this.#gzip;
    // a part upload failed between two batches: the pipeline has destroyed gzip, whose
    // `close` has already fired and whose write() would return false with nothing to wait for
    if (!gzip.destroyed) {
      if (gzip.write(text)) return;
      // The upload is behind: wait until gzip drains, or closes because the pipeline failed.
      await new Promise<void>((resolve) => {
        const wake = () => {
          gzip.off('drain', wake);
          gzip.off('close', wake);
          resolve();
        };
        gzip.on('drain', wake);
        gzip.on('close', wake);
      });
    }
    if (gzip.destroyed) {
      await this.#compressing; // rejects with what broke it (a premature close at least)
      throw new Error('the gzip stream closed while rows were being added');
    }
  }

  /** Ends the stream and makes the object (created, existing or replaced). */
  async finish(): Promise<WrittenObject & { records: number }> {
    if (this.#state !== 'open') {
      throw new ResultWriteError(`cannot finish ${this.key}: writer is ${this.#state}`, {
        key: this.key,
      });
    }
    this.#state = 'finishing';
    try {
      this.#gzip.end();
      await this.#compressing;
    } catch (error) {
      await this.#uploader.abort();
      throw this.#failure(error);
    }
    const written = await this.#uploader.finish();
    return { ...written, records: this.#records };
  }

  /**
   * Gives up on the object: stops gzip and drops uploaded parts. A no-op once `finish` was
   * called (it cleans up after itself on failure).
   */
  async abort(): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'aborted';
    this.#gzip.destroy();
    await this.#compressing.catch(() => undefined);
    await this.#uploader.abort();
  }

  #failure(error: unknown): ResultWriteError {
    if (error instanceof ResultWriteError) return error;
    return new ResultWriteError(
      `cannot write ${this.key}: ${errorName(error) || error}`,
      { key: this.key },
      error,
    );
  }
}

/** `rows` as a `*.jsonl.gz` result object (see JsonLinesGzipWriter). */
export async function putResultJsonLines(
  store: ResultStore,
  key: string,
  rows: Iterable<unknown>,
): Promise<WrittenObject & { records: number }> {
  const writer = new JsonLinesGzipWriter(store, key);
  try {
    await writer.add(rows);
  } catch (error) {
    await writer.abort();
    throw error;
  }
  return writer.finish();
}
