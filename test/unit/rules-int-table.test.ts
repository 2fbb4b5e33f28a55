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

  it('clear() empties a table for reuse', () => {
    const table = new IntPairTable<number>();
    for (let i = 0; i < 5000; i++) table.set(i * 7919, -i, i + 1);
    table.clear();
    expect(table.size).toBe(0);
    expect(table.get(7919, -1)).toBeUndefined();
  });
});
