import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../scripts/lib/seeded-random.ts';
import { FlowScanner } from '../../shared/flowlogs/scanner.ts';
import { loadRules } from '../../shared/rules/config.ts';
import { RuleEngine } from '../../shared/rules/engine.ts';

// A regression tripwire for the engine's internals (tables, windows, evidence, caps): 60
// seeded scenarios with small thresholds and windows, IPv4/IPv6 mixes, "-" fields, records
// before the batch's time base and tracked-key caps, each reduced to one line per finding.
// The snapshot was checked against the previous, object-per-aggregate engine. When a rule's
// meaning changes on purpose, review the diff and update it (vitest -u).

const ADDRESSES = [
  '10.0.0.1',
  '10.0.0.2',
  '172.16.0.9',
  '52.1.2.3',
  '52.1.2.4',
  '128.0.0.1',
  '255.255.255.255',
  '2001:db8::1',
  '2001:db8::2',
  'fd00::5',
  '-',
];
const PORTS = ['0', '22', '80', '443', '1024', '40000', '65535', '-'];
const PROTOCOLS = ['6', '6', '17', '1', '47', '58', '-'];
const T0 = 1_763_880_000;

function scenario(seed: number): string[] {
  const r = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const int = (lo: number, n: number) => lo + Math.floor(r() * n);
  const big = seed % 12 === 0;
  const rules = loadRules({
    rules: {
      'port-scan': { distinctPorts: int(2, 4), windowSeconds: int(1, 200) },
      'host-sweep': { distinctHosts: int(2, 4), windowSeconds: int(1, 200) },
      'reject-burst': { minRejects: int(1, 4), windowSeconds: int(1, 200) },
      'egress-volume': { minBytes: int(1, 5000), windowSeconds: int(1, 200) },
      'deny-list': { cidrs: ['52.1.2.0/24', '2001:db8::/32'] },
    },
    limits: { maxEvidence: int(1, 4), maxTrackedKeys: 1000, maxFindings: int(3, 12) },
  });
  const address = (prefix: string) =>
    big && r() < 0.5 ? `${prefix}.${int(0, 256)}.${int(0, 256)}` : pick(ADDRESSES);
  const lines: string[] = [];
  for (let i = big ? 6000 : int(0, 300); i > 0; i--) {
    const start = r() < 0.03 ? T0 - 3_900_000 : T0 + int(0, 1000);
    lines.push(
      [
        2,
        '123456789012',
        'eni-1',
        address('10.1'),
        address('99.1'),
        pick(PORTS),
        pick(PORTS),
        pick(PROTOCOLS),
        int(0, 10),
        int(0, 3000),
        r() < 0.05 ? '-' : start,
        r() < 0.05 ? '-' : T0 + int(0, 1100),
        pick(['ACCEPT', 'REJECT', '-']),
        'OK',
      ].join(' '),
    );
  }
  const engine = new RuleEngine(rules);
  const scanner = new FlowScanner(engine, {});
  scanner.push(Buffer.from(`${lines.join('\n')}\n`));
  scanner.end();
  const out = engine
    .finish()
    .map(
      (f) =>
        `${f.fingerprint} r${f.records} p${f.packets} b${f.bytes} d${f.distinct ?? '-'} ` +
        `${f.start}-${f.end} x${f.occurrences} e${f.evidence.length}:${f.evidence[0]?.split(' ')[3] ?? ''}`,
    );
  const s = engine.stats;
  return [
    `#${seed} tracked ${s.trackedKeys} untracked ${s.untrackedKeys} suppressed ${s.suppressedFindings}`,
    ...out,
  ];
}

describe('rule engine scenarios', () => {
  it('60 seeded scenarios give the recorded findings', async () => {
    const lines = Array.from({ length: 60 }, (_, i) => scenario(20261123 + i)).flat();
    expect(
      lines.filter((l) => l.startsWith('#') && !l.includes('untracked 0')).length,
    ).toBeGreaterThan(0);
    await expect(`${lines.join('\n')}\n`).toMatchFileSnapshot(
      './__snapshots__/rules-engine-scenarios.txt',
    );
  });
});
