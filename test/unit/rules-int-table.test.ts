import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IntPairTable, IntTripleSet } from '../../shared/rules/int-table.ts';

// The rule engine's int-keyed tables must behave exactly like Map/Set over the same keys,
// including negative int32 keys (IPv4 addresses ≥ 128.0.0.0 as int32) and growth.

const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });

describe('IntPairTable and IntTripleSet', () => {
  it('IntPairTable agrees with a Map keyed by both ints', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(int32, fc.oneof(int32, fc.constant(0)), fc.nat()), { maxLength: 3000 }),
        (ops) => {
          const table = new IntPairTable<{ v: number }>(4);
          const reference = new Map<string, { v: number }>();
          for (const [a, b, v] of ops) {
            const key = `${a},${b}`;
            const existing = table.get(a, b);
            expect(existing).toBe(reference.get(key));
            if (v % 3 === 0 || existing === undefined) {
              const value = { v };
              table.set(a, b, value);
              reference.set(key, value);
            }
          }
          expect(table.size).toBe(reference.size);
          expect(new Set(table.values())).toEqual(new Set(reference.values()));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('IntTripleSet agrees with a Set of triples', () => {
    const small = fc.integer({ min: -3, max: 3 });
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.oneof(int32, small), small, fc.oneof(int32, small)), {
          maxLength: 3000,
        }),
        (triples) => {
          const set = new IntTripleSet(4);
          const reference = new Set<string>();
          for (const [a, b, c] of triples) {
            const key = `${a},${b},${c}`;
            expect(set.add(a, b, c)).toBe(!reference.has(key));
            reference.add(key);
          }
          expect(set.size).toBe(reference.size);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('IntTripleSet drops closed generations on growth and still agrees with a Set', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.tuple(fc.constant('add' as const), fc.nat(15), fc.integer({ min: -50, max: 50 })),
            fc.tuple(fc.constant('close' as const), fc.nat(15), fc.constant(0)),
          ),
          { maxLength: 4000 },
        ),
        (ops) => {
          const generation = new Array<number>(16).fill(0);
          const set = new IntTripleSet(4, (row, g) => generation[row] === g);
          const reference = new Set<string>();
          for (const [op, row, value] of ops) {
            if (op === 'close') {
              generation[row]! += 1;
              continue;
            }
            const key = `${row},${generation[row]},${value}`;
            expect(set.add(row, generation[row]!, value)).toBe(!reference.has(key));
            reference.add(key);
          }
          // live entries: at most 16 rows × 101 values
          expect(set.size).toBeLessThanOrEqual(16 * 101);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('IntTripleSet memory follows the open windows, not everything ever added', () => {
    let generation = 0;
    const set = new IntTripleSet(4, (_row, g) => g === generation);
    for (let window = 0; window < 1000; window++) {
      for (let v = 0; v < 100; v++) set.add(7, generation, v);
      generation += 1;
    }
    // 100,000 values added over 1,000 windows; the table never held more than two windows
    expect((set as unknown as { used: Uint8Array }).used.length).toBeLessThanOrEqual(1024);
  });

  it('clear() empties a table for reuse', () => {
    const table = new IntPairTable<number>();
    for (let i = 0; i < 5000; i++) table.set(i * 7919, -i, i + 1);
    table.clear();
    expect(table.size).toBe(0);
    expect(table.get(7919, -1)).toBeUndefined();
  });
});
