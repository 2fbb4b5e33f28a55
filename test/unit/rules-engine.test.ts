import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../shared/errors.ts';
import { parseFlowLogFormat } from '../../shared/flowlogs/format.ts';
import { FlowScanner } from '../../shared/flowlogs/scanner.ts';
import { CidrSet } from '../../shared/rules/cidr.ts';
import { defaultRules, loadRules, type RulesConfig } from '../../shared/rules/config.ts';
import { RuleEngine } from '../../shared/rules/engine.ts';
import { flowLogFixture } from '../support/flowlog-inputs.ts';

/** A v2 record; only what the test cares about is given. */
function rec(r: {
  src: string;
  dst: string;
  sp?: number | string;
  dp?: number | string;
  proto?: number;
  pk?: number;
  by?: number;
  t?: number;
  action?: 'ACCEPT' | 'REJECT';
}): string {
  const t = r.t ?? 1_763_880_000;
  return `2 123456789012 eni-0a1b2c3d4e5f60718 ${r.src} ${r.dst} ${r.sp ?? 40000} ${r.dp ?? 443} ${r.proto ?? 6} ${r.pk ?? 1} ${r.by ?? 60} ${t} ${t + 60} ${r.action ?? 'ACCEPT'} OK`;
}

function run(lines: string[] | string, rules: RulesConfig = defaultRules(), format?: string) {
  const engine = new RuleEngine(rules);
  const scanner = new FlowScanner(engine, {
    ...(format ? { format: parseFlowLogFormat(format) } : {}),
  });
  scanner.push(Buffer.from(Array.isArray(lines) ? `${lines.join('\n')}\n` : lines));
  scanner.end();
  return { findings: engine.finish(), engine };
}

const rules = (override: Record<string, unknown>) => loadRules(override);

describe('port-zero', () => {
  it('fires for TCP and UDP with port 0 on either side, IPv4 and IPv6', () => {
    const { findings } = run([
      rec({ src: '10.0.0.1', dst: '10.0.0.2', dp: 0 }),
      rec({ src: '10.0.0.2', dst: '10.0.0.1', sp: 0, dp: 40000 }),
      rec({ src: '10.0.0.1', dst: '10.0.0.3', dp: 0, proto: 17 }),
      rec({ src: 'fd00::1', dst: 'fd00::2', sp: 0, dp: 53, proto: 17 }),
    ]);
    expect(findings.map((f) => f.fingerprint)).toEqual([
      'port-zero:tcp:10.0.0.1:10.0.0.2',
      'port-zero:udp:10.0.0.1:10.0.0.3',
      'port-zero:udp:fd00::1:fd00::2',
    ]);
    // the probe and its reply are one finding
    expect(findings[0]).toMatchObject({ records: 2, srcaddr: '10.0.0.1', dstport: 0 });
  });

  it('does not fire for ICMP or other protocols, which carry 0 in both ports (AWS doc sample)', () => {
    expect(run(flowLogFixture('aws-doc-default.log')).findings).toEqual([]);
    expect(
      run([rec({ src: '10.0.0.1', dst: '10.0.0.2', sp: 0, dp: 0, proto: 58 })]).findings,
    ).toEqual([]);
  });

  it('folds 1,000 identical probes into one finding with counts', () => {
    const lines = Array.from({ length: 1000 }, (_, i) =>
      rec({ src: '198.51.100.9', dst: '10.0.0.5', sp: 30000 + i, dp: 0 }),
    );
    const { findings } = run(lines);
    expect(findings).toHaveLength(1);
    expect(findings[0]).toMatchObject({ records: 1000, packets: 1000 });
    expect(findings[0]!.evidence).toHaveLength(defaultRules().limits.maxEvidence);
  });
});

