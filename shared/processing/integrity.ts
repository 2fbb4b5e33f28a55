import { createHash, type Hash } from 'node:crypto';

/**
 * Integrity of one pcap object: the SHA-256 we compute while streaming it, against what the
 * host recorded (object metadata `sha256`, lowercase hex), what S3 stored (the SHA-256
 * checksum, base64 of the raw digest; for a multipart upload a COMPOSITE checksum, i.e. the
 * SHA-256 of the concatenated part digests, `-N` suffixed on AWS) and, when the capture
 * manifest already lists the file, the manifest's record.
 */

export type SourceStatus =
  /** The source's hash equals ours. */
  | 'match'
  /** The source's hash differs from ours: the bytes are not what was recorded. */
  | 'mismatch'
  /** The source recorded no hash (metadata or checksum absent). */
  | 'missing'
  /** The source's value is not a well-formed SHA-256 (hex or base64 of 32 bytes). */
  | 'invalid'
  /** A value exists but cannot be compared (e.g. composite checksum without part sizes). */
  | 'unverifiable'
  /** Manifest only: the manifest does not list this file (yet); not a failure. */
  | 'not-listed';

export interface SourceCheck {
  status: SourceStatus;
  /** The value the source recorded, as recorded. */
  expected: string | null;
  /**
   * Manifest only: the manifest records this key under this other version ID (and not the
   * version being checked), and `expected` is that version's hash.
   */
  listedVersionId?: string;
}

export interface S3ChecksumCheck extends SourceCheck {
  /** FULL_OBJECT: SHA-256 of the whole object; COMPOSITE: of the part digests. */
  kind: 'FULL_OBJECT' | 'COMPOSITE' | null;
  parts: number | null;
}

export type IntegrityVerdict =
  /** Host hash and S3 checksum present and both equal to the bytes we read. */
  | 'verified'
  /** At least one source disagrees with the bytes: tampering, corruption or a host bug. */
  | 'mismatch'
  /** Nothing disagrees, but a required source is missing, invalid or unverifiable, or no
   * Tapline capture is known to have made the file (see ProvenanceCheck). */
  | 'unverified';

/**
 * The other versions of the same key. The host uploads each key once (a retry sends the same
 * bytes); another version with other bytes means recorded evidence was replaced (or this
 * version replaced it). Host hash and S3 checksum cannot show that: whoever uploads a version
 * sets both to agree with its bytes.
 */
export interface VersionsCheck {
  status: /** No other version of the key. */
    | 'sole-version'
    /** Other versions exist, all with this object's bytes (same size and SHA-256). */
    | 'same-content'
    /** At least one other version holds other bytes. */
    | 'different-content'
    /** The versions could not be listed or compared. */
    | 'unverifiable';
  /** How many other versions were looked at. */
  others: number;
  /** The other versions whose bytes differ: version ID and the SHA-256 they record. */
  differing: Array<{ versionId: string; sha256: string | null; size: number }>;
  /** Why the check could not be made, when it could not. */
  reason?: string;
}

/**
 * Whether a Tapline capture made the file. The capture core writes the manifest, naming every
 * host it sends the capture to, before any command is sent; every capture host may write under
 * `pcaps/`, so a file whose capture has no manifest, or whose manifest does not name its
 * instance (or names it as refused: no command went there), was not made by that capture, however
 * well its own hashes agree.
 */
export interface ProvenanceCheck {
  status: /** The manifest names the instance as a host the capture was sent to. */
    | 'capture-host'
    /** No manifest for the capture ID in the key. */
    | 'no-manifest'
    /** The manifest exists but could not be read or understood. */
    | 'manifest-unreadable'
    /** The manifest does not name the instance in the key. */
    | 'not-a-target'
    /** The manifest names the instance as refused: no capture command was sent to it. */
    | 'not-sent';
  /** What was wrong, in words. */
  detail: string | null;
}

export interface IntegrityResult {
  verdict: IntegrityVerdict;
  /** Our SHA-256 of the object's bytes, lowercase hex. */
  sha256: string;
  bytesRead: number;
  host: SourceCheck;
  s3: S3ChecksumCheck;
  manifest: SourceCheck;
  /** Other versions of the key (absent in results written before this check existed). */
  versions?: VersionsCheck;
  /** Whether a Tapline capture made the file (absent in results written before it existed). */
  provenance?: ProvenanceCheck;
  /** Human-readable reasons when the verdict is not `verified`. */
  problems: string[];
}

/** How S3 split the object when it was uploaded, so the composite checksum can be recomputed. */
export interface PartPlan {
  /** Sizes of parts 1..N in order; their sum is the object size. */
  sizes: number[];
}

/**
 * Part sizes for a multipart object whose parts all have `partSize` bytes except the last
 * (what the AWS CLI and SDKs do). Returns null when the numbers are inconsistent.
 */
export function uniformPartPlan(size: number, partSize: number, parts: number): PartPlan | null {
  if (!(parts >= 1 && partSize > 0)) return null;
  const last = size - partSize * (parts - 1);
  if (last <= 0 || last > partSize) return null;
  return { sizes: [...Array.from({ length: parts - 1 }, () => partSize), last] };
}

