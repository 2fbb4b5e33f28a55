import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  checkHostHash,
  checkManifestHash,
  checkS3Checksum,
  integrityVerdict,
  StreamingHasher,
  uniformPartPlan,
} from '../../shared/processing/integrity.ts';
import { checkProvenance } from '../../shared/processing/manifest.ts';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest();

/** S3's composite SHA-256 for given part sizes, computed the way S3 documents it. */
function composite(bytes: Buffer, sizes: number[]): string {
  const digests: Buffer[] = [];
  let offset = 0;
  for (const size of sizes) {
    digests.push(sha(bytes.subarray(offset, offset + size)));
    offset += size;
  }
  return sha(Buffer.concat(digests)).toString('base64');
}

/** Feeds `bytes` to a hasher in randomly sized chunks. */
function feed(hasher: StreamingHasher, bytes: Buffer, seed = 7): void {
  let offset = 0;
  let x = seed;
  while (offset < bytes.length) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const size = 1 + (x % 5000);
    hasher.update(bytes.subarray(offset, offset + size));
    offset += size;
  }
}

describe('integrity of a streamed pcap', () => {
  const bytes = randomBytes(50_000);
  const hex = sha(bytes).toString('hex');

  it('hashes the whole object and recomputes a multipart composite checksum in the same pass', () => {
    const plan = uniformPartPlan(bytes.length, 16_384, 4);
    expect(plan?.sizes).toEqual([16_384, 16_384, 16_384, 50_000 - 3 * 16_384]);
    const hasher = new StreamingHasher(plan);
    feed(hasher, bytes);
    const out = hasher.finish();
    expect(out.sha256).toBe(hex);
    expect(out.composite).toBe(composite(bytes, plan!.sizes));
    expect(hasher.bytes).toBe(bytes.length);
  });

  it('refuses inconsistent part layouts', () => {
    expect(uniformPartPlan(100, 10, 3)).toBeNull();
    expect(uniformPartPlan(100, 60, 2)).toEqual({ sizes: [60, 40] });
    expect(uniformPartPlan(100, 0, 2)).toBeNull();
  });

  it('checks a full-object S3 checksum and a composite one with its -N suffix', () => {
    const hashed = { sha256: hex, composite: composite(bytes, [30_000, 20_000]) };
    expect(checkS3Checksum(sha(bytes).toString('base64'), 'FULL_OBJECT', null, hashed).status).toBe(
      'match',
    );
    expect(checkS3Checksum(`${hashed.composite}-2`, 'COMPOSITE', 2, hashed)).toMatchObject({
      status: 'match',
      kind: 'COMPOSITE',
      parts: 2,
    });
    const other = sha(Buffer.from('other')).toString('base64');
    expect(checkS3Checksum(other, undefined, null, hashed).status).toBe('mismatch');
    expect(checkS3Checksum(`${other}-2`, undefined, null, hashed).status).toBe('mismatch');
    expect(checkS3Checksum(undefined, undefined, null, hashed).status).toBe('missing');
    expect(checkS3Checksum('not-base64!', undefined, null, hashed).status).toBe('invalid');
    expect(
      checkS3Checksum(`${hashed.composite}-2`, 'COMPOSITE', 2, { sha256: hex, composite: null })
        .status,
    ).toBe('unverifiable');
  });

  it('checks the host hash (hex) and tells missing from malformed', () => {
    expect(checkHostHash(hex, hex).status).toBe('match');
    expect(checkHostHash(hex.toUpperCase(), hex).status).toBe('match');
    expect(checkHostHash('0'.repeat(64), hex).status).toBe('mismatch');
    expect(checkHostHash(undefined, hex).status).toBe('missing');
    expect(checkHostHash('abc', hex).status).toBe('invalid');
  });

  it('verified only when host and S3 agree with the bytes; any mismatch wins; missing is unverified', () => {
    const s3ok = checkS3Checksum(sha(bytes).toString('base64'), undefined, null, {
      sha256: hex,
      composite: null,
    });
    const notListed = checkManifestHash(undefined, hex);
    expect(integrityVerdict(hex, 1, checkHostHash(hex, hex), s3ok, notListed)).toMatchObject({
      verdict: 'verified',
      problems: [],
    });
    const missing = integrityVerdict(hex, 1, checkHostHash(undefined, hex), s3ok, notListed);
    expect(missing.verdict).toBe('unverified');
    expect(missing.problems.join()).toMatch(/host .* missing/);
    const tampered = integrityVerdict(hex, 1, checkHostHash('1'.repeat(64), hex), s3ok, notListed);
    expect(tampered.verdict).toBe('mismatch');
    const manifestDisagrees = integrityVerdict(
      hex,
      1,
      checkHostHash(hex, hex),
      s3ok,
      checkManifestHash({ sha256: '2'.repeat(64) }, hex),
    );
    expect(manifestDisagrees.verdict).toBe('mismatch');
    expect(manifestDisagrees.problems.join()).toMatch(/manifest/);
  });

  it('vouches only for a file its capture sent a command for', () => {
    const cap = 'cap-20261124T010203Z-0a1b2c3d';
    const instance = 'i-0a1b2c3d4e5f60718';
    const provenance = (manifest: Parameters<typeof checkProvenance>[0]) =>
      checkProvenance(manifest, cap, instance);
    expect(provenance({ status: 'read', hostStatus: 'uploading' })).toEqual({
      status: 'capture-host',
      detail: null,
    });
    expect(provenance({ status: 'absent' }).status).toBe('no-manifest');
    expect(provenance({ status: 'unreadable', problem: 'manifest is not JSON' })).toMatchObject({
      status: 'manifest-unreadable',
      detail: expect.stringContaining('manifest is not JSON'),
    });
    expect(provenance({ status: 'read', hostStatus: null }).status).toBe('not-a-target');
    expect(provenance({ status: 'read', hostStatus: 'refused' }).status).toBe('not-sent');

    const s3ok = checkS3Checksum(sha(bytes).toString('base64'), undefined, null, {
      sha256: hex,
      composite: null,
    });
    const host = checkHostHash(hex, hex);
    const notListed = checkManifestHash(undefined, hex);
    const stray = integrityVerdict(
      hex,
      1,
      host,
      s3ok,
      notListed,
      undefined,
      provenance({ status: 'absent' }),
    );
    expect(stray.verdict).toBe('unverified');
    expect(stray.provenance?.status).toBe('no-manifest');
    expect(stray.problems).toEqual([
      expect.stringMatching(new RegExp(`capture ${cap} has no manifest`)),
    ]);
    // a disagreeing hash still wins
    const tampered = integrityVerdict(
      hex,
      1,
      checkHostHash('1'.repeat(64), hex),
      s3ok,
      notListed,
      undefined,
      provenance({ status: 'read', hostStatus: null }),
    );
    expect(tampered.verdict).toBe('mismatch');
    const sent = integrityVerdict(
      hex,
      1,
      host,
      s3ok,
      notListed,
      undefined,
      provenance({ status: 'read', hostStatus: 'running' }),
    );
    expect(sent).toMatchObject({ verdict: 'verified', problems: [] });
  });
});