describe('port-scan and host-sweep', () => {
  const scanLines = (n: number, t = 1_763_880_000) =>
    Array.from({ length: n }, (_, i) =>
      rec({ src: '203.0.113.5', dst: '10.0.0.7', sp: 51000, dp: 1 + i, t }),
    );

  it('port-scan fires at the distinct-port threshold, not below', () => {
    expect(run(scanLines(19)).findings).toEqual([]);
    const { findings } = run(scanLines(20));
    expect(findings).toHaveLength(1);
    expect(findings[0]).toMatchObject({
      rule: 'port-scan',
      distinct: 20,
      fingerprint: 'port-scan:203.0.113.5:10.0.0.7',
    });
    // evidence: the records that added a port, from the second on, bounded
    expect(findings[0]!.evidence).toHaveLength(19);
    expect(findings[0]!.evidence[0]).toContain(' 51000 2 6 ');
  });

  it('does not count replies: a server answering one busy client on many ports', () => {
    const replies = Array.from({ length: 200 }, (_, i) =>
      rec({ src: '10.0.0.7', dst: '10.0.0.8', sp: 443, dp: 33000 + i }),
    );
    expect(run(replies).findings).toEqual([]);
  });

  it('uses tcp-flags when present: SYN without SYN-ACK is a probe', () => {
    const format = 'srcaddr dstaddr srcport dstport protocol tcp-flags start end action log-status';
    const line = (dp: number, flags: number) =>
      `10.0.0.9 10.0.0.7 40000 ${dp} 6 ${flags} 1763880000 1763880060 ACCEPT OK`;
    const probes = Array.from({ length: 25 }, (_, i) => line(i + 1, 2));
    const answers = Array.from({ length: 25 }, (_, i) => line(i + 1, 18));
    expect(run(probes, defaultRules(), format).findings.map((f) => f.rule)).toContain('port-scan');
    expect(run(answers, defaultRules(), format).findings).toEqual([]);
  });

  it('host-sweep counts distinct hosts per service, ICMP included', () => {
    const sweep = Array.from({ length: 20 }, (_, i) =>
      rec({ src: '10.0.0.9', dst: `10.0.1.${i + 1}`, sp: 40000, dp: 22 }),
    );
    const ping = Array.from({ length: 20 }, (_, i) =>
      rec({ src: '10.0.0.9', dst: `10.0.2.${i + 1}`, sp: 0, dp: 0, proto: 1 }),
    );
    const { findings } = run([...sweep, ...ping]);
    expect(findings.map((f) => f.fingerprint).sort()).toEqual([
      'host-sweep:10.0.0.9:icmp',
      'host-sweep:10.0.0.9:tcp:22',
    ]);
  });

  it('windows are configuration: spread beyond the window, no finding', () => {
    const spread = Array.from({ length: 30 }, (_, i) =>
      rec({
        src: '203.0.113.5',
        dst: '10.0.0.7',
        sp: 51000,
        dp: 1 + i,
        t: 1_763_880_000 + i * 100,
      }),
    );
    // 30 ports over 3,000 s: 6 per 600 s window (the default), never 20 in one window
    expect(run(spread).findings).toEqual([]);
    const wide = rules({ rules: { 'port-scan': { windowSeconds: 3600 } } });
    expect(run(spread, wide).findings.map((f) => f.distinct)).toEqual([30]);
  });
});

describe('reject-burst, deny-list, egress-volume, rare-protocol', () => {
  it('reject-burst counts REJECT records from one source', () => {
    const r = rules({ rules: { 'reject-burst': { minRejects: 5 } } });
    const lines = Array.from({ length: 5 }, (_, i) =>
      rec({ src: '198.51.100.1', dst: `10.0.0.${i + 1}`, dp: 3389, action: 'REJECT' }),
    );
    expect(run(lines.slice(0, 4), r).findings).toEqual([]);
    expect(run(lines, r).findings.map((f) => f.fingerprint)).toContain('reject-burst:198.51.100.1');
  });

  it('deny-list matches either address, IPv4 and IPv6 CIDRs', () => {
    const r = rules({
      rules: { 'deny-list': { cidrs: ['198.51.100.0/24', '2001:db8:bad::/48'] } },
    });
    const { findings } = run(
      [
        rec({ src: '10.0.0.1', dst: '198.51.100.77' }),
        rec({ src: '2001:db8:bad:1::5', dst: 'fd00::9' }),
        rec({ src: '10.0.0.1', dst: '198.51.101.1' }),
      ],
      r,
    );
    expect(findings.map((f) => f.fingerprint)).toEqual([
      'deny-list:198.51.100.77:10.0.0.1',
      'deny-list:2001:db8:bad:1::5:fd00::9',
    ]);
  });

  it('egress-volume sums bytes internal → external only, skipping AWS services', () => {
    const r = rules({ rules: { 'egress-volume': { minBytes: 1000 } } });
    const { findings } = run(
      [
        rec({ src: '10.0.0.1', dst: '203.0.113.9', by: 600 }),
        rec({ src: '10.0.0.1', dst: '203.0.113.9', by: 600 }),
        rec({ src: '10.0.0.1', dst: '10.0.0.2', by: 5000 }),
        rec({ src: '203.0.113.9', dst: '10.0.0.1', by: 5000 }),
      ],
      r,
    );
    expect(findings.map((f) => [f.fingerprint, f.bytes])).toEqual([
      ['egress-volume:10.0.0.1:203.0.113.9', 1200],
    ]);
    // the v5 fixture's 2 GiB to S3 is skipped, the 3 GiB through the NAT is not
    const v5 = run(flowLogFixture('custom-v5.log'));
    expect(v5.findings.filter((f) => f.rule === 'egress-volume').map((f) => f.dstaddr)).toEqual([
      '203.0.113.200',
    ]);
  });

  it('configured internalCidrs extend RFC 1918 / ULA', () => {
    const r = rules({
      internalCidrs: ['100.64.0.0/10'],
      rules: { 'egress-volume': { minBytes: 10 } },
    });
    const { findings } = run([rec({ src: '100.64.1.1', dst: '203.0.113.9', by: 100 })], r);
    expect(findings.map((f) => f.rule)).toEqual(['egress-volume']);
  });

  it('rare-protocol fires for listed protocols unless an address is allowed', () => {
    const gre = rec({ src: '10.0.0.1', dst: '203.0.113.9', sp: 0, dp: 0, proto: 47 });
    expect(run([gre]).findings.map((f) => f.fingerprint)).toEqual([
      'rare-protocol:gre:10.0.0.1:203.0.113.9',
    ]);
    const allowed = rules({ rules: { 'rare-protocol': { allowCidrs: ['203.0.113.0/24'] } } });
    expect(run([gre], allowed).findings).toEqual([]);
  });
});

