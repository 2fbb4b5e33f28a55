import { describe, expect, it } from 'vitest';
import {
  isLeaseLive,
  type Lease,
  leaseLiveness,
  MAX_LEASE_SECONDS,
} from '../../shared/evidence/guards.ts';

/**
 * THE lease liveness rule (guards.ts leaseLiveness), used by acquireLease, the notice markers
 * and startCapture's read-only cooldown check. Corrupt leases fail closed (held), bounded by the
 * object's last write + MAX_LEASE_SECONDS so a broken guard cannot wedge a host forever.
 */
const now = new Date('2026-11-23T12:00:00.000Z');
const at = (seconds: number) => new Date(now.getTime() + seconds * 1000);
const lease = (overrides: Partial<Record<keyof Lease, unknown>> = {}): Lease =>
  ({
    kind: 'cooldown',
    state: 'held',
    captureId: 'cap-20261123T115500Z-0a1b2c3d',
    instanceId: 'i-0123456789abcdef0',
    createdAt: at(-300).toISOString(),
    expiresAt: at(600).toISOString(),
    ...overrides,
  }) as Lease;
const writtenAt = at(-300);

describe('leaseLiveness', () => {
  it('a sound held lease is live strictly before its expiry, and expired at and after it', () => {
    expect(leaseLiveness(lease({ expiresAt: at(1).toISOString() }), now, writtenAt)).toEqual({
      live: true,
      until: at(1),
      problem: undefined,
    });
    // exactly now: expired (the instant of expiry is the first instant it is free)
    expect(isLeaseLive(lease({ expiresAt: now.toISOString() }), now, writtenAt)).toBe(false);
    expect(isLeaseLive(lease({ expiresAt: at(-1).toISOString() }), now, writtenAt)).toBe(false);
    expect(isLeaseLive(lease({ expiresAt: '2026-11-23T12:00:00.001Z' }), now)).toBe(true);
    // the write time only caps, it never lengthens a lease
    expect(leaseLiveness(lease(), now, writtenAt).until).toEqual(at(600));
  });

  it('a released lease is never live, whatever else it says', () => {
    for (const expiresAt of [at(600).toISOString(), 'garbage', undefined]) {
      expect(leaseLiveness(lease({ state: 'released', expiresAt }), now, writtenAt)).toEqual({
        live: false,
      });
    }
  });

  it('an unparseable or missing expiry fails closed until the last write + MAX_LEASE_SECONDS', () => {
    const bound = new Date(writtenAt.getTime() + MAX_LEASE_SECONDS * 1000);
    for (const [expiresAt, problem] of [
      ['not a date', /expiresAt "not a date" is not a date/],
      ['', /is not a date/],
      [undefined, /expiresAt is missing/],
      [null, /expiresAt null is not a date/],
      // a number is not an ISO instant (Date.parse('123') would be the year 123)
      [123, /expiresAt 123 is not a date/],
    ] as const) {
      const got = leaseLiveness(lease({ expiresAt }), now, writtenAt);
      expect(got.live, String(expiresAt)).toBe(true);
      expect(got.until).toEqual(bound);
      expect(got.problem).toMatch(problem);
      // ...and free once the bound has passed (taken over like any expired lease)
      expect(isLeaseLive(lease({ expiresAt }), bound, writtenAt)).toBe(false);
      expect(isLeaseLive(lease({ expiresAt }), new Date(bound.getTime() - 1), writtenAt)).toBe(
        true,
      );
    }
  });

  it('without a write time a corrupt lease stays live (nothing bounds it) and says why', () => {
    const got = leaseLiveness(lease({ expiresAt: 'NaN' }), at(10 * 365 * 86_400));
    expect(got.live).toBe(true);
    expect(got.until).toBeUndefined();
    expect(got.problem).toMatch(/not a date/);
  });

  it('a lease that is not a JSON object, or has an unknown state, is held and reported', () => {
    for (const value of [undefined, null, 'held', 42, ['held'], {}]) {
      const got = leaseLiveness(value, now, writtenAt);
      expect(got.live, JSON.stringify(value)).toBe(true);
      expect(got.problem).toBeDefined();
    }
    const unknownState = leaseLiveness(lease({ state: 'paused' }), now, writtenAt);
    expect(unknownState).toMatchObject({ live: true, until: at(600) });
    expect(unknownState.problem).toMatch(/state "paused" is neither held nor released/);
    const noState = leaseLiveness(lease({ state: undefined }), at(601), writtenAt);
    expect(noState.live).toBe(false); // its (sound) expiry still ends it
  });

  it('caps an expiry implausibly far ahead at the last write + MAX_LEASE_SECONDS', () => {
    const far = lease({ expiresAt: '9999-12-31T23:59:59.000Z' });
    const bound = new Date(writtenAt.getTime() + MAX_LEASE_SECONDS * 1000);
    const got = leaseLiveness(far, now, writtenAt);
    expect(got).toMatchObject({ live: true, until: bound });
    expect(got.problem).toMatch(/more than \d+ s past the last write/);
    expect(isLeaseLive(far, bound, writtenAt)).toBe(false);
    // the longest lease a valid config writes (1 day capture + 7 days LOCK_TTL) is never cut
    const longest = lease({ expiresAt: at(-300 + 8 * 86_400).toISOString() });
    expect(leaseLiveness(longest, now, writtenAt)).toEqual({
      live: true,
      until: at(-300 + 8 * 86_400),
      problem: undefined,
    });
  });

  it('keeps hostile values out of the problem text beyond a short excerpt', () => {
    const got = leaseLiveness(lease({ expiresAt: 'x'.repeat(100_000) }), now, writtenAt);
    expect(got.problem!.length).toBeLessThan(200);
  });
});
