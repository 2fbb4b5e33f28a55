import { ListObjectVersionsCommand, type S3Client } from '@aws-sdk/client-s3';

/** One stored version of an object (delete markers are not listed). */
export interface ObjectVersion {
  /** `null` for an object written while the bucket was unversioned, as S3 names it. */
  versionId: string;
  size: number;
  lastModified: Date | undefined;
}

/**
 * The versions of exactly `key`, newest first (S3's order), at most `max`, paging as needed.
 * `Prefix` also lists longer keys that start with `key`; they sort after it, so the listing stops
 * at the first of them.
 */
export async function versionsOfKey(
  s3: S3Client,
  bucket: string,
  key: string,
  max = Number.POSITIVE_INFINITY,
): Promise<ObjectVersion[]> {
  const versions: ObjectVersion[] = [];
  let KeyMarker: string | undefined;
  let VersionIdMarker: string | undefined;
  for (;;) {
    const page = await s3.send(
      new ListObjectVersionsCommand({
        Bucket: bucket,
        Prefix: key,
        KeyMarker,
        VersionIdMarker,
        ...(Number.isFinite(max) ? { MaxKeys: Math.min(1000, max + 1) } : {}),
      }),
    );
    let pastKey = false;
    for (const v of page.Versions ?? []) {
      if (v.Key !== key) {
        if (v.Key !== undefined && v.Key > key) pastKey = true;
        continue;
      }
      versions.push({
        versionId: v.VersionId ?? 'null',
        size: Number(v.Size ?? 0),
        lastModified: v.LastModified,
      });
      if (versions.length >= max) return versions;
    }
    if (!page.IsTruncated || pastKey) return versions;
    KeyMarker = page.NextKeyMarker;
    VersionIdMarker = page.NextVersionIdMarker;
  }
}