describe('limits and configuration', () => {
  it('caps findings and tracked keys (hostile input stays bounded)', () => {
    const r = rules({ limits: { maxFindings: 3, maxTrackedKeys: 1000 } });
    const lines = Array.from({ length: 2000 }, (_, i) =>
      rec({ src: `198.51.${Math.floor(i / 250)}.${(i % 250) + 1}`, dst: '10.0.0.1', dp: 0 }),
    );
    const { findings, engine } = run(lines, r);
    expect(findings).toHaveLength(3);
    expect(engine.stats.untrackedKeys).toBeGreaterThan(0);
    expect(engine.stats.suppressedFindings).toBeGreaterThan(0);
  });

  it('a flood of one rule does not crowd out the others', () => {
    const r = rules({ limits: { maxFindings: 5 } });
    const flood = Array.from({ length: 300 }, (_, i) =>
      rec({ src: `198.51.100.${(i % 250) + 1}`, dst: `10.0.${Math.floor(i / 250)}.1`, dp: 0 }),
    );
    const scan = Array.from({ length: 25 }, (_, i) =>
      rec({ src: '203.0.113.5', dst: '10.0.0.7', sp: 51000, dp: 1 + i }),
    );
    const { findings, engine } = run([...flood, ...scan], r);
    expect(findings).toHaveLength(5);
    expect(findings.map((f) => f.rule)).toContain('port-scan');
    expect(engine.stats.suppressedFindings).toBe(300 + 1 - 5);
  });

  it('disabled rules do not fire', () => {
    const r = rules({ rules: { 'port-zero': { enabled: false } } });
    expect(run([rec({ src: '10.0.0.1', dst: '10.0.0.2', dp: 0 })], r).findings).toEqual([]);
  });

  it('overrides merge over the defaults; typos and bad CIDRs are refused', () => {
    const r = loadRules('{"rules":{"port-scan":{"distinctPorts":5}}}');
    expect(r.rules['port-scan'].distinctPorts).toBe(5);
    expect(r.rules['port-scan'].windowSeconds).toBe(
      defaultRules().rules['port-scan'].windowSeconds,
    );
    expect(() => loadRules({ rules: { 'port-scan': { distinctPort: 5 } } })).toThrow(ConfigError);
    expect(() => loadRules({ rules: { 'deny-list': { cidrs: ['10.0.0.0/33'] } } })).toThrow(
      /cidrs/,
    );
    expect(() => loadRules('{not json')).toThrow(ConfigError);
  });

  it('CidrSet matches IPv4 and IPv6 blocks', () => {
    const set = new CidrSet([
      '10.0.0.0/8',
      '192.0.2.1',
      '2001:db8::/32',
      '::ffff:198.51.100.0/120',
    ]);
    expect(set.containsText('10.255.1.1')).toBe(true);
    expect(set.containsText('11.0.0.1')).toBe(false);
    expect(set.containsText('192.0.2.1')).toBe(true);
    expect(set.containsText('192.0.2.2')).toBe(false);
    expect(set.containsText('2001:db8:ffff::1')).toBe(true);
    expect(set.containsText('2001:db9::1')).toBe(false);
    expect(set.containsText('::ffff:198.51.100.20')).toBe(true);
    expect(() => new CidrSet(['10.0.0.0/8/8'])).toThrow(ConfigError);
  });
});
