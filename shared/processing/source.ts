import type { Readable } from 'node:stream';
import {
  GetObjectAttributesCommand,
  GetObjectCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { versionsOfKey } from '../aws/object-versions.ts';
import type { CoreLogger } from '../observability.ts';
import { SourceObjectError } from './errors.ts';
import { type PartPlan, StreamingHasher, uniformPartPlan } from './integrity.ts';

/** What S3 says about the exact object version we are going to read. */
export interface SourceObjectInfo {
  bucket: string;
  key: string;
  /** The version we read (pinned: every later request names it). */
  versionId: string | undefined;
  size: number;
  lastModified: Date | undefined;
  etag: string | undefined;
  /** x-amz-meta-* (keys lower-cased by S3). */
  metadata: Record<string, string>;
  checksumSha256: string | undefined;
  checksumType: string | undefined;
  /** Multipart uploads: the number of parts (from the ETag's `-N`), else null. */
  parts: number | null;
  /** Part sizes when the object is multipart and we could learn them, else null. */
  partPlan: PartPlan | null;
}

const MAX_ATTRIBUTE_PAGES = 20;
/** Other versions of one key that are looked at (a key the host wrote once has none). */
export const MAX_OTHER_VERSIONS = 20;

/** Another version of the same key, as S3 describes it. */
export interface OtherVersion {
  versionId: string;
  size: number;
  lastModified: string | null;
  /** x-amz-meta-sha256 of that version, as recorded. */
  metadataSha256: string | undefined;
  /** Its S3 SHA-256 checksum (base64; `-N` suffixed when composite). */
  checksumSha256: string | undefined;
}

export type OtherVersions =
  | { status: 'listed'; versions: OtherVersion[]; truncated: boolean }
  | { status: 'unavailable'; reason: string };

/**
 * The other versions of the pcap's key (not delete markers). The host uploads each key once
 * (retries send the same bytes), and Object Lock keeps every version but cannot stop a new one:
 * a second version with other bytes is evidence replaced after the fact, whichever of the two
 * is being processed. Needs s3:ListBucketVersions on pcaps/; a refusal is reported, not fatal.
 */
export async function otherVersionsOf(
  s3: S3Client,
  info: Pick<SourceObjectInfo, 'bucket' | 'key' | 'versionId'>,
  logger: CoreLogger,
): Promise<OtherVersions> {
  try {
    // this version and up to MAX_OTHER_VERSIONS + 1 others: one more than are looked at says
    // that there were more
    const found = (await versionsOfKey(s3, info.bucket, info.key, MAX_OTHER_VERSIONS + 2)).filter(
      (v) => v.versionId !== (info.versionId ?? 'null'),
    );
    const truncated = found.length > MAX_OTHER_VERSIONS;
    const versions: OtherVersion[] = [];
    for (const v of found.slice(0, MAX_OTHER_VERSIONS)) {
      const head = await s3.send(
        new HeadObjectCommand({
          Bucket: info.bucket,
          Key: info.key,
          VersionId: v.versionId,
          ChecksumMode: 'ENABLED',
        }),
      );
      versions.push({
        versionId: v.versionId,
        size: v.size,
        lastModified: v.lastModified ? v.lastModified.toISOString() : null,
        metadataSha256: head.Metadata?.sha256,
        checksumSha256: head.ChecksumSHA256,
      });
    }
    return { status: 'listed', versions, truncated };
  } catch (error) {
    const reason = s3ErrorName(error) || String(error);
    logger.warn(
      'cannot list the other versions of a pcap key; the verdict rests on the other checks',
      {
        key: info.key,
        error: reason,
      },
    );
    return { status: 'unavailable', reason };
  }
}

function s3ErrorName(error: unknown): string {
  const name = error && typeof error === 'object' && 'name' in error ? String(error.name) : '';
  const status = (error as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
  if (status === undefined) return name;
  return `${name && name !== 'Unknown' ? `${name}, ` : ''}HTTP ${status}`;
}

/** HeadObject (with the checksum) on the version, and the part layout for multipart objects. */
export async function inspectSourceObject(
  s3: S3Client,
  ref: { bucket: string; key: string; versionId?: string | undefined },
  logger: CoreLogger,
): Promise<SourceObjectInfo> {
  const where = { bucket: ref.bucket, key: ref.key, versionId: ref.versionId };
  let head: HeadObjectCommandOutput;
  try {
    head = await s3.send(
      new HeadObjectCommand({
        Bucket: ref.bucket,
        Key: ref.key,
        VersionId: ref.versionId,
        ChecksumMode: 'ENABLED',
      }),
    );
  } catch (cause) {
    throw new SourceObjectError(
      `cannot read pcap object s3://${ref.bucket}/${ref.key} (${s3ErrorName(cause) || 'error'})`,
      where,
      cause,
    );
  }
  const size = Number(head.ContentLength ?? 0);
  const etag: string | undefined = head.ETag;
  const etagParts = etag ? /-(\d+)"?$/.exec(etag) : null;
  const checksumParts = head.ChecksumSHA256 ? /-(\d+)$/.exec(head.ChecksumSHA256) : null;
  const parts = etagParts ? Number(etagParts[1]) : checksumParts ? Number(checksumParts[1]) : null;
  const versionId: string | undefined = ref.versionId ?? head.VersionId ?? undefined;
  let partPlan: PartPlan | null = null;
  if (parts !== null && parts >= 1) {
    partPlan = await learnPartPlan(s3, { ...ref, versionId }, size, parts, logger);
  }
  return {
    bucket: ref.bucket,
    key: ref.key,
    versionId,
    size,
    lastModified: head.LastModified,
    etag,
    metadata: head.Metadata ?? {},
    checksumSha256: head.ChecksumSHA256,
    checksumType: head.ChecksumType,
    parts,
    partPlan,
  };
}

/**
 * The sizes of a multipart object's parts: GetObjectAttributes lists them; where that is not
 * available (moto's response does not parse), HeadObject PartNumber=1 gives the first part's
 * size and the AWS CLI's uniform part size is assumed (checked against the object size).
 */
async function learnPartPlan(
  s3: S3Client,
  ref: { bucket: string; key: string; versionId?: string | undefined },
  size: number,
  parts: number,
  logger: CoreLogger,
): Promise<PartPlan | null> {
  try {
    const sizes: number[] = [];
    let marker: string | undefined;
    for (let page = 0; page < MAX_ATTRIBUTE_PAGES; page++) {
      const out = await s3.send(
        new GetObjectAttributesCommand({
          Bucket: ref.bucket,
          Key: ref.key,
          VersionId: ref.versionId,
          ObjectAttributes: ['ObjectParts'],
          MaxParts: 1000,
          PartNumberMarker: marker,
        }),
      );
      for (const part of out.ObjectParts?.Parts ?? []) sizes.push(Number(part.Size ?? 0));
      if (!out.ObjectParts?.IsTruncated) break;
      marker = out.ObjectParts.NextPartNumberMarker;
    }
    const total = sizes.reduce((a, b) => a + b, 0);
    if (sizes.length === parts && total === size) return { sizes };
    logger.debug('GetObjectAttributes part list incomplete; trying the uniform part layout', {
      listed: sizes.length,
      parts,
    });
  } catch (error) {
    logger.debug('GetObjectAttributes unavailable; trying the uniform part layout', {
      error: s3ErrorName(error),
    });
  }
  try {
    const first = await s3.send(
      new HeadObjectCommand({
        Bucket: ref.bucket,
        Key: ref.key,
        VersionId: ref.versionId,
        PartNumber: 1,
      }),
    );
    return uniformPartPlan(size, Number(first.ContentLength ?? 0), parts);
  } catch (error) {
    logger.warn('cannot learn the part layout of a multipart pcap; S3 checksum unverifiable', {
      key: ref.key,
      error: s3ErrorName(error),
    });
    return null;
  }
}

/**
 * The object's bytes as chunks for the decoder, hashed as they pass. One pull at a time from
 * the HTTP body, so the decoder's pace is the download's pace (backpressure), and nothing is
 * kept. If the decoder stops early (an unreadable file), `drain()` reads the rest through the
 * hasher, so the integrity verdict always covers the whole object.
 */
export class HashingSource implements AsyncIterable<Uint8Array> {
  readonly hasher: StreamingHasher;
  private readonly iterator: AsyncIterator<Uint8Array>;
  private done = false;
  /** Set when reading the body failed (as opposed to the decoder failing). */
  sourceError: unknown;
  private readonly onChunk: ((bytesSoFar: number) => void) | undefined;

  private readonly body: AsyncIterable<Uint8Array>;
  private readonly deadline: { at: number; expired: () => Error } | undefined;

  /**
   * `deadline`: when reading must be over (epoch ms) and the error to fail with then. A pull
   * that is still waiting at that moment (a stalled connection) fails with it and the body is
   * destroyed; so does any pull after it.
   */
  constructor(
    body: AsyncIterable<Uint8Array>,
    plan: PartPlan | null,
    onChunk?: (bytesSoFar: number) => void,
    deadline?: { at: number; expired: () => Error },
  ) {
    this.hasher = new StreamingHasher(plan);
    this.body = body;
    this.iterator = body[Symbol.asyncIterator]();
    this.onChunk = onChunk;
    this.deadline = deadline;
  }

  /** The next chunk, or the deadline's error if it comes first. */
  private async nextBefore(deadline: { at: number; expired: () => Error }) {
    const left = deadline.at - Date.now();
    if (left <= 0) throw deadline.expired();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(deadline.expired()), left);
    });
    try {
      return await Promise.race([this.iterator.next(), expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async pull(): Promise<IteratorResult<Uint8Array>> {
    if (this.done) return { done: true, value: undefined };
    let next: IteratorResult<Uint8Array>;
    try {
      next = await (this.deadline ? this.nextBefore(this.deadline) : this.iterator.next());
    } catch (error) {
      this.sourceError = error;
      this.done = true;
      // A pending read of a stalled body never settles: destroying the body releases it.
      (this.body as { destroy?: (error?: Error) => void }).destroy?.();
      throw error;
    }
    if (next.done) {
      this.done = true;
      return next;
    }
    const chunk = next.value;
    this.hasher.update(chunk);
    this.onChunk?.(this.hasher.bytes);
    return { done: false, value: chunk };
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return {
      next: () => this.pull(),
      // The decoder stopping early must not close the body: drain() still needs it.
      return: async () => ({ done: true, value: undefined }),
    };
  }

  /** Reads (and hashes) whatever the decoder did not. */
  async drain(): Promise<void> {
    for (;;) {
      const next = await this.pull();
      if (next.done) return;
    }
  }

  /** Releases the HTTP connection when we give up on the object altogether. */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.iterator.return?.();
  }
}

/**
 * The S3 client validates GetObject checksums itself (responseChecksumValidation
 * WHEN_SUPPORTED) and would throw at the END of a tampered object's stream, after the decoder
 * read it all, or misread a composite checksum as a full-object one. We hash every byte
 * ourselves and must finish a tampered file to mark it, so this one request asks S3 for no
 * checksum and the SDK validates none.
 */
function withoutSdkChecksumValidation(command: GetObjectCommand): void {
  command.middlewareStack.add(
    (next) => async (args) => {
      (args.input as { ChecksumMode?: string }).ChecksumMode = undefined;
      const request = args.request as { headers?: Record<string, string> };
      if (request?.headers) delete request.headers['x-amz-checksum-mode'];
      return next(args);
    },
    { step: 'build', name: 'taplineOwnChecksumValidation', override: true },
  );
}

/** GetObject on the pinned version; the body as an async iterable of chunks. */
export async function openSourceBody(
  s3: S3Client,
  info: SourceObjectInfo,
): Promise<AsyncIterable<Uint8Array>> {
  try {
    const command = new GetObjectCommand({
      Bucket: info.bucket,
      Key: info.key,
      VersionId: info.versionId,
    });
    withoutSdkChecksumValidation(command);
    const out = await s3.send(command);
    const body = out.Body as (Readable & AsyncIterable<Uint8Array>) | undefined;
    if (!body || typeof body[Symbol.asyncIterator] !== 'function') {
      throw new Error('GetObject returned no readable body');
    }
    return body;
  } catch (cause) {
    throw new SourceObjectError(
      `cannot open pcap object s3://${info.bucket}/${info.key} (${s3ErrorName(cause) || 'error'})`,
      { bucket: info.bucket, key: info.key, versionId: info.versionId },
      cause,
    );
  }
}
