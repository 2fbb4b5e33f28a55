import { createHash } from 'node:crypto';
import { type EvidenceStore, getJson, listKeys, putJson } from './store.ts';

/**
 * Capture guards kept in the evidence bucket. Each is a lease object created with
 * IfNoneMatch '*' (exactly one concurrent writer wins) and taken over only with IfMatch on the
 * ETag we read, and only when the lease is released or past its expiry. A lease is released by
 * rewriting it with state "released" (the bucket is versioned and object-locked: we never delete
 * versions, and the versions are the lease's history).
 */

export interface Lease {
  kind: 'lock' | 'cooldown';
  state: 'held' | 'released';
  captureId: string;
  instanceId: string;
  createdAt: string;
  /** After this instant the lease is stale and may be taken over. */
  expiresAt: string;
  /** Lock only: when the host should have reported (start + duration + grace). */
  deadline?: string | undefined;
  /** Lock only: who holds it (manual, schedule, detector, cli) and when its capture ends. */
  source?: string | undefined;
  endsAt?: string | undefined;
  fingerprint?: string | undefined;
  releasedAt?: string | undefined;
  releasedBecause?: string | undefined;
}

export type LeaseResult =
  | { acquired: true; key: string; etag: string; tookOverFrom?: Lease | undefined }
  | { acquired: false; key: string; holder: Lease | undefined };

export const lockKey = (instanceId: string) => `locks/${instanceId}.json`;

/**
 * How long a guard object version stays locked: `store.guardRetentionHours` past the guard's own
 * expiry (and never less than that from now), or the bucket default when unset.
 */
export function guardRetention(
  store: EvidenceStore,
  expiresAt: string | Date,
  now: Date,
): { retainUntil?: Date } {
  const hours = store.guardRetentionHours ?? 0;
  if (hours <= 0) return {};
  const expiry = typeof expiresAt === 'string' ? Date.parse(expiresAt) : expiresAt.getTime();
  const from = Number.isFinite(expiry) ? Math.max(expiry, now.getTime()) : now.getTime();
  return { retainUntil: new Date(from + hours * 3_600_000) };
}

export function cooldownKey(fingerprint: string, instanceId: string): string {
  const digest = createHash('sha256').update(fingerprint).digest('hex').slice(0, 32);
  return `cooldowns/${digest}/${instanceId}.json`;
}

/**
 * Acquire a lease. `mayTakeOver` can allow taking over a live lease (rolling captures take over
 * from the previous rolling capture in its last seconds); released or expired leases are always
 * free.
 */
export async function acquireLease(
  store: EvidenceStore,
  key: string,
  lease: Lease,
  now: Date,
  mayTakeOver: (holder: Lease) => boolean = () => false,
): Promise<LeaseResult> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const retention = guardRetention(store, lease.expiresAt, now);
    const created = await putJson(store, key, lease, { ifNoneMatch: true }, retention);
    if (created) return { acquired: true, key, etag: created.etag };
    const current = await getJson<Lease>(store, key);
    if (!current) continue; // vanished between our two calls: try to create again
    const holder = current.value;
    const free =
      holder.state === 'released' ||
      Date.parse(holder.expiresAt) <= now.getTime() ||
      mayTakeOver(holder);
    if (!free) return { acquired: false, key, holder };
    const replaced = await putJson(store, key, lease, { ifMatch: current.etag }, retention);
    if (replaced) return { acquired: true, key, etag: replaced.etag, tookOverFrom: holder };
    // Someone else replaced it first: read again and decide again.
  }
  const holder = (await getJson<Lease>(store, key))?.value;
  return { acquired: false, key, holder };
}

/**
 * Release a lease we hold (matching captureId and still held). Returns false when the lease is
 * no longer ours (taken over after expiry, or already released): nothing is changed then.
 */
export async function releaseLease(
  store: EvidenceStore,
  key: string,
  captureId: string,
  now: Date,
  because: string,
): Promise<boolean> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const current = await getJson<Lease>(store, key);
    if (!current || current.value.captureId !== captureId || current.value.state !== 'held') {
      return false;
    }
    const released: Lease = {
      ...current.value,
      state: 'released',
      releasedAt: now.toISOString(),
      releasedBecause: because,
    };
    const retention = guardRetention(store, released.expiresAt, now);
    if (await putJson(store, key, released, { ifMatch: current.etag }, retention)) return true;
  }
  return false;
}

/** Every lock currently held (for the timed-out sweep). */
export async function heldLocks(store: EvidenceStore): Promise<{ key: string; lease: Lease }[]> {
  const keys = await listKeys(store, 'locks/');
  const out: { key: string; lease: Lease }[] = [];
  for (const key of keys) {
    const current = await getJson<Lease>(store, key);
    if (current?.value.state === 'held') out.push({ key, lease: current.value });
  }
  return out;
}

export interface BudgetSlot {
  captureId: string;
  instanceId: string;
  at: string;
}

export function budgetHour(now: Date): string {
  return now.toISOString().slice(0, 13).replace(/[-:]/g, '');
}

/**
 * Spend one unit of the global hourly budget: slots `budget/<YYYYMMDDTHH>/<n>.json`, n < limit,
 * each created once with IfNoneMatch '*'. Returns the slot number, or undefined when every slot
 * of this hour is taken. Concurrent spenders each get a different slot or none.
 */
export async function spendBudget(
  store: EvidenceStore,
  limit: number,
  slot: BudgetSlot,
  now: Date,
): Promise<number | undefined> {
  if (limit <= 0) return undefined;
  const prefix = `budget/${budgetHour(now)}/`;
  // a slot matters until its hour is over
  const hourEnd = new Date(Math.floor(now.getTime() / 3_600_000 + 1) * 3_600_000);
  const retention = guardRetention(store, hourEnd, now);
  const taken = new Set(await listKeys(store, prefix));
  const free: number[] = [];
  for (let n = 0; n < limit; n++) {
    if (!taken.has(`${prefix}${String(n).padStart(6, '0')}.json`)) free.push(n);
  }
  // Try the free slots in random order: concurrent spenders rarely collide on the same slot.
  for (let i = free.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [free[i], free[j]] = [free[j]!, free[i]!];
  }
  for (const n of free) {
    const key = `${prefix}${String(n).padStart(6, '0')}.json`;
    if (await putJson(store, key, slot, { ifNoneMatch: true }, retention)) return n;
  }
  return undefined;
}

/** How many captures the hourly budget has left (for reports; not a reservation). */
export async function budgetUsed(store: EvidenceStore, now: Date): Promise<number> {
  return (await listKeys(store, `budget/${budgetHour(now)}/`)).length;
}
