import { describe, expect, it } from 'vitest';
import { lookbackReportSchema as hostLookbackReportSchema } from '../../shared/capture/host-report.ts';
import { StandbyReportError } from '../../shared/standby/errors.ts';
import {
  parseLookbackFiles,
  parseLookbackReport,
  parseStandbyReport,
} from '../../shared/standby/reports.ts';

const status = {
  tapline: 'standby',
  action: 'status',
  status: 'ok',
  running: true,
  mode: 'supervisor',
  ringDirectory: '/var/lib/tapline/ring',
  pid: 4242,
  tcpdumpPid: 4243,
  state: 'running',
  files: 3,
  bytes: 123456,
  oldest: 1795423851,
  newest: 1795423869,
  restarts: 1,
  rotations: 2,
  drops: 0,
  pruned: 4,
  capBytes: 4000000,
  interface: 'eth0',
};

const file = {
  key: 'pcaps/cap-20261123T090000Z-1a2b3c4d/i-0123456789abcdef0/lookback-20261123T085900Z-0.pcap',
  versionId: 'v1',
  size: 1000,
  sha256: 'a'.repeat(64),
  s3ChecksumSha256: `${'A'.repeat(43)}=`,
  lookback: true,
  start: 1795423851,
  end: 1795423853.25,
};

describe('standby and look-back reports', () => {
  it('reads the last JSON line of the standby document output', () => {
    const report = parseStandbyReport(`tapline: noise\n${JSON.stringify(status)}\n`);
    expect(report.restarts).toBe(1);
    expect(report.state).toBe('running');
  });

  it('refuses a missing, broken or hostile line with a typed error', () => {
    expect(() => parseStandbyReport('nothing here')).toThrow(StandbyReportError);
    expect(() => parseStandbyReport('{"tapline":')).toThrow(/not JSON/);
    expect(() => parseStandbyReport(JSON.stringify({ ...status, restarts: -1 }))).toThrow(
      /restarts/,
    );
    expect(() => parseStandbyReport(JSON.stringify({ ...status, tapline: 'capture' }))).toThrow(
      StandbyReportError,
    );
  });

  it('reads look-back objects and their files; refuses keys outside the capture prefix', () => {
    const report = parseLookbackReport({
      status: 'ok',
      requestedSeconds: 600,
      windowStart: 1795423300,
      windowEnd: 1795423900,
      ring: 'running',
      rotated: true,
      fileCount: 1,
      bytes: 1000,
      coverageStart: 1795423851,
      coverageEnd: 1795423853.25,
      complete: false,
      gaps: [],
      errors: [],
    });
    expect(report.complete).toBe(false);
    expect(parseLookbackReport({ status: 'no-ring' }).errors).toEqual([]);
    expect(parseLookbackFiles([file])).toHaveLength(1);
    for (const key of [
      'pcaps/cap-20261123T090000Z-1a2b3c4d/i-0123456789abcdef0/../../x.pcap',
      'results/cap-20261123T090000Z-1a2b3c4d/i-0123456789abcdef0/lookback-1-0.pcap',
      'pcaps/cap-20261123T090000Z-1a2b3c4d/i-0123456789abcdef0/00001-x.pcap',
    ]) {
      expect(() => parseLookbackFiles([{ ...file, key }])).toThrow(StandbyReportError);
    }
    expect(() => parseLookbackFiles([{ ...file, lookback: false }])).toThrow(StandbyReportError);
    expect(() => parseLookbackReport({ status: 'maybe' })).toThrow(StandbyReportError);
  });

  it('holds the scripts to more than the capture core accepts from hosts, on the same base', () => {
    // what the scripts promise on top of the host-report schema
    for (const extra of [
      { ring: 'weird' },
      { windowStart: null },
      { gaps: [[-1, 5]] },
      { ringDirectory: `/${'d'.repeat(300)}` },
    ]) {
      expect(hostLookbackReportSchema.safeParse({ status: 'ok', ...extra }).success).toBe(true);
      expect(() => parseLookbackReport({ status: 'ok', ...extra })).toThrow(StandbyReportError);
    }
    // and the base's own checks apply to both
    for (const bad of [{ fileCount: -1 }, { bytes: 1.5 }, { errors: [7] }]) {
      expect(hostLookbackReportSchema.safeParse({ status: 'ok', ...bad }).success).toBe(false);
      expect(() => parseLookbackReport({ status: 'ok', ...bad })).toThrow(StandbyReportError);
    }
    expect(() => parseLookbackFiles([{ ...file, size: -1 }])).toThrow(StandbyReportError);
  });
});
