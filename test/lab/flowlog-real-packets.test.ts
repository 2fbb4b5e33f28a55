import { beforeAll, describe, expect, it } from 'vitest';
import {
  captureRealFlows,
  LAB,
  missingTools,
  type NfdumpFlow,
  toFlowLogs,
} from '../../scripts/make-flow-fixtures.ts';
import { detectBatch } from '../../shared/detection/detect.ts';
import { parseFlowLogFormat } from '../../shared/flowlogs/format.ts';
import { defaultRules } from '../../shared/rules/config.ts';

/**
 * The whole real-packet path, live: traffic in network namespaces (tldet-*, 10.202.1.0/24 and
 * fd00:202::/64 only) → tcpdump → softflowd -r … -c none -v 10 -A milli → nfcapd on the
 * namespace loopback → nfdump -o csv → flow-log lines → the rules. Needs root and the tools;
 * on CI a missing tool fails the test instead of skipping it.
 */
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

describe('flow records from real packets', () => {
  let missing: string[] = [];
  let flows: NfdumpFlow[] = [];

  beforeAll(async () => {
    missing = await missingTools();
    if (!isRoot) missing.push('root');
    if (missing.length > 0) {
      if (process.env.CI) throw new Error(`lab test needs ${missing.join(', ')}`);
      return;
    }
    flows = (await captureRealFlows()).flows;
  }, 180_000);

  it('softflowd/nfdump see the lab traffic', (ctx) => {
    if (missing.length > 0) ctx.skip();
    const pairs = new Set(flows.map((f) => `${f.src}>${f.dst}:${f.dport}/${f.proto}`));
    expect(pairs.has(`${LAB.client}>${LAB.server}:0/6`)).toBe(true);
    expect(pairs.has(`${LAB.client}>${LAB.server}:0/17`)).toBe(true);
    expect(pairs.has(`${LAB.client6}>${LAB.server6}:0/17`)).toBe(true);
    expect(pairs.has(`${LAB.client}>${LAB.server}:8080/6`)).toBe(true);
    expect(flows.some((f) => f.proto === 1)).toBe(true);
  });

  for (const variant of ['v2', 'v5'] as const) {
    it(`the rules find the probes, the scan and the sweep, and not the ICMP (${variant})`, async (ctx) => {
      if (missing.length > 0) ctx.skip();
      const logs = toFlowLogs(flows);
      const lines = variant === 'v2' ? logs.v2 : logs.v5;
      const format = parseFlowLogFormat(
        variant === 'v2'
          ? 'version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status'
          : logs.v5Format,
      );
      const { findings, report } = await detectBatch(
        {
          source: `lab-${variant}`,
          header: 'none',
          async feed(scanner) {
            for (const line of lines) scanner.pushRecord(line);
          },
        },
        { rules: defaultRules() },
        format,
      );
      expect(report.stats.malformed).toBe(0);
      const fps = findings.map((f) => f.fingerprint);
      expect(fps).toEqual(
        expect.arrayContaining([
          `port-zero:tcp:${LAB.client}:${LAB.server}`,
          `port-zero:udp:${LAB.client}:${LAB.server}`,
          `port-zero:tcp:${LAB.client6}:${LAB.server6}`,
          `port-zero:udp:${LAB.client6}:${LAB.server6}`,
          `port-scan:${LAB.client}:${LAB.server}`,
          `host-sweep:${LAB.client}:tcp:22`,
        ]),
      );
      expect(
        findings
          .filter((f) => f.rule === 'port-zero')
          .every((f) => f.protocol === 6 || f.protocol === 17),
      ).toBe(true);
      const scan = findings.find((f) => f.rule === 'port-scan')!;
      expect(scan.distinct).toBeGreaterThanOrEqual(40);
      const sweep = findings.find((f) => f.rule === 'host-sweep')!;
      expect(sweep.distinct).toBeGreaterThanOrEqual(LAB.sweep.length);
    });
  }
});