/**
 * SHA-256 of everything fed to it and, when a part plan is given, of each part: enough to
 * check a full-object and a composite checksum from one pass over the bytes.
 */
export class StreamingHasher {
  private readonly whole: Hash = createHash('sha256');
  private readonly plan: number[] | null;
  private readonly partDigests: Buffer[] = [];
  private part: Hash | null = null;
  private partIndex = 0;
  private partRemaining = 0;
  bytes = 0;

  constructor(plan: PartPlan | null = null) {
    this.plan = plan && plan.sizes.length > 0 ? plan.sizes : null;
    if (this.plan) {
      this.part = createHash('sha256');
      this.partRemaining = this.plan[0]!;
    }
  }

  update(chunk: Uint8Array): void {
    this.whole.update(chunk);
    this.bytes += chunk.byteLength;
    if (!this.plan) return;
    let offset = 0;
    while (offset < chunk.byteLength) {
      if (!this.part) return; // more bytes than the plan: the composite check will fail on size
      const take = Math.min(this.partRemaining, chunk.byteLength - offset);
      this.part.update(chunk.subarray(offset, offset + take));
      offset += take;
      this.partRemaining -= take;
      if (this.partRemaining === 0) {
        this.partDigests.push(this.part.digest());
        this.partIndex += 1;
        const next = this.plan[this.partIndex];
        this.part = next === undefined ? null : createHash('sha256');
        this.partRemaining = next ?? 0;
      }
    }
  }

  /** Hex digest of all bytes, plus the composite digest (base64) when the plan was met. */
  finish(): { sha256: string; composite: string | null } {
    const sha256 = this.whole.digest('hex');
    let composite: string | null = null;
    if (this.plan && this.part === null && this.partDigests.length === this.plan.length) {
      composite = createHash('sha256').update(Buffer.concat(this.partDigests)).digest('base64');
    }
    return { sha256, composite };
  }
}

const HEX64 = /^[0-9a-f]{64}$/;

/** base64 of 32 bytes → lowercase hex, or null if it is not that. */
export function base64DigestToHex(value: string): string | null {
  if (!/^[A-Za-z0-9+/]{43}=$/.test(value)) return null;
  const raw = Buffer.from(value, 'base64');
  return raw.length === 32 ? raw.toString('hex') : null;
}

export function hexToBase64Digest(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64');
}

/** Host metadata: lowercase hex (we accept upper case too, and say so in the status). */
export function checkHostHash(recorded: string | undefined, sha256: string): SourceCheck {
  if (recorded === undefined || recorded.trim() === '')
    return { status: 'missing', expected: null };
  const value = recorded.trim();
  if (!HEX64.test(value.toLowerCase())) return { status: 'invalid', expected: value.slice(0, 128) };
  return { status: value.toLowerCase() === sha256 ? 'match' : 'mismatch', expected: value };
}

/**
 * S3's stored checksum. `composite` is our composite digest (base64) when the object was a
 * multipart upload and we knew its parts; `parts` how many parts S3 says it has.
 */
export function checkS3Checksum(
  stored: string | undefined,
  checksumType: string | undefined,
  parts: number | null,
  hashed: { sha256: string; composite: string | null },
): S3ChecksumCheck {
  if (stored === undefined || stored === '') {
    return { status: 'missing', expected: null, kind: null, parts };
  }
  const suffix = /-(\d+)$/.exec(stored);
  const digest = suffix ? stored.slice(0, suffix.index) : stored;
  const suffixParts = suffix ? Number(suffix[1]) : null;
  const partCount = parts ?? suffixParts;
  const composite =
    checksumType === 'COMPOSITE' || suffix !== null || (partCount !== null && partCount >= 1);
  const kind = composite ? 'COMPOSITE' : 'FULL_OBJECT';
  if (base64DigestToHex(digest) === null) {
    return { status: 'invalid', expected: stored.slice(0, 128), kind, parts: partCount };
  }
  if (!composite) {
    const status = base64DigestToHex(digest) === hashed.sha256 ? 'match' : 'mismatch';
    return { status, expected: stored, kind, parts: partCount };
  }
  if (hashed.composite === null) {
    return { status: 'unverifiable', expected: stored, kind, parts: partCount };
  }
  return {
    status: hashed.composite === digest ? 'match' : 'mismatch',
    expected: stored,
    kind,
    parts: partCount,
  };
}

/**
 * The manifest's record of this file (by key and version), when there is one. When the manifest
 * lists the key only under other versions (`otherVersions`), this version replaced recorded
 * evidence unless its bytes equal a recorded version's: a hash equal to one of them is a
 * `match` (a retried upload), anything else a `mismatch` naming the version the manifest lists.
 */
