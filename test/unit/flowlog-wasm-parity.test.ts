import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { flowLinesWasm, flowLinesWasmProblem } from '../../shared/flowlogs/flow-lines-wasm.ts';
import { DEFAULT_FIELDS, parseFlowLogFormat } from '../../shared/flowlogs/format.ts';
import {
  type FlowCursor,
  FlowScanner,
  type ScannerOptions,
} from '../../shared/flowlogs/scanner.ts';
import { loadRules } from '../../shared/rules/config.ts';
import { RuleEngine } from '../../shared/rules/engine.ts';
import { flowLogFixtures, hostileBytes, pushInPieces } from '../support/flowlog-inputs.ts';

// The WebAssembly fast path decodes only strictly regular lines and hands every other line to
// the JavaScript parser, which stays the authority. Whatever the input, both parsers must give
// the same records (every decoded field), statistics and findings.

const fixtures = flowLogFixtures();

/** Every field the rules can read, for one record. */
function snapshot(c: FlowCursor): unknown[] {
  return [
    c.text(),
    c.src,
    c.dst,
    c.srcV4,
    c.dstV4,
    c.srcText,
    c.dstText,
    c.srcport,
    c.dstport,
    c.protocol,
    c.packets,
    c.bytes,
    c.start,
    c.end,
    c.tcpFlags,
    c.action,
    c.status,
    c.dstIsAwsService,
  ];
}

function scan(bytes: Buffer, cuts: number[], options: ScannerOptions, digest: boolean) {
  // large inputs: one running hash of the records instead of a million arrays
  const records: unknown[] = [];
  const hash = createHash('sha256');
  let count = 0;
  const observe = digest
    ? (c: FlowCursor) => {
        hash.update(JSON.stringify(snapshot(c)));
        count += 1;
      }
    : (c: FlowCursor) => {
        records.push(snapshot(c));
      };
  const scanner = new FlowScanner({ observe }, options);
  pushInPieces(scanner, bytes, cuts);
  const stats = scanner.end();
  return {
    records: digest ? [count, hash.digest('hex')] : records,
    stats,
    parser: scanner.parser,
  };
}

function expectParity(bytes: Buffer, cuts: number[], options: ScannerOptions = {}) {
  const digest = bytes.length > 100_000;
  const js = scan(bytes, cuts, { ...options, parser: 'js' }, digest);
  const wasm = scan(bytes, cuts, { ...options, parser: 'auto' }, digest);
  expect(js.parser).toBe('js');
  expect(wasm.records).toEqual(js.records);
  expect(wasm.stats).toEqual(js.stats);
  return wasm;
}

