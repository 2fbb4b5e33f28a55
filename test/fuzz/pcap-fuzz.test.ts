import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTaplineError } from '../../shared/errors.ts';
import { analyzePcap, type CarveChunk, type PcapAnalysis } from '../../shared/pcap/index.ts';

/**
 * Fuzzing the decoder: fast-check properties over random and mutated captures, Wireshark's own
 * `editcap -E` mutants and truncations of every corpus file. Property: the decoder either
 * returns a well-formed analysis or rejects with a TaplineError (CorruptPcapError); nothing
 * else may escape, and no case may take longer than CASE_BOUND_MS (a hang or a quadratic
 * blow-up fails the case; a true infinite loop is caught by the file's test timeout).
 * The total number of cases is asserted (≥ 100,000).
 */

const CASE_BOUND_MS = 2000;
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const corpus = process.env.TAPLINE_CORPUS ?? resolve(repo, '../shared/corpus');
const haveCorpus = existsSync(join(corpus, 'MANIFEST.tsv'));
if (!haveCorpus && process.env.CI) throw new Error(`corpus required in CI: ${corpus}`);

let cases = 0;
let typedRejections = 0;

async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let o = 0; o < bytes.length; o += size) yield bytes.subarray(o, o + size);
}

function join2(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function wellFormed(r: PcapAnalysis): void {
  if (!Number.isInteger(r.packets) || r.packets < 0) throw new Error(`bad packets ${r.packets}`);
  if (!(r.bytes >= 0)) throw new Error(`bad bytes ${r.bytes}`);
  for (const c of r.conversations) {
    if (c.packetsAtoB + c.packetsBtoA < 1) throw new Error('empty conversation');
    if (!c.communityId.startsWith('1:')) throw new Error('bad community id');
  }
  for (const [k, v] of Object.entries(r.anomalies)) {
    if (!(v > 0) || !r.anomalySamples.some((s) => s.kind === k))
      throw new Error(`anomaly ${k} without sample`);
  }
  JSON.stringify(r); // serialisable (no cycles, no BigInt)
}

/** Carved pieces: complete pcaps holding exactly the packets they claim, all accounted for. */
async function carvedWellFormed(r: PcapAnalysis, pieces: CarveChunk[]): Promise<void> {
  let packets = 0;
  for (const p of pieces) {
    packets += p.packets;
    const again = await analyzePcap(chunked(p.pcap, 65_536));
    if (again.packets !== p.packets || again.truncated || again.anomalies['resync']) {
      throw new Error(`carved piece ${p.fileName} does not hold its ${p.packets} packets`);
    }
  }
  if (packets !== (r.carve?.packetsWritten ?? 0) || pieces.length !== r.carve?.piecesWritten) {
    throw new Error('carve counters disagree with the pieces');
  }
}

/** One case: must resolve well-formed or reject with a TaplineError, within the bound. */
async function runCase(
  bytes: Uint8Array,
  chunk: number,
  label: string,
  carveIt?: boolean,
): Promise<PcapAnalysis | 'rejected'> {
  cases++;
  const t0 = performance.now();
  let out: PcapAnalysis | 'rejected';
  try {
    // every fourth case also carves every TCP stream through the smallest arena (1 MiB)
    const pieces: CarveChunk[] = [];
    const carve = carveIt ?? cases % 4 === 0;
    const r = await analyzePcap(
      chunked(bytes, chunk),
      carve
        ? {
            carve: {
              mode: 'all',
              maxBufferedBytes: 1 << 20,
              partBytes: 64 * 1024,
              sink: { write: (c) => void pieces.push(c) },
            },
          }
        : {},
    );
    wellFormed(r);
    if (carve) await carvedWellFormed(r, pieces);
    out = r;
  } catch (error) {
    if (!isTaplineError(error)) {
      throw new Error(
        `${label}: untyped ${(error as Error)?.name}: ${(error as Error)?.message}\ninput (base64, ${bytes.length} B): ${Buffer.from(bytes.subarray(0, 4096)).toString('base64')}`,
        { cause: error },
      );
    }
    typedRejections++;
    out = 'rejected';
  }
  const ms = performance.now() - t0;
  if (ms > CASE_BOUND_MS)
    throw new Error(`${label}: took ${ms.toFixed(0)} ms (> ${CASE_BOUND_MS})`);
  return out;
}

const small = haveCorpus
  ? readdirSync(corpus)
      .filter((f) => f !== 'MANIFEST.tsv' && statSync(join(corpus, f)).size <= 48 * 1024)
      .sort()
      .map((f) => ({ name: f, bytes: new Uint8Array(readFileSync(join(corpus, f))) }))
  : [];
const all = haveCorpus
  ? readdirSync(corpus)
      .filter((f) => f !== 'MANIFEST.tsv')
      .sort()
      .map((f) => ({ name: f, bytes: new Uint8Array(readFileSync(join(corpus, f))) }))
  : [];

// magic numbers and block starts to aim random bytes at the parsers
const PREFIXES = [
  Uint8Array.of(
    0xd4,
    0xc3,
    0xb2,
    0xa1,
    2,
    0,
    4,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0xff,
    0xff,
    0,
    0,
    1,
    0,
    0,
    0,
  ),
  Uint8Array.of(
    0xa1,
    0xb2,
    0xc3,
    0xd4,
    0,
    2,
    0,
    4,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0xff,
    0xff,
    0,
    0,
    0,
    101,
  ),
  Uint8Array.of(
    0x4d,
    0x3c,
    0xb2,
    0xa1,
    2,
    0,
    4,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    4,
    0,
    0x71,
    0,
    0,
    0,
  ),
  Uint8Array.of(
    0x0a,
    0x0d,
    0x0d,
    0x0a,
    0x1c,
    0,
    0,
    0,
    0x4d,
    0x3c,
    0x2b,
    0x1a,
    1,
    0,
    0,
    0,
    0xff,
    0xff,
    0xff,
    0xff,
    0xff,
    0xff,
    0xff,
    0xff,
    0x1c,
    0,
    0,
    0,
  ),
  Uint8Array.of(0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3),
  new Uint8Array(0),
];

describe.skipIf(!haveCorpus)('pcap decoder fuzz', () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tapline-fuzz-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('random bytes behind every magic number (30,000 cases)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...PREFIXES),
        fc.uint8Array({ maxLength: 600 }),
        fc.integer({ min: 1, max: 700 }),
        async (prefix, body, chunk) => {
          const bytes = new Uint8Array(prefix.length + body.length);
          bytes.set(prefix);
          bytes.set(body, prefix.length);
          await runCase(bytes, chunk, 'random');
        },
      ),
      { numRuns: 30_000 },
    );
  });

  it('structured pcap records with hostile length fields (20,000 cases)', async () => {
    const record = fc.record({
      sec: fc.integer({ min: 0, max: 0xffffffff }),
      frac: fc.oneof(fc.integer({ min: 0, max: 999_999 }), fc.integer({ min: 0, max: 0xffffffff })),
      caplen: fc.oneof(
        fc.integer({ min: 0, max: 128 }),
        fc.constantFrom(262_145, 0x7fffffff, 0xffffffff),
      ),
      origlen: fc.integer({ min: 0, max: 0xffffffff }),
      data: fc.uint8Array({ maxLength: 128 }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(1, 101, 113, 276, 0, 108, 228, 229, 12345),
        fc.array(record, { maxLength: 8 }),
        fc.integer({ min: 1, max: 300 }),
        async (linkType, records, chunk) => {
          const parts: number[] = [
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0,
          ];
          const le32 = (v: number) => [
            v & 255,
            (v >>> 8) & 255,
            (v >>> 16) & 255,
            (v >>> 24) & 255,
          ];
          parts.push(...le32(linkType));
          for (const r of records)
            parts.push(
              ...le32(r.sec),
              ...le32(r.frac),
              ...le32(r.caplen),
              ...le32(r.origlen),
              ...r.data,
            );
          await runCase(Uint8Array.from(parts), chunk, 'structured');
        },
      ),
      { numRuns: 20_000 },
    );
  });

  it('mutated corpus files: byte overwrites, bit flips, deletions, duplications (40,000 cases)', async () => {
    const mutation = fc.oneof(
      fc.record({
        kind: fc.constant('set' as const),
        at: fc.nat(),
        value: fc.integer({ min: 0, max: 255 }),
      }),
      fc.record({
        kind: fc.constant('flip' as const),
        at: fc.nat(),
        bit: fc.integer({ min: 0, max: 7 }),
      }),
      fc.record({
        kind: fc.constant('delete' as const),
        at: fc.nat(),
        len: fc.integer({ min: 1, max: 64 }),
      }),
      fc.record({
        kind: fc.constant('dup' as const),
        at: fc.nat(),
        len: fc.integer({ min: 1, max: 64 }),
      }),
      fc.record({ kind: fc.constant('max32' as const), at: fc.nat() }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: small.length - 1 }),
        fc.array(mutation, { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 64, max: 8192 }),
        async (which, mutations, chunk) => {
          let bytes: Uint8Array = Uint8Array.from(small[which]!.bytes);
          for (const m of mutations) {
            if (bytes.length === 0) break;
            const at = m.at % bytes.length;
            if (m.kind === 'set') bytes[at] = m.value;
            else if (m.kind === 'flip') bytes[at]! ^= 1 << m.bit;
            else if (m.kind === 'max32') bytes.fill(0xff, at, Math.min(bytes.length, at + 4));
            else if (m.kind === 'delete')
              bytes = join2(bytes.subarray(0, at), bytes.subarray(at + m.len));
            else bytes = join2(bytes.subarray(0, at + m.len), bytes.subarray(at));
          }
          await runCase(bytes, chunk, `mutated ${small[which]!.name}`);
        },
      ),
      { numRuns: 40_000 },
    );
  });

  it('chunk size never changes the answer on mutated files (2,000 pairs)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: small.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        fc.integer({ min: 1, max: 97 }),
        async (which, sets, chunk) => {
          const bytes = Uint8Array.from(small[which]!.bytes);
          for (const [at, v] of sets) if (bytes.length) bytes[at % bytes.length] = v;
          // both with or both without carving: its pieces must not depend on chunking either
          const carve = chunk % 2 === 0;
          const a = await runCase(bytes, chunk, 'chunk-a', carve);
          const b = await runCase(bytes, 1 << 20, 'chunk-b', carve);
          expect(a).toEqual(b);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it("Wireshark's editcap -E mutants of every corpus file (× 8 seeds, 3 chunk sizes)", async () => {
    let made = 0;
    for (const { name } of all) {
      for (let seed = 1; seed <= 8; seed++) {
        const out = join(dir, `${seed}-${name}`);
        try {
          execFileSync('editcap', ['-E', '0.02', '--seed', String(seed), join(corpus, name), out], {
            stdio: 'ignore',
          });
        } catch {
          continue; // editcap cannot read this file at all (unknown link type, corrupt): covered elsewhere
        }
        made++;
        const bytes = new Uint8Array(readFileSync(out));
        for (const chunk of [13, 4096, 1 << 20])
          await runCase(bytes, chunk, `editcap -E seed ${seed} ${name}`);
      }
    }
    expect(made).toBeGreaterThanOrEqual(8 * 25);
  });

  it('truncations of every corpus file at many offsets', async () => {
    for (const { name, bytes } of all) {
      const points = bytes.length <= 48 * 1024 ? 400 : 40;
      for (let k = 0; k < points; k++) {
        const cut = Math.floor(((k + 0.37) * bytes.length) / points);
        await runCase(bytes.subarray(0, cut), 1 + (k % 4096), `truncated ${name} at ${cut}`);
      }
    }
  });

  it('ran at least 100,000 cases, none untyped, none over the time bound', () => {
    console.log(
      `pcap fuzz: ${cases} cases, ${typedRejections} typed rejections (CorruptPcapError)`,
    );
    expect(cases).toBeGreaterThanOrEqual(100_000);
  });
});
