import { describe, expect, it } from 'vitest';
import { parseHostReport } from '../../shared/capture/host-report.ts';
import { MalformedEventError } from '../../shared/errors.ts';
import type { ManifestHost } from '../../shared/evidence/manifest.ts';

const good = {
  tapline: 'capture-result',
  version: 1,
  captureId: 'cap-20261123T084000Z-1a2b3c4d',
  instanceId: 'i-0123456789abcdef0',
  status: 'success',
  interface: 'ens5',
  started: 1795423200,
  ended: 1795423260,
  files: [
    {
      key: 'pcaps/cap-20261123T084000Z-1a2b3c4d/i-0123456789abcdef0/00001-20261123T084000Z.pcap',
      versionId: 'v1',
      size: 24,
      sha256: 'a'.repeat(64),
      s3ChecksumSha256: `${'q'.repeat(43)}=`,
      lookback: false,
      start: 1795423200.5,
      end: 1795423259.25,
    },
  ],
  fileCount: 1,
  bytes: 24,
  packetsCaptured: 0,
  packetsReceivedByFilter: 0,
  packetsDroppedByKernel: null,
  unsent: [],
  errors: [],
};

describe('parseHostReport', () => {
  it('takes the last JSON line of the output, ignoring anything before it', () => {
    const report = parseHostReport(`noise\n{"not":"it"}\n${JSON.stringify(good)}\n\n`);
    expect(report.files[0]!.size).toBe(24);
    expect(report.packetsDroppedByKernel).toBeNull();
  });

  it('refuses missing, truncated and hostile reports with a typed error', () => {
    const line = JSON.stringify(good);
    for (const stdout of [
      '',
      'tapline: killed',
      line.slice(0, line.length - 10),
      JSON.stringify({ ...good, status: 'ok' }),
      JSON.stringify({ ...good, files: [{ ...good.files[0], key: '../../locks/i-1.json' }] }),
      JSON.stringify({ ...good, files: [{ ...good.files[0], sha256: 'zz' }] }),
      JSON.stringify({ ...good, packetsCaptured: -1 }),
    ]) {
      expect(() => parseHostReport(stdout), stdout.slice(0, 60)).toThrow(MalformedEventError);
    }
  });

  it('keeps the look-back report, and keeps the files when the look-back part is broken', () => {
    const lookback = {
      status: 'partial',
      requestedSeconds: 900,
      windowStart: 1795422300,
      windowEnd: 1795423200,
      ringDirectory: '/var/lib/tapline/ring',
      ring: 'running',
      rotated: true,
      fileCount: 3,
      bytes: 4096,
      silentFiles: 1,
      coverageStart: 1795422310,
      coverageEnd: 1795423199.5,
      complete: false,
      gaps: [[1795422500, 1795422560]],
      errors: ['look-back: upload of lookback-1.pcap failed'],
    };
    expect(parseHostReport(JSON.stringify({ ...good, lookback })).lookback).toEqual(lookback);
    // The manifest keeps it as validated, in its typed field (tsc checks this assignment: the
    // validated shape, `unreadable` included, must fit ManifestHost.lookback).
    const host: Pick<ManifestHost, 'lookback'> = {};
    host.lookback = parseHostReport(JSON.stringify({ ...good, lookback })).lookback;
    expect(host.lookback?.gaps).toEqual([[1795422500, 1795422560]]);
    // Older documents print none; a not-requested one says so.
    expect(parseHostReport(JSON.stringify(good)).lookback).toBeUndefined();
    expect(
      parseHostReport(JSON.stringify({ ...good, lookback: { status: 'not-requested' } })).lookback,
    ).toEqual({ status: 'not-requested', errors: [] });
    for (const broken of [
      { ...lookback, status: 'rm -rf' },
      { ...lookback, gaps: 'everything' },
      'ok',
    ]) {
      const report = parseHostReport(JSON.stringify({ ...good, lookback: broken }));
      expect(report.files).toHaveLength(1);
      expect(report.lookback).toMatchObject({ status: 'unreadable' });
      expect(report.lookback!.errors[0]).toMatch(/^look-back report: /);
      const kept: ManifestHost['lookback'] = report.lookback;
      expect(kept?.status).toBe('unreadable');
    }
  });

  it('keeps everything else when `tools` is malformed, and says what of it was not kept', () => {
    const sound = { aws: 'aws-cli/2.15.0', tcpdump: 'tcpdump version 4.99.4' };
    const baseline = parseHostReport(JSON.stringify({ ...good, tools: sound }));
    expect(baseline.tools).toEqual(sound);
    expect(baseline.reportProblems).toEqual([]);
    const { tools: _tools, reportProblems: _problems, ...rest } = baseline;
    expect(rest.files).toHaveLength(1);
    // Older documents print no tools at all: nothing to say.
    expect(parseHostReport(JSON.stringify(good))).toMatchObject({ reportProblems: [] });
    expect(parseHostReport(JSON.stringify(good)).tools).toBeUndefined();

    const many = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`tool${i}`, `v${i}`]));
    const cases: [unknown, unknown, RegExp[]][] = [
      ['aws-cli/2.15.0', undefined, [/^host report: tools: expected an object .* got string/]],
      [['aws-cli/2.15.0'], undefined, [/got an array/]],
      [null, undefined, [/got null/]],
      [42, undefined, [/got number/]],
      [
        { ...sound, aws: 2 },
        { tcpdump: sound.tcpdump },
        [/^host report: tools\.aws: .*got number; dropped$/],
      ],
      [
        { ...sound, aws: { version: '2' } },
        { tcpdump: sound.tcpdump },
        [/tools\.aws: .*got object/],
      ],
      [
        { ...sound, aws: 'aws-cli\u001b[31m/2' },
        { tcpdump: sound.tcpdump },
        [/control characters/],
      ],
      [
        { ...sound, tcpdump: 't'.repeat(100) },
        { aws: sound.aws, tcpdump: 't'.repeat(64) },
        [/tools\.tcpdump: 100 characters, kept the first 64/],
      ],
      // a newer script's extra tool is kept; a name that is not one is dropped and said
      [
        { ...sound, tshark: 'TShark (Wireshark) 4.4.1', '../../etc/passwd': 'x' },
        { ...sound, tshark: 'TShark (Wireshark) 4.4.1' },
        [/tools entry "\.\.\/\.\.\/etc\/passwd": not a tool name; dropped/],
      ],
      [many, Object.fromEntries(Object.entries(many).slice(0, 16)), [/24 entries beyond/]],
      [{}, {}, []],
    ];
    for (const [tools, kept, problems] of cases) {
      const label = JSON.stringify(tools)?.slice(0, 60) ?? String(tools);
      const report = parseHostReport(JSON.stringify({ ...good, tools }));
      const { tools: gotTools, reportProblems, ...others } = report;
      expect(others, label).toEqual(rest); // status, files, counts, errors: nothing lost
      expect(gotTools, label).toEqual(kept);
      expect(reportProblems, label).toHaveLength(problems.length);
      for (const [i, problem] of problems.entries()) {
        expect(reportProblems[i], label).toMatch(problem);
      }
      // what is kept fits the manifest's host entry (tsc checks this assignment)
      const host: Pick<ManifestHost, 'tools'> = {};
      host.tools = gotTools;
    }
  });

  it('still refuses a report whose other fields are broken, whatever `tools` says', () => {
    expect(() =>
      parseHostReport(
        JSON.stringify({ ...good, tools: 'x', files: [{ ...good.files[0], size: -1 }] }),
      ),
    ).toThrow(MalformedEventError);
  });
});
