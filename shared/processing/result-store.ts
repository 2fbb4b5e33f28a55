import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { createGzip } from 'node:zlib';
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
 * - results are produced as streams (JSON lines through gzip) and cut into parts of
 *   PART_BYTES, never built as one string.
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
 * Cuts a byte stream into parts: the first PART_BYTES stay in memory (most results end as one
 * PutObject); past that a multipart upload starts and each part goes out as it fills.
 */
class PartUploader {
  private readonly store: ResultStore;
  private readonly key: string;
  private readonly contentType: string;
  private chunks: Buffer[] = [];
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
    this.chunks.push(chunk);
    this.whole.update(chunk);
    this.buffered += chunk.byteLength;
    this.bytes += chunk.byteLength;
    if (this.buffered >= PART_BYTES) await this.flushPart();
  }

  private takeBuffered(): Buffer {
    const body = Buffer.concat(this.chunks, this.buffered);
    this.chunks = [];
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
    if (!this.uploadId) {
      return putResultBytes(this.store, this.key, this.takeBuffered(), this.contentType);
    }
    if (this.buffered > 0) await this.flushPart();
    const checksum = `${createHash('sha256').update(Buffer.concat(this.digests)).digest('base64')}-${this.parts.length}`;
    const complete = (ifNoneMatch: boolean) =>
      this.store.s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.store.bucket,
          Key: this.key,
          UploadId: this.uploadId,
          MultipartUpload: { Parts: this.parts },
          ...(ifNoneMatch ? { IfNoneMatch: '*' } : {}),
        }),
      );
    try {
      const out = await conditional(() => complete(true));
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
        return out.VersionId ?? null;
      });
      if (settled.outcome === 'existing') await this.abort();
      return settled;
    } catch (error) {
      await this.abort();
      throw error;
    }
  }

  async abort(): Promise<void> {
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

/** Batches JSON lines into ~64 KiB strings so the gzip stream sees few, sizeable writes. */
function* batchedLines(rows: Iterable<unknown>, counter: { records: number }): Generator<string> {
  let batch = '';
  for (const row of rows) {
    batch += `${JSON.stringify(row)}\n`;
    counter.records += 1;
    if (batch.length >= 64 * 1024) {
      yield batch;
      batch = '';
    }
  }
  if (batch.length > 0) yield batch;
}

/** `rows` as gzip-compressed JSON lines (one object per line: what Athena's JSON SerDe reads). */
export async function putResultJsonLines(
  store: ResultStore,
  key: string,
  rows: Iterable<unknown>,
): Promise<WrittenObject & { records: number }> {
  const uploader = new PartUploader(store, key, 'application/gzip');
  const counter = { records: 0 };
  try {
    await pipeline(
      Readable.from(batchedLines(rows, counter)),
      createGzip({ level: 6 }),
      async (compressed: AsyncIterable<Buffer>) => {
        for await (const chunk of compressed) await uploader.push(chunk);
      },
    );
  } catch (error) {
    await uploader.abort();
    if (error instanceof ResultWriteError) throw error;
    throw new ResultWriteError(`cannot write ${key}: ${errorName(error) || error}`, { key }, error);
  }
  const written = await uploader.finish();
  return { ...written, records: counter.records };
}