/** A regular default-format record from a few numbers (the fast path's home ground). */
const regularRecord = fc
  .record({
    account: fc.integer({ min: 0, max: 999_999_999_999 }),
    eni: fc.integer({ min: 0, max: 0xffffff }),
    src: fc.integer({ min: 0, max: 0xffffffff }),
    dst: fc.integer({ min: 0, max: 0xffffffff }),
    srcport: fc.integer({ min: 0, max: 65535 }),
    dstport: fc.integer({ min: 0, max: 65535 }),
    protocol: fc.constantFrom(1, 6, 17, 41, 47, 50, 58, 255),
    packets: fc.integer({ min: 0, max: 2 ** 40 }),
    bytes: fc.oneof(fc.integer({ min: 0, max: 2 ** 48 }), fc.constant(999_999_999_999_999)),
    start: fc.integer({ min: 1_400_000_000, max: 2_000_000_000 }),
    action: fc.constantFrom('ACCEPT', 'REJECT'),
  })
  .map((r) => {
    const ip = (v: number) => `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
    return `2 ${String(r.account).padStart(12, '0')} eni-${r.eni.toString(16).padStart(17, '0')} ${ip(r.src)} ${ip(r.dst)} ${r.srcport} ${r.dstport} ${r.protocol} ${r.packets} ${r.bytes} ${r.start} ${r.start + 60} ${r.action} OK`;
  });

/** Values put in place of one field: some stay on the fast path, most leave it or are wrong. */
const fieldValues = [
  '-',
  '0',
  '0080',
  '255',
  '256',
  '65535',
  '65536',
  '999999999999999',
  '9999999999999999',
  '1234567890123456',
  '12345678901234567',
  // 8-digit groups (the fast path reads numbers 8 digits at a time): each length around a
  // group's edge, and the bytes just below '0' and above '9' inside either group
  '12345678',
  '123456789',
  '4294967296',
  '00000000000000',
  '1234567/',
  ':2345678',
  '12345678:12345',
  '123456789012/45',
  '10.0.0.1',
  '255.255.255.255',
  '2001:DB8::1',
  '::ffff:10.0.0.1',
  '010.0.0.1',
  '10.0.0.256',
  '10.0.0',
  '10.0.0.1.',
  '1.2.3.4.5',
  'ACCEPT',
  'REJECT',
  'accept',
  'ACCEPTED',
  'OK',
  'NODATA',
  'SKIPDATA',
  'ok',
  'x',
  '',
];

/** Edits of a whole line. */
const lineEdits = [
  (l: string) => l.replace(' ', '  '),
  (l: string) => l.replace(' ', '\t'),
  (l: string) => `${l}\r`,
  (l: string) => ` ${l}`,
  (l: string) => `${l} `,
  (l: string) => `${l} extra`,
  (l: string) => l.slice(0, l.length >> 1),
  () => '',
];

const editedRecord = fc.oneof(
  fc
    .tuple(
      regularRecord,
      fc.constantFrom(...DEFAULT_FIELDS.keys()),
      fc.constantFrom(...fieldValues),
    )
    .map(([l, at, value]) => {
      const fields = l.split(' ');
      fields[at] = value;
      return fields.join(' ');
    }),
  fc.tuple(regularRecord, fc.nat({ max: lineEdits.length - 1 })).map(([l, e]) => lineEdits[e]!(l)),
);

describe('flow-log WebAssembly fast path', () => {
  it('loads here (CI must measure and test the path it ships)', () => {
    expect(flowLinesWasmProblem()).toBeNull();
    expect(flowLinesWasm()).not.toBeNull();
    expect(new FlowScanner({ observe() {} }).parser).toBe('wasm');
  });

  it('agrees with the JavaScript parser on every fixture, whole and cut anywhere', () => {
    for (const text of fixtures) {
      const bytes = Buffer.from(text, 'latin1');
      expectParity(bytes, [], { header: 'auto' });
      expectParity(bytes, [1, 7, 100, 101, 2000], { header: 'auto' });
    }
  });

  it('agrees on every edge value in every field of a record', () => {
    const [base] = fc.sample(regularRecord, { numRuns: 1, seed: 11 });
    const lines: string[] = [];
    for (const at of DEFAULT_FIELDS.keys()) {
      for (const value of fieldValues) {
        const fields = base!.split(' ');
        fields[at] = value;
        lines.push(fields.join(' '));
      }
    }
    for (const edit of lineEdits) lines.push(edit(base!));
    const result = expectParity(Buffer.from(`${base}\n${lines.join('\n')}\n`, 'latin1'), []);
    expect(result.stats.malformed).toBeGreaterThan(100);
  });

  it('agrees on regular and edited records, with any chunk boundaries and line limits', () => {
    const line = fc.oneof(
      { weight: 3, arbitrary: regularRecord },
      {
        weight: 2,
        arbitrary: editedRecord,
      },
    );
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.array(line, { minLength: 1, maxLength: 40 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.constantFrom(120, 16 * 1024),
        fc.boolean(),
        (header, lines, cuts, maxLineBytes, trailingNewline) => {
          const text = `${header ? `${DEFAULT_FIELDS.join(' ')}\n` : ''}${lines.join('\n')}${trailingNewline ? '\n' : ''}`;
          expectParity(Buffer.from(text, 'latin1'), cuts, { header: 'auto', maxLineBytes });
        },
      ),
      { numRuns: 500 },
    );
  });

  it('agrees on random and mutated bytes', () => {
    const seed = Buffer.from(fixtures.join('\n'), 'latin1');
    fc.assert(
      fc.property(hostileBytes(seed, 3000), fc.array(fc.nat(), { maxLength: 8 }), (bytes, cuts) => {
        expectParity(bytes, cuts, { header: 'auto', maxLineBytes: 512 });
      }),
      { numRuns: 400 },
    );
  });

  it('agrees on custom formats, including fields it does not decode and absent ones', () => {
    const format =
      'version srcaddr dstaddr srcport dstport protocol tcp-flags pkt-dst-aws-service action log-status vpc-id';
    const lines = [
      format,
      '5 10.0.0.1 10.0.0.2 1234 0 6 2 - ACCEPT OK vpc-1',
      '5 10.0.0.1 52.216.1.1 1234 443 6 19 S3 ACCEPT OK vpc-1',
      '5 10.0.0.1 10.0.0.2 1234 443 6 256 - ACCEPT OK vpc-1',
      '5 10.0.0.3 10.0.0.2 0 0 1 0 - REJECT OK vpc-1',
    ];
    const result = expectParity(Buffer.from(`${lines.join('\n')}\n`, 'latin1'), [], {
      header: 'auto',
    });
    expect(result.stats).toMatchObject({ records: 3, malformed: 1 });
    // a format without addresses or action: nothing to decode there, the same answers
    expectParity(Buffer.from('version bytes\n2 100\n2 x\n2 300\n', 'latin1'), [3], {
      header: 'auto',
    });
  });

  it('crosses its input window and record buffer limits without losing a line', () => {
    // 1.5 MiB of 2-byte records: more lines than one parse call writes, more bytes than one
    // window holds, and a line cut by the window edge
    const short = Buffer.from(`version\n${'2\n'.repeat(786_432)}`, 'latin1');
    const shortResult = expectParity(short, [], { header: 'auto' });
    expect(shortResult.stats.records).toBe(786_432);
    // regular records across several windows, cut at odd places
    const regular = fc.sample(regularRecord, { numRuns: 30_000, seed: 7 }).join('\n');
    const bytes = Buffer.from(`${regular}\n`, 'latin1');
    expect(bytes.length).toBeGreaterThan(2 * 1024 * 1024);
    expectParity(bytes, [], {});
    expectParity(bytes, [1_048_575, 1_048_577, 2_097_000], {});
  });

  it('falls back to the JavaScript loop for a line longer than its window', () => {
    const long = `2 ${'9'.repeat(1_200_000)} 10.0.0.1\n2 1 10.0.0.2\n`;
    const result = expectParity(Buffer.from(long, 'latin1'), [], {
      format: parseFlowLogFormat('version account-id srcaddr'),
      maxLineBytes: 2 * 1024 * 1024,
    });
    expect(result.stats).toMatchObject({ lines: 2, records: 2 });
  });

  it('gives the same findings on a rule-triggering batch', () => {
    const lines: string[] = [];
    for (let port = 1; port <= 300; port++) {
      lines.push(
        `2 123456789012 eni-0a1b2c3d4e5f60718 203.0.113.66 10.0.0.7 51000 ${port} 6 1 44 1763880000 1763880060 REJECT OK`,
      );
    }
    lines.push(
      '2 123456789012 eni-0a1b2c3d4e5f60718 10.0.0.9 10.0.0.7 0 443 6 1 44 1763880000 1763880060 ACCEPT OK',
    );
    const bytes = Buffer.from(`${lines.join('\n')}\n`, 'latin1');
    const findings = (parser: 'js' | 'auto') => {
      const engine = new RuleEngine(loadRules());
      const scanner = new FlowScanner(engine, { parser });
      scanner.push(bytes);
      scanner.end();
      return engine.finish();
    };
    const js = findings('js');
    expect(js.length).toBeGreaterThan(0);
    expect(findings('auto')).toEqual(js);
  });
});
