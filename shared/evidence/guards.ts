import { createHash } from 'node:crypto';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { versionsOfKey } from '../aws/object-versions.ts';
import { LOCK_TTL_LIMIT_SECONDS, MAX_DURATION_LIMIT_SECONDS } from '../config.ts';
import type { CoreLogger } from '../observability.ts';
import { type EvidenceStore, listKeys, putJson, readStoredJson } from './store.ts';

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
  /**
   * Lock only: earlier captures on this host whose lock was taken over (expired, or a rolling
   * capture's last seconds) before their host reported. No other lock names them, so the
   * timed-out sweep and the next taker close them by their own manifests' deadlines. Hints only.
   */
  supersedes?: string[] | undefined;
}

/** At most this many superseded captures are carried in a lock (oldest dropped first). */
export const MAX_SUPERSEDED = 8;

/**
 * The captures a lock's previous holder leaves to be closed by whoever takes the lock over:
 * the holder itself while it was still held, and what it had superseded in turn. Untrusted
 * input (any stored object): only capture-ID-shaped strings are kept, never `self`.
 */
export function supersededBy(holder: unknown, self: string, isCaptureId: (v: string) => boolean) {
  if (typeof holder !== 'object' || holder === null || Array.isArray(holder)) return [];
  const h = holder as Record<string, unknown>;
  const ids = [
    ...(h.state !== 'released' && typeof h.captureId === 'string' ? [h.captureId] : []),
    ...(Array.isArray(h.supersedes) ? h.supersedes : []),
  ].filter((v): v is string => typeof v === 'string' && v !== self && isCaptureId(v));
  return [...new Set(ids)].slice(0, MAX_SUPERSEDED);
}

export type LeaseResult =
  | { acquired: true; key: string; etag: string; tookOverFrom?: Lease | undefined }
  | {
      acquired: false;
      key: string;
      /** The holder as stored (undefined when it is not a JSON object at all). */
      holder: Lease | undefined;
      /** When the holder stops being live (leaseLiveness); undefined when it cannot be bounded. */
      until?: Date | undefined;
      /** Set when the holder is corrupt and was treated as held (see leaseLiveness). */
      problem?: string | undefined;
    };

/**
 * The longest any lease may stay live past its last write: the longest capture plus the longest
 * lock TTL the config accepts (8 days), plus an hour of clock skew between the writer and S3.
 * Cooldowns and notice windows are at most 7 days.
 */
export const MAX_LEASE_SECONDS = MAX_DURATION_LIMIT_SECONDS + LOCK_TTL_LIMIT_SECONDS + 3_600;

export interface LeaseLiveness {
  live: boolean;
  /**
   * When the lease stops (or stopped) being live: its expiresAt, capped at its last write +
   * MAX_LEASE_SECONDS. Undefined for a released lease, and for a corrupt one read without its
   * write time (then it stays live: nothing bounds it).
   */
  until?: Date | undefined;
  /** What is wrong with the stored lease, when it is corrupt (it is then treated as held). */
  problem?: string | undefined;
}

/**
 * THE liveness rule for every lease (locks, cooldowns, notice markers); every reader decides
 * with it so that none lets through what another would hold.
 *
 * - `state: "released"` is not live.
 * - Otherwise the lease is live while `now < expiresAt` (at exactly expiresAt it has expired).
 * - A corrupt lease (not a JSON object, a state other than held/released, a missing or
 *   unparseable expiresAt) fails closed: it is treated as held, because a guard that reads as
 *   free would let a flood of captures (or notices) through. It must not wedge the host forever
 *   either, so it is live only until `writtenAt` (the object's S3 LastModified, which the writer
 *   cannot forge) + MAX_LEASE_SECONDS; after that it is taken over like any expired lease
 *   (IfMatch on its ETag). The same cap bounds a parseable expiresAt implausibly far ahead.
 * The problem is returned so that callers log and record it.
 */