export function checkManifestHash(
  listed: { sha256?: string | undefined } | undefined,
  sha256: string,
  otherVersions: ReadonlyArray<{ versionId: string; sha256?: string | undefined }> = [],
): SourceCheck {
  if (listed === undefined) {
    if (otherVersions.length === 0) return { status: 'not-listed', expected: null };
    const checks = otherVersions.map((other) => ({
      ...checkManifestHash(other, sha256),
      listedVersionId: other.versionId,
    }));
    const rank: Partial<Record<SourceStatus, number>> = { match: 0, mismatch: 1, invalid: 2 };
    return checks.sort((a, b) => (rank[a.status] ?? 3) - (rank[b.status] ?? 3))[0]!;
  }
  const value = listed.sha256?.trim();
  if (!value) return { status: 'missing', expected: null };
  if (!HEX64.test(value.toLowerCase())) return { status: 'invalid', expected: value.slice(0, 128) };
  return { status: value.toLowerCase() === sha256 ? 'match' : 'mismatch', expected: value };
}

/**
 * Compares the other versions of the key with the bytes we read: a version is the same content
 * when its size is ours and its full-object S3 checksum is our SHA-256 (or, without one, its
 * recorded x-amz-meta-sha256 is). Anything else is different content.
 */
export function checkOtherVersions(
  listing:
    | {
        status: 'listed';
        truncated: boolean;
        versions: ReadonlyArray<{
          versionId: string;
          size: number;
          metadataSha256?: string | undefined;
          checksumSha256?: string | undefined;
        }>;
      }
    | { status: 'unavailable'; reason: string },
  sha256: string,
  bytes: number,
): VersionsCheck {
  if (listing.status === 'unavailable') {
    return { status: 'unverifiable', others: 0, differing: [], reason: listing.reason };
  }
  const differing: VersionsCheck['differing'] = [];
  for (const v of listing.versions) {
    const checksumHex =
      v.checksumSha256 && !/-\d+$/.test(v.checksumSha256)
        ? base64DigestToHex(v.checksumSha256)
        : null;
    const meta = v.metadataSha256?.trim().toLowerCase();
    const recorded = checksumHex ?? (meta && HEX64.test(meta) ? meta : null);
    if (v.size === bytes && recorded === sha256) continue;
    differing.push({ versionId: v.versionId, sha256: recorded, size: v.size });
  }
  const others = listing.versions.length;
  if (differing.length > 0) return { status: 'different-content', others, differing };
  if (listing.truncated) {
    return {
      status: 'unverifiable',
      others,
      differing,
      reason: `more than ${others} other versions; not all compared`,
    };
  }
  return { status: others === 0 ? 'sole-version' : 'same-content', others, differing };
}

/** Combines the checks: any mismatch wins, then anything short of a full verification. */
export function integrityVerdict(
  sha256: string,
  bytesRead: number,
  host: SourceCheck,
  s3: S3ChecksumCheck,
  manifest: SourceCheck,
  versions?: VersionsCheck,
  provenance?: ProvenanceCheck,
): IntegrityResult {
  const problems: string[] = [];
  const describe = (name: string, check: SourceCheck) => {
    const other =
      check.listedVersionId === undefined
        ? ''
        : ` (it lists this key as version ${check.listedVersionId}, not this version: the object was replaced after the capture recorded it)`;
    switch (check.status) {
      case 'mismatch':
        problems.push(
          `${name} hash ${check.expected} does not match the object's ${sha256}${other}`,
        );
        break;
      case 'missing':
        problems.push(`${name} hash is missing${other}`);
        break;
      case 'invalid':
        problems.push(`${name} hash is not a SHA-256 value: ${check.expected}${other}`);
        break;
      case 'unverifiable':
        problems.push(`${name} checksum ${check.expected} could not be recomputed`);
        break;
      default:
        break;
    }
  };
  describe('host (x-amz-meta-sha256)', host);
  describe('S3 SHA-256 checksum', s3);
  if (manifest.status !== 'not-listed') describe('capture manifest', manifest);
  if (versions?.status === 'different-content') {
    const list = versions.differing
      .map((d) => `${d.versionId} (sha256 ${d.sha256 ?? 'unknown'}, ${d.size} bytes)`)
      .join(', ');
    problems.push(
      `the key has other versions with other bytes: ${list}; recorded evidence was replaced (or this version replaced it)`,
    );
  } else if (versions?.status === 'unverifiable' && versions.others > 0) {
    problems.push(`the other versions of the key could not be compared: ${versions.reason}`);
  }
  if (provenance && provenance.status !== 'capture-host') {
    problems.push(provenance.detail ?? `provenance: ${provenance.status}`);
  }
  // A listing that failed outright (no s3:ListBucketVersions on pcaps/, a fault) leaves the
  // verdict to the other checks; the completion record says the check could not be made.
  const mismatch =
    [host, s3, manifest].some((c) => c.status === 'mismatch') ||
    versions?.status === 'different-content';
  const verdict: IntegrityVerdict = mismatch
    ? 'mismatch'
    : problems.length > 0
      ? 'unverified'
      : 'verified';
  return {
    verdict,
    sha256,
    bytesRead,
    host,
    s3,
    manifest,
    ...(versions ? { versions } : {}),
    ...(provenance ? { provenance } : {}),
    problems,
  };
}
