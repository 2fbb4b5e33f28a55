import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import type { FlowBatch } from '../../shared/detection/detect.ts';
import type { FlowScanner } from '../../shared/flowlogs/scanner.ts';

/** The flow-log fixtures (test/fixtures/flowlogs/*.log), as latin1 text. */
export function flowLogFixtures(): string[] {
  const dir = new URL('../fixtures/flowlogs/', import.meta.url);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.log'))
    .map((f) => readFileSync(new URL(f, dir), 'latin1'));
}

/** One flow-log fixture (test/fixtures/flowlogs/<name>), as UTF-8 text. */
export function flowLogFixture(name: string): string {
  return readFileSync(new URL(`../fixtures/flowlogs/${name}`, import.meta.url), 'utf8');
}

/**
 * What the default rules find in the lab captures (lab-real-v2.log, lab-real-v5.log: softflowd
 * and nfdump records of real traffic between 10.202.1.1 and 10.202.1.2): the findings'
 * fingerprints, sorted.
 */
export const LAB_REAL_FINGERPRINTS = [
  'host-sweep:10.202.1.1:tcp:22',
  'port-scan:10.202.1.1:10.202.1.2',
  'port-zero:tcp:10.202.1.1:10.202.1.2',
  'port-zero:tcp:fd00:202::1:fd00:202::2',
  'port-zero:udp:10.202.1.1:10.202.1.2',
  'port-zero:udp:fd00:202::1:fd00:202::2',
];

/** A detector batch (source `test`, header detected) that feeds each text as one piece. */
export function textFlowBatch(...texts: string[]): FlowBatch {
  return {
    source: 'test',
    header: 'auto',
    async feed(scanner) {
      for (const text of texts) scanner.push(Buffer.from(text));
    },
  };
}

/** Hostile bytes: random, or `seed` with up to 60 bytes changed and cut short anywhere. */
export function hostileBytes(seed: Buffer, maxRandom: number): fc.Arbitrary<Buffer> {
  const mutated = fc
    .tuple(
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 60 }),
      fc.nat(),
    )
    .map(([changes, cut]) => {
      const b = Buffer.from(seed);
      for (const [at, byte] of changes) b[at % b.length] = byte;
      return b.subarray(0, 1 + (cut % b.length));
    });
  return fc.oneof(
    fc.uint8Array({ maxLength: maxRandom }).map((u) => Buffer.from(u)),
    mutated,
  );
}

/** Feeds `bytes` to the scanner in pieces cut at `cuts` (taken modulo the length, sorted). */
export function pushInPieces(scanner: FlowScanner, bytes: Buffer, cuts: number[]): void {
  let at = 0;
  for (const cut of [
    ...cuts.map((c) => c % (bytes.length + 1)).sort((a, b) => a - b),
    bytes.length,
  ]) {
    scanner.push(bytes.subarray(at, Math.max(at, cut)));
    at = Math.max(at, cut);
  }
}
