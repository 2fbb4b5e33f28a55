import { describe, expect, it } from 'vitest';
import { UnexpectedPcapKeyError } from '../../shared/processing/errors.ts';
import { parsePcapKey, resultLayout, versionSegment } from '../../shared/processing/layout.ts';

const KEY = 'pcaps/cap-20261123T084000Z-1a2b3c4d/i-0123456789abcdef0/ring 000.pcap';

describe('pcap keys and the results layout', () => {
  it('splits a contract key and dates it by the capture ID', () => {
    expect(parsePcapKey(KEY)).toEqual({
      captureId: 'cap-20261123T084000Z-1a2b3c4d',
      instanceId: 'i-0123456789abcdef0',
      file: 'ring 000.pcap',
      day: '2026-11-23',
    });
  });

  it('puts the per-file folder under results/<capture>/<instance>/<file>/<version>/ and each table under its own dt= prefix', () => {
    const layout = resultLayout(parsePcapKey(KEY), 'v1.abc_D-E');
    expect(layout.home).toBe(
      'results/cap-20261123T084000Z-1a2b3c4d/i-0123456789abcdef0/ring 000.pcap/v1.abc_D-E/',
    );
    expect(layout.completion).toBe(`${layout.home}summary.json`);
    expect(layout.streams).toBe(`${layout.home}streams/`);
    expect(layout.tables.conversations).toBe(
      'results/tables/conversations/dt=2026-11-23/capture=cap-20261123T084000Z-1a2b3c4d/instance=i-0123456789abcdef0/file=ring 000.pcap/version=v1.abc_D-E/conversations.jsonl.gz',
    );
    expect(layout.tables.summary.endsWith('/summary.json')).toBe(true);
    const prefixes = Object.entries(layout.tables).map(([t, k]) => [t, k.split('/dt=')[0]]);
    for (const [table, prefix] of prefixes) expect(prefix).toBe(`results/tables/${table}`);
  });

  it('names a missing version "null", as S3 does', () => {
    expect(versionSegment(undefined)).toBe('null');
    expect(() => versionSegment('a/b')).toThrow(UnexpectedPcapKeyError);
  });

  it.each([
    ['outside pcaps/', 'other/cap-20261123T084000Z-1a2b3c4d/i-0123456789abcdef0/a.pcap'],
    ['too shallow', 'pcaps/cap-20261123T084000Z-1a2b3c4d/a.pcap'],
    ['too deep', 'pcaps/cap-20261123T084000Z-1a2b3c4d/i-0123456789abcdef0/x/a.pcap'],
    ['a capture ID off contract', 'pcaps/tables/i-0123456789abcdef0/a.pcap'],
    ['an impossible date', 'pcaps/cap-20261341T084000Z-1a2b3c4d/i-0123456789abcdef0/a.pcap'],
    ['a bad instance', 'pcaps/cap-20261123T084000Z-1a2b3c4d/host-1/a.pcap'],
    ['a dot-dot file', 'pcaps/cap-20261123T084000Z-1a2b3c4d/i-0123456789abcdef0/..'],
    ['an empty file', 'pcaps/cap-20261123T084000Z-1a2b3c4d/i-0123456789abcdef0/'],
    ['a control character', 'pcaps/cap-20261123T084000Z-1a2b3c4d/i-0123456789abcdef0/a\nb.pcap'],
  ])('refuses a key %s with UnexpectedPcapKeyError', (_what, key) => {
    expect(() => parsePcapKey(key)).toThrow(UnexpectedPcapKeyError);
  });
});