export function leaseLiveness(lease: unknown, now: Date, writtenAt?: Date): LeaseLiveness {
  const problems: string[] = [];
  const value =
    typeof lease === 'object' && lease !== null && !Array.isArray(lease)
      ? (lease as Record<string, unknown>)
      : undefined;
  if (!value) problems.push('the lease is not a JSON object');
  const state = value?.state;
  if (state === 'released') return { live: false };
  if (value && state !== 'held') {
    problems.push(
      `state ${JSON.stringify(state ?? null)?.slice(0, 40)} is neither held nor released`,
    );
  }
  const raw = value?.expiresAt;
  const parsed = typeof raw === 'string' ? Date.parse(raw) : Number.NaN;
  const expiry = Number.isFinite(parsed) ? parsed : undefined;
  if (value && expiry === undefined) {
    problems.push(
      raw === undefined
        ? 'expiresAt is missing'
        : `expiresAt ${JSON.stringify(raw)?.slice(0, 40)} is not a date`,
    );
  }
  const written = writtenAt?.getTime();
  const cap =
    written !== undefined && Number.isFinite(written)
      ? written + MAX_LEASE_SECONDS * 1000
      : undefined;
  if (expiry !== undefined && cap !== undefined && expiry > cap) {
    problems.push(
      `expiresAt ${(raw as string).slice(0, 40)} is more than ${MAX_LEASE_SECONDS} s past the last write`,
    );
  }
  const end = expiry === undefined ? cap : cap === undefined ? expiry : Math.min(expiry, cap);
  return {
    live: end === undefined || now.getTime() < end,
    until: end === undefined ? undefined : new Date(end),
    problem: problems.length > 0 ? problems.join('; ') : undefined,
  };
}

/** leaseLiveness(...).live: whether the lease still holds at `now`. */
export function isLeaseLive(lease: unknown, now: Date, writtenAt?: Date): boolean {
  return leaseLiveness(lease, now, writtenAt).live;
}

export interface StoredLease<T extends Lease = Lease> {
  /** The stored object when it is a JSON object (fields unchecked: see `liveness.problem`). */
  lease: T | undefined;
  etag: string;
  lastModified?: Date | undefined;
}

/**
 * Reads a lease object with its ETag and LastModified; undefined when there is none. A body that
 * is not a JSON object is returned as `lease: undefined` (a corrupt lease, see leaseLiveness),
 * not thrown: a broken guard object must not turn every request for its host into an error.
 */
export async function readLease<T extends Lease = Lease>(
  store: EvidenceStore,
  key: string,
): Promise<StoredLease<T> | undefined> {
  const read = await readStoredJson(store, key);
  if (!read) return undefined;
  const value = read.parsed ? read.value : undefined;
  const isObject = typeof value === 'object' && value !== null && !Array.isArray(value);
  return {
    lease: isObject ? (value as T) : undefined,
    etag: read.etag,
    lastModified: read.lastModified,
  };
}

/** Reads a lease and decides whether it is live at `now` (one GET, no write). */
export async function peekLease<T extends Lease = Lease>(
  store: EvidenceStore,
  key: string,
  now: Date,
): Promise<(StoredLease<T> & { liveness: LeaseLiveness }) | undefined> {
  const stored = await readLease<T>(store, key);
  if (!stored) return undefined;
  return { ...stored, liveness: leaseLiveness(stored.lease, now, stored.lastModified) };
}

export const lockKey = (instanceId: string) => `locks/${instanceId}.json`;
/** The instance a lock key is for (`locks/<instanceId>.json`), undefined for any other key. */
export function instanceOfLockKey(key: string): string | undefined {
  return /^locks\/((?:i|mi)-[0-9a-f]{8,17})\.json$/.exec(key)?.[1];
}

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
 * from the previous rolling capture in its last seconds; notice markers take over a corrupt
 * marker); it is given the holder as stored (undefined when not a JSON object) and its
 * liveness. Released or expired leases are always free. Every takeover is an IfMatch write on
 * the ETag read, so of concurrent takers exactly one wins. `options.onTakeOver` gives the lease
 * to write when a holder is replaced (e.g. the lock carrying what the holder leaves behind,
 * `supersedes`): it is in that same write, so nothing is lost if the taker stops right after it.
 * `options.uniqueHolder`: see there (a create whose answer was lost is recognised as ours).
 */
