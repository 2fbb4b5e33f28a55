/**
 * checkOtherVersions: which other versions of a pcap key count as the same bytes, and how the
 * verdict reads them. (Listed on moto in test/integration/process-pcap-replaced-version.)
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  checkOtherVersions,
  integrityVerdict,
  type SourceCheck,
} from '../../shared/processing/integrity.ts';

const bytes = Buffer.from('the pcap bytes');
const hex = createHash('sha256').update(bytes).digest('hex');
const b64 = Buffer.from(hex, 'hex').toString('base64');
const other = createHash('sha256').update('forged').digest('hex');

const listed = (versions: Parameters<typeof checkOtherVersions>[0] & { status: 'listed' }) =>
  versions;

describe('other versions of a pcap key', () => {
  it('reads no other version as sole, equal bytes as same content', () => {
    expect(
      checkOtherVersions(listed({ status: 'listed', truncated: false, versions: [] }), hex, 14),
    ).toMatchObject({ status: 'sole-version', others: 0 });
    const same = checkOtherVersions(
      listed({
        status: 'listed',
        truncated: false,
        versions: [{ versionId: 'v1', size: bytes.length, checksumSha256: b64 }],
      }),
      hex,
      bytes.length,
    );
    expect(same).toMatchObject({ status: 'same-content', others: 1, differing: [] });
  });

  it('trusts the S3 checksum over the metadata a forger writes, and compares sizes', () => {
    const forged = checkOtherVersions(
      listed({
        status: 'listed',
        truncated: false,
        versions: [
          // claims our hash in metadata, but S3 checksummed other bytes
          {
            versionId: 'v1',
            size: bytes.length,
            metadataSha256: hex,
            checksumSha256: Buffer.from(other, 'hex').toString('base64'),
          },
          { versionId: 'v2', size: bytes.length + 1, metadataSha256: hex },
        ],
      }),
      hex,
      bytes.length,
    );
    expect(forged.status).toBe('different-content');
    expect(forged.differing.map((d) => d.versionId)).toEqual(['v1', 'v2']);
  });

  it('makes a differing version a mismatch; a failed listing leaves the verdict alone', () => {
    const match: SourceCheck = { status: 'match', expected: hex };
    const s3 = { ...match, expected: b64, kind: 'FULL_OBJECT' as const, parts: null };
    const differing = checkOtherVersions(
      listed({
        status: 'listed',
        truncated: false,
        versions: [{ versionId: 'v1', size: 3, metadataSha256: other }],
      }),
      hex,
      bytes.length,
    );
    const replaced = integrityVerdict(
      hex,
      14,
      match,
      s3,
      { status: 'not-listed', expected: null },
      differing,
    );
    expect(replaced.verdict).toBe('mismatch');
    expect(replaced.problems.join('\n')).toContain('v1');

    const refused = checkOtherVersions({ status: 'unavailable', reason: 'AccessDenied' }, hex, 14);
    expect(refused).toMatchObject({ status: 'unverifiable', reason: 'AccessDenied' });
    const verdict = integrityVerdict(
      hex,
      14,
      match,
      s3,
      { status: 'not-listed', expected: null },
      refused,
    );
    expect(verdict.verdict).toBe('verified');
    expect(verdict.versions?.status).toBe('unverifiable');
  });
});
