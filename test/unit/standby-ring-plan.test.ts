import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidRingSettingsError } from '../../shared/standby/errors.ts';
import { planRing, RING_SETTING_LIMITS } from '../../shared/standby/ring-plan.ts';

const settings = fc.record({
  retentionMinutes: fc.integer({ min: 1, max: 9999 }),
  rotateSeconds: fc.integer({ min: 1, max: 99_999 }),
  expectedMbps: fc.integer({ min: 1, max: 999_999 }),
  capMegabytes: fc.integer({ min: 3, max: 9_999_999 }),
});

describe('planRing', () => {
  it('sizes the default ring (15 min at 20 Mbit/s, 60 s files, 2048 MB cap)', () => {
    expect(
      planRing({ retentionMinutes: 15, rotateSeconds: 60, expectedMbps: 20, capMegabytes: 2048 }),
    ).toEqual({
      retentionSeconds: 900,
      rotateSeconds: 60,
      expectedMbps: 20,
      neededMegabytes: 2250,
      capMegabytes: 2048,
      budgetMegabytes: 2048,
      fileMegabytes: 113,
      slots: 16,
      maxFiles: 34,
      expectedRetentionSeconds: 728,
    });
  });

  it('never plans more than the cap, and always leaves room for the open file and one more', () => {
    fc.assert(
      fc.property(settings, (s) => {
        const plan = planRing(s);
        expect(plan.budgetMegabytes).toBeLessThanOrEqual(s.capMegabytes);
        expect(plan.fileMegabytes).toBeGreaterThanOrEqual(1);
        expect(plan.fileMegabytes).toBeLessThanOrEqual(2000);
        expect(3 * plan.fileMegabytes).toBeLessThanOrEqual(plan.budgetMegabytes);
        expect(plan.maxFiles).toBeGreaterThanOrEqual(plan.slots > 100_000 ? 1 : plan.slots);
        expect(plan.expectedRetentionSeconds).toBeLessThanOrEqual(plan.retentionSeconds);
      }),
      { numRuns: 500 },
    );
  });

  it('takes only what the retention needs when the cap is generous', () => {
    const plan = planRing({
      retentionMinutes: 10,
      rotateSeconds: 60,
      expectedMbps: 8,
      capMegabytes: 100_000,
    });
    expect(plan.neededMegabytes).toBe(600);
    expect(plan.budgetMegabytes).toBe(750);
    expect(plan.expectedRetentionSeconds).toBe(600);
  });

  it('refuses settings outside the document patterns with a typed error', () => {
    for (const [field, [min, max]] of Object.entries(RING_SETTING_LIMITS)) {
      const base = { retentionMinutes: 1, rotateSeconds: 1, expectedMbps: 1, capMegabytes: 3 };
      for (const bad of [min - 1, max + 1, 1.5, Number.NaN]) {
        expect(() => planRing({ ...base, [field]: bad }), `${field}=${bad}`).toThrow(
          InvalidRingSettingsError,
        );
      }
    }
  });
});