export async function acquireLease(
  store: EvidenceStore,
  key: string,
  lease: Lease,
  now: Date,
  mayTakeOver: (holder: Lease | undefined, liveness: LeaseLiveness) => boolean = () => false,
  options: {
    /** The lease to write when a holder is replaced (default: `lease`). */
    onTakeOver?: (holder: Lease | undefined) => Lease;
    /**
     * `lease.captureId` is unique to this caller (a capture ID): a stored held lease with the
     * same kind, captureId, instanceId and createdAt is this caller's own earlier write.
     */
    uniqueHolder?: boolean;
  } = {},
): Promise<LeaseResult> {
  const onTakeOver = options.onTakeOver ?? (() => lease);
  for (let attempt = 0; attempt < 3; attempt++) {
    const retention = guardRetention(store, lease.expiresAt, now);
    const created = await putJson(store, key, lease, { ifNoneMatch: true }, retention);
    if (created) return { acquired: true, key, etag: created.etag };
    const current = await readLease(store, key);
    if (!current) continue; // vanished between our two calls: try to create again
    const holder = current.lease;
    // Our own write, stored although its answer was lost (the SDK's retry then got 412): the
    // lease is ours, not another holder's.
    if (
      options.uniqueHolder === true &&
      holder?.state === 'held' &&
      holder.kind === lease.kind &&
      holder.captureId === lease.captureId &&
      holder.instanceId === lease.instanceId &&
      holder.createdAt === lease.createdAt
    ) {
      return { acquired: true, key, etag: current.etag };
    }
    const liveness = leaseLiveness(holder, now, current.lastModified);
    const free = !liveness.live || mayTakeOver(holder, liveness);
    if (!free) {
      return { acquired: false, key, holder, until: liveness.until, problem: liveness.problem };
    }
    const replaced = await putJson(
      store,
      key,
      onTakeOver(holder),
      { ifMatch: current.etag },
      retention,
    );
    if (replaced) return { acquired: true, key, etag: replaced.etag, tookOverFrom: holder };
    // Someone else replaced it first: read again and decide again.
  }
  const last = await readLease(store, key);
  const liveness = last ? leaseLiveness(last.lease, now, last.lastModified) : undefined;
  return {
    acquired: false,
    key,
    holder: last?.lease,
    until: liveness?.until,
    problem: liveness?.problem,
  };
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
    const current = await readLease(store, key);
    if (
      !current?.lease ||
      current.lease.captureId !== captureId ||
      current.lease.state !== 'held'
    ) {
      return false;
    }
    const released: Lease = {
      ...current.lease,
      state: 'released',
      releasedAt: now.toISOString(),
      releasedBecause: because,
    };
    const retention = guardRetention(store, released.expiresAt, now);
    if (await putJson(store, key, released, { ifMatch: current.etag }, retention)) return true;
  }
  return false;
}

/**
 * Logs a corrupt lock or cooldown that a guard treated as held (nothing when it is sound): one
 * message per kind of guard, with the key, the problem, until when it holds and, when the
 * caller knows them (the capture core does, the timed-out sweep does not), capture and host.
 */
export function logCorruptGuard(
  logger: CoreLogger,
  guard: 'lock' | 'cooldown',
  where: { captureId?: string; instanceId?: string; key: string },
  holding: { problem?: string | undefined; until?: Date | undefined },
): void {
  if (!holding.problem) return;
  logger.error(
    guard === 'lock'
      ? 'corrupt host lock treated as held'
      : 'corrupt cooldown object treated as live',
    {
      ...(where.captureId !== undefined ? { captureId: where.captureId } : {}),
      ...(where.instanceId !== undefined ? { instanceId: where.instanceId } : {}),
      key: where.key,
      problem: holding.problem,
      until: holding.until?.toISOString(),
    },
  );
}

/**
 * A lock that is not released, as the timed-out sweep sees it: either a sound held lease, or a
 * corrupt lock (its fields cannot be trusted, so it carries no lease to read them from). A
 * corrupt lock holds its host (leaseLiveness) until `until`; nothing may act on what it claims.
 */
export type HeldLock =
  /** `released`: only with heldLocks' `withCarrying`, a released lock still carrying captures */
  | { key: string; corrupt: false; lease: Lease; released?: true | undefined }
  | {
      key: string;
      corrupt: true;
      /** What is wrong with it: leaseLiveness's problem and the Lease fields it lacks. */
      problem: string;
      /** When it stops holding (undefined when nothing bounds it). */
      until?: Date | undefined;
    };

const REQUIRED_LEASE_STRINGS = ['captureId', 'instanceId', 'createdAt'] as const;
const OPTIONAL_LEASE_STRINGS = [
  'deadline',
  'source',
  'endsAt',
  'fingerprint',
  'releasedAt',
  'releasedBecause',
] as const;

