import {
  GetObjectCommand,
  type GetObjectCommandOutput,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';

/**
 * Small JSON objects in the evidence bucket (manifests, locks, cooldowns, budget slots), always
 * SSE-KMS with the evidence key, with S3 conditional writes as the only concurrency control:
 * IfNoneMatch '*' creates exactly once, IfMatch <etag> replaces only what we read.
 */
export interface EvidenceStore {
  s3: S3Client;
  bucket: string;
  /** Evidence KMS key ARN (resolved). */
  keyArn: string;
  /**
   * Guard objects (locks, cooldowns, budget slots, notice markers) are kept under GOVERNANCE
   * retention until this many hours past their own expiry, not the bucket's evidence retention
   * (they are state, not evidence; a flood of them must not stay locked for a year). 0 or unset:
   * the bucket default.
   */
  guardRetentionHours?: number | undefined;
}

export interface StoredJson<T> {
  value: T;
  etag: string;
  versionId?: string | undefined;
}

export type PutCondition = { ifNoneMatch: true } | { ifMatch: string } | undefined;

/** True for the answers S3 gives when a conditional write loses (412, 409 conflict). */
export function isConditionFailure(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return (
    e?.name === 'PreconditionFailed' ||
    e?.name === 'ConditionalRequestConflict' ||
    e?.$metadata?.httpStatusCode === 412 ||
    e?.$metadata?.httpStatusCode === 409
  );
}

function isMissing(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

/** Writes JSON; returns the new ETag and version, or undefined when the condition failed. */
export async function putJson(
  store: EvidenceStore,
  key: string,
  value: unknown,
  condition: PutCondition,
  options: { retainUntil?: Date | undefined } = {},
): Promise<{ etag: string; versionId?: string | undefined } | undefined> {
  try {
    const out = await store.s3.send(
      new PutObjectCommand({
        Bucket: store.bucket,
        Key: key,
        Body: `${JSON.stringify(value, null, 2)}\n`,
        ContentType: 'application/json',
        ServerSideEncryption: 'aws:kms',
        SSEKMSKeyId: store.keyArn,
        ...(condition && 'ifNoneMatch' in condition ? { IfNoneMatch: '*' } : {}),
        ...(condition && 'ifMatch' in condition ? { IfMatch: condition.ifMatch } : {}),
        ...(options.retainUntil
          ? { ObjectLockMode: 'GOVERNANCE', ObjectLockRetainUntilDate: options.retainUntil }
          : {}),
      }),
    );
    return { etag: out.ETag ?? '', versionId: out.VersionId };
  } catch (error) {
    if (condition && isConditionFailure(error)) return undefined;
    throw error;
  }
}

/**
 * One stored JSON object as read: its ETag, version and write time, and either its parsed value
 * (any JSON: the caller decides what shape it must have) or, when the body is not JSON at all,
 * the parse error. Corrupt content is an outcome here, not an exception: each reader decides
 * what it means (a manifest read fails, a corrupt guard is held; see guards.ts readLease).
 */
export type StoredJsonRead = {
  etag: string;
  versionId?: string | undefined;
  /** S3 LastModified: when the object was last written (the writer cannot forge it). */
  lastModified?: Date | undefined;
} & ({ parsed: true; value: unknown } | { parsed: false; error: unknown });

/**
 * THE read of a JSON object from the evidence store: undefined when the object does not exist
 * (or is deleted); an unparseable body is returned as `parsed: false`, never thrown.
 */
export async function readStoredJson(
  store: EvidenceStore,
  key: string,
): Promise<StoredJsonRead | undefined> {
  let out: GetObjectCommandOutput;
  let text: string;
  try {
    out = await store.s3.send(new GetObjectCommand({ Bucket: store.bucket, Key: key }));
    text = (await out.Body?.transformToString()) ?? '';
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
  const meta = { etag: out.ETag ?? '', versionId: out.VersionId, lastModified: out.LastModified };
  try {
    return { ...meta, parsed: true, value: JSON.parse(text) as unknown };
  } catch (error) {
    return { ...meta, parsed: false, error };
  }
}

/**
 * Reads JSON with its ETag; undefined when the object does not exist (or is deleted). A body
 * that is not JSON throws the parse error.
 */
export async function getJson<T>(
  store: EvidenceStore,
  key: string,
): Promise<StoredJson<T> | undefined> {
  const read = await readStoredJson(store, key);
  if (!read) return undefined;
  if (!read.parsed) throw read.error;
  return { value: read.value as T, etag: read.etag, versionId: read.versionId };
}

export async function listKeys(store: EvidenceStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let ContinuationToken: string | undefined;
  do {
    const out = await store.s3.send(
      new ListObjectsV2Command({ Bucket: store.bucket, Prefix: prefix, ContinuationToken }),
    );
    for (const o of out.Contents ?? []) if (o.Key) keys.push(o.Key);
    ContinuationToken = out.IsTruncated ? out.NextContinuationToken : undefined;
  } while (ContinuationToken);
  return keys;
}
