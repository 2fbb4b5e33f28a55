import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type FlowCursor,
  FlowScanner,
  type ScannerOptions,
} from '../../shared/flowlogs/scanner.ts';
import { loadRules } from '../../shared/rules/config.ts';
import { RuleEngine } from '../../shared/rules/engine.ts';
import { flowLogFixtures, hostileBytes, pushInPieces } from '../support/flowlog-inputs.ts';

// The scanner finds line ends and decodes fields in one pass over each chunk; a line cut by a
// chunk boundary is carried over. Whatever the chunking, the records, their decoded fields and
// the statistics (malformed reasons, samples, line numbers) must be the same.

const fixtures = flowLogFixtures();

const hostile = [
  'version srcaddr dstaddr srcport dstport protocol action log-status',
  '2 10.0.0.1 10.0.0.2 1234 0 6 ACCEPT OK',
  '',
  '   ',
  '2 10.0.0.1 10.0.0.2 1234 80 6 ACCEPT OK extra',
  '2 10.0.0.1 10.0.0.2 99999 80 6 ACCEPT OK',
  '2 10.0.0.1 10.0.0.2 12a4 80 6 ACCEPT OK\r',
  '2 2001:db8::1 2001:DB8::2 53 0 17 REJECT OK',
  `2 ${'9'.repeat(3000)}`,
  '2 - - - - - - NODATA',
  '2\t10.0.0.9\t10.0.0.2\t0\t80\t6\tREJECT\tOK',
  '2 010.0.0.1 10.0.0.2 1 2 6 ACCEPT OK',
].join('\n');

function run(text: string, cuts: number[], options: ScannerOptions) {
  const seen: unknown[] = [];
  const sink = {
    observe: (c: FlowCursor) =>
      seen.push([c.text(), c.srcKey(), c.dstKey(), c.srcport, c.dstport, c.protocol, c.action]),
  };
  const scanner = new FlowScanner(sink, options);
  pushInPieces(scanner, Buffer.from(text, 'latin1'), cuts);
  return { seen, stats: scanner.end() };
}

describe('flow-log scanner chunking', () => {
  it('gives identical records and statistics for any chunk boundaries', () => {
    const inputs = [...fixtures, hostile, hostile.replaceAll('\n', '\r\n')];
    fc.assert(
      fc.property(
        fc.constantFrom(...inputs.keys()),
        fc.array(fc.nat(), { maxLength: 40 }),
        fc.constantFrom(512, 16 * 1024),
        (which, cuts, maxLineBytes) => {
          const text = inputs[which]!;
          const options: ScannerOptions = { header: 'auto', maxLineBytes };
          expect(run(text, cuts, options)).toEqual(run(text, [], options));
        },
      ),
      { numRuns: 400 },
    );
  });

  it('accounts for every line of hostile bytes and never throws (random and mutated records)', () => {
    const seed = Buffer.from(fixtures.join('\n'), 'latin1');
    fc.assert(
      fc.property(hostileBytes(seed, 4000), fc.array(fc.nat(), { maxLength: 8 }), (bytes, cuts) => {
        const engine = new RuleEngine(loadRules());
        const scanner = new FlowScanner(engine, { header: 'auto', maxLineBytes: 512 });
        pushInPieces(scanner, bytes, cuts);
        const s = scanner.end();
        engine.finish();
        expect(s.records + s.nodata + s.skipdata + s.blank + s.malformed + s.headerLines).toBe(
          s.lines,
        );
        expect(s.malformedSample.length).toBeLessThanOrEqual(10);
      }),
      { numRuns: 300 },
    );
  });

  it('treats a newline inside a CloudWatch Logs message as a separator, not a line end', () => {
    const scanner = new FlowScanner({ observe() {} }, { header: 'none' });
    scanner.pushRecord(
      '2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249\n1418530010 1418530070 ACCEPT OK',
    );
    expect(scanner.end()).toMatchObject({ records: 1, malformed: 0, lines: 1 });
  });
});