/** The Lease fields (besides state and expiresAt: leaseLiveness checks those) that are wrong. */
function leaseFieldProblems(value: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const shown = (v: unknown) => JSON.stringify(v)?.slice(0, 40);
  if (value.kind !== 'lock' && value.kind !== 'cooldown') {
    problems.push(`kind ${shown(value.kind ?? null)} is neither lock nor cooldown`);
  }
  for (const field of REQUIRED_LEASE_STRINGS) {
    const v = value[field];
    if (v === undefined) {
      problems.push(`${field} is missing`);
    } else if (typeof v !== 'string' || v === '') {
      problems.push(`${field} ${shown(v)} is not a non-empty string`);
    }
  }
  for (const field of OPTIONAL_LEASE_STRINGS) {
    const v = value[field];
    if (v !== undefined && typeof v !== 'string') {
      problems.push(`${field} ${shown(v)} is not a string`);
    }
  }
  return problems;
}

/**
 * Every lock not released (for the timed-out sweep): sound held leases, and corrupt locks with
 * their problem (leaseLiveness's, decided at `now` against the object's LastModified, plus any
 * Lease field of the wrong type), so the sweep never acts on a corrupt lock's fields. With
 * `withCarrying`, also the released locks that still carry superseded captures (`released`).
 */
export async function heldLocks(
  store: EvidenceStore,
  now: Date,
  options: { withCarrying?: boolean } = {},
): Promise<HeldLock[]> {
  const keys = await listKeys(store, 'locks/');
  const out: HeldLock[] = [];
  for (const key of keys) {
    const current = await readLease(store, key);
    if (!current) continue;
    if (current.lease?.state === 'released') {
      // a released lock may still carry captures it superseded (see Lease.supersedes) that no
      // later capture has taken over: the sweep must still close them by their deadlines
      const { supersedes } = current.lease;
      if (
        options.withCarrying &&
        Array.isArray(supersedes) &&
        supersedes.length > 0 &&
        lockKey(String(current.lease.instanceId)) === key
      ) {
        out.push({ key, corrupt: false, lease: current.lease, released: true });
      }
      continue;
    }
    const liveness = leaseLiveness(current.lease, now, current.lastModified);
    const problems = [
      ...(liveness.problem ? [liveness.problem] : []),
      ...(current.lease
        ? leaseFieldProblems(current.lease as unknown as Record<string, unknown>)
        : []),
      // the sweep releases by key and updates the manifest entry the lease names: both must
      // be the same host
      ...(current.lease &&
      typeof current.lease.instanceId === 'string' &&
      lockKey(current.lease.instanceId) !== key
        ? [`names instance ${current.lease.instanceId.slice(0, 64)}, not the one of its key`]
        : []),
    ];
    if (current.lease && problems.length === 0) {
      out.push({ key, corrupt: false, lease: current.lease });
    } else {
      out.push({ key, corrupt: true, problem: problems.join('; '), until: liveness.until });
    }
  }
  return out;
}

/**
 * The capture IDs a lock key has named, newest first: the `captureId` of each of its latest
 * `maxVersions` stored versions that is a JSON object with a string captureId (the current one
 * included; duplicates once). Untrusted hints, not facts: a corrupt lock's own fields cannot be
 * believed, so the caller only acts on what the named capture's manifest itself says (see the
 * timed-out sweep). Needs s3:ListBucketVersions on locks/* and s3:GetObjectVersion on locks/*.
 */
export async function lockCaptureIdHistory(
  store: EvidenceStore,
  key: string,
  maxVersions = 4,
): Promise<string[]> {
  const versions = await versionsOfKey(store.s3, store.bucket, key, maxVersions);
  const ids: string[] = [];
  for (const v of versions) {
    const out = await store.s3.send(
      new GetObjectCommand({ Bucket: store.bucket, Key: key, VersionId: v.versionId }),
    );
    const text = (await out.Body?.transformToString()) ?? '';
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      continue;
    }
    const captureId =
      typeof value === 'object' && value !== null && !Array.isArray(value)
        ? (value as Record<string, unknown>).captureId
        : undefined;
    if (typeof captureId === 'string' && !ids.includes(captureId)) ids.push(captureId);
  }
  return ids;
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
