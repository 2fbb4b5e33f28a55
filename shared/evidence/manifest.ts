import { versionsOfKey } from '../aws/object-versions.ts';
import type { KeptLookbackReport, ToolVersions } from '../capture/host-report.ts';
import { IntegrityError, TaplineError } from '../errors.ts';
import { type EvidenceStore, putJson, readStoredJson } from './store.ts';

/**
 * The capture manifest is the custody log: `captures/<captureId>/manifest.json`, SSE-KMS with
 * the evidence key, rewritten (never patched in place) at every state change so the bucket's
 * versions of it are the history. Concurrent writers (one track-capture per host) use
 * optimistic concurrency: read with ETag, change, write IfMatch, retry on conflict.
 */

export type HostStatus =
  | 'pending'
  | 'running'
  | 'uploading'
  | 'success'
  | 'partial'
  | 'failed'
  | 'refused'
  | 'timed-out';

export type CaptureState = 'pending' | 'running' | 'finished' | 'partial' | 'failed' | 'refused';

export const TERMINAL_HOST_STATUSES: readonly HostStatus[] = [
  'success',
  'partial',
  'failed',
  'refused',
  'timed-out',
];

export interface ManifestFile {
  key: string;
  versionId?: string | undefined;
  size: number;
  sha256: string;
  s3ChecksumSha256?: string | undefined;
  lookback: boolean;
  start?: number | undefined;
  end?: number | undefined;
  /** False when the host hash, the S3 metadata and the S3 checksum disagree. */
  verified?: boolean | undefined;
}

/**
 * A host's look-back report as kept in the manifest: whether the standby ring's files covering
 * the finding's time range were uploaded, and how completely they cover it (docs/lookback.md).
 * shared/capture/host-report.ts validates it from the host's report line (epoch seconds; `gaps`
 * are [start, end] pairs); a report that does not validate is kept as `unreadable` with the
 * problems in `errors`. Absent for hosts without the look-back step. The type is the host-report
 * schema's, so the two cannot drift apart.
 */
export type ManifestLookback = KeptLookbackReport;

export interface ManifestHost {
  status: HostStatus;
  why?: string | undefined;
  commandId?: string | undefined;
  ssmStatus?: string | undefined;
  ssmAvailability?: 'online' | 'offline' | 'unknown' | undefined;
  interface?: string | undefined;
  /**
   * Tool versions the host reported (custody: what produced the files), as host-report keeps
   * them (parseTools): entries that did not validate are left out (and said in `errors`), other
   * tools a newer script reports are kept.
   */
  tools?: ToolVersions | undefined;
  startedAt?: string | undefined;
  endedAt?: string | undefined;
  deadline?: string | undefined;
  files: ManifestFile[];
  bytes?: number | undefined;
  packetsCaptured?: number | null | undefined;
  packetsReceivedByFilter?: number | null | undefined;
  packetsDroppedByKernel?: number | null | undefined;
  unsent?: { path: string; key: string; size: number; sha256: string }[] | undefined;
  /** The look-back step's report, when the host ran one. */
  lookback?: ManifestLookback | undefined;
  errors: string[];
}

export interface ManifestHistoryEntry {
  at: string;
  event: string;
  [detail: string]: unknown;
}

export interface CaptureManifest {
  version: 1;
  captureId: string;
  state: CaptureState;
  createdAt: string;
  updatedAt: string;
  request: Record<string, unknown>;
  /** Who the request says asked (free text from the caller). */
  requestedBy: string;
  /** The verified identity that invoked Tapline (Lambda caller / CLI STS identity), if known. */
  invokedBy?: string | undefined;
  source: string;
  reason: string;
  ticket?: string | undefined;
  finding?: Record<string, unknown> | undefined;
  fingerprint?: string | undefined;
  limits: {
    durationSeconds: number;
    maxMegabytes: number;
    bpf: string;
  };
  targets: { instanceId: string; why: string; via?: string | undefined }[];
  refused: { instanceId?: string | undefined; reason: string; message: string }[];
  ssm: {
    commandId?: string | undefined;
    commandIds: string[];
    documentName: string;
    documentVersion?: string | undefined;
    parameters?: Record<string, string> | undefined;
  };
  hosts: Record<string, ManifestHost>;
  history: ManifestHistoryEntry[];
}

export const manifestKey = (captureId: string) => `captures/${captureId}/manifest.json`;

export class ManifestConflictError extends TaplineError {
  constructor(captureId: string) {
    super(`the manifest of ${captureId} kept changing under us; giving up after retries`, {
      code: 'MANIFEST_CONFLICT',
      details: { captureId },
    });
  }
}

/**
 * A stored manifest that is not a manifest at all (not JSON, or not a JSON object with a hosts
 * object and a history array): the custody record itself is damaged. It names the object, so a
 * reader (the sweep's log, `tapline status`) says which record and what is wrong.
 */
export class ManifestUnreadableError extends IntegrityError {
  constructor(captureId: string, problem: string) {
    super(`the manifest ${manifestKey(captureId)} cannot be read: ${problem}`, {
      captureId,
      key: manifestKey(captureId),
      problem,
    });
  }
}

/** The manifest with its ETag; undefined when there is none; ManifestUnreadableError if damaged. */
export async function readManifest(
  store: EvidenceStore,
  captureId: string,
): Promise<{ manifest: CaptureManifest; etag: string } | undefined> {
  const read = await readStoredJson(store, manifestKey(captureId));
  if (!read) return undefined;
  if (!read.parsed) {
    throw new ManifestUnreadableError(
      captureId,
      `not JSON (${String((read.error as Error)?.message ?? read.error).slice(0, 200)})`,
    );
  }
  const value = read.value as Partial<CaptureManifest> | null;
  const isObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(value) || !isObject(value?.hosts) || !Array.isArray(value?.history)) {
    throw new ManifestUnreadableError(captureId, 'not a manifest object with hosts and history');
  }
  return { manifest: value as CaptureManifest, etag: read.etag };
}

/** Writes the first version; fails (returns undefined) if a manifest already exists. */
export async function createManifest(
  store: EvidenceStore,
  manifest: CaptureManifest,
): Promise<{ etag: string; versionId?: string | undefined } | undefined> {
  return putJson(store, manifestKey(manifest.captureId), manifest, { ifNoneMatch: true });
}

/**
 * Read-modify-write with IfMatch. `change` returns the new manifest, or undefined to write
 * nothing (e.g. a duplicate event). Returns the manifest as written (or as read when unchanged).
 */
export async function updateManifest(
  store: EvidenceStore,
  captureId: string,
  now: () => Date,
  change: (manifest: CaptureManifest) => CaptureManifest | undefined,
): Promise<CaptureManifest | undefined> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const current = await readManifest(store, captureId);
    if (!current) return undefined;
    const next = change(structuredClone(current.manifest));
    if (!next) return current.manifest;
    next.updatedAt = now().toISOString();
    if (await putJson(store, manifestKey(captureId), next, { ifMatch: current.etag })) return next;
    // 412: someone else wrote first, or our own write was stored and its answer lost (the SDK
    // retried and met it). Our own is written: callers publish what they changed exactly once.
    const after = await readManifest(store, captureId);
    if (after && JSON.stringify(after.manifest) === JSON.stringify(next)) return next;
    await new Promise((r) => setTimeout(r, 20 * 2 ** attempt * Math.random()));
  }
  throw new ManifestConflictError(captureId);
}

/** The overall state once per-host statuses are known. */
export function overallState(manifest: CaptureManifest): CaptureState {
  const statuses = Object.values(manifest.hosts).map((h) => h.status);
  if (statuses.length === 0) return manifest.refused.length > 0 ? 'refused' : manifest.state;
  if (!statuses.every((s) => TERMINAL_HOST_STATUSES.includes(s))) {
    return statuses.some((s) => s !== 'pending') ? 'running' : 'pending';
  }
  if (statuses.every((s) => s === 'success')) return 'finished';
  if (statuses.every((s) => s === 'failed' || s === 'timed-out' || s === 'refused')) {
    return 'failed';
  }
  return 'partial';
}

/**
 * Why a host that never reported is closed as timed out:
 * - `sound`: its lock (sound, naming this capture) is past its deadline, the same instant the
 *   manifest holds for the host;
 * - `corrupt`: its lock is corrupt and names nothing that can be believed, so only the
 *   manifest's own deadline for the host decides; the lock is not released (it holds the host);
 * - `taken-over`: another capture took the host's lock over (it had expired, or a rolling
 *   capture took it in its last seconds) before this host reported, so no lock names this
 *   capture any more; again only the manifest's own deadline decides.
 */
export type TimeOutCause =
  | { lock: 'sound'; deadline: string }
  | { lock: 'corrupt'; key: string; problem: string; until?: Date | undefined }
  | {
      lock: 'taken-over';
      key: string;
      /** the capture that took the lock over (and holds it now, unless `released`) */
      by: string;
      released?: boolean | undefined;
    };

/**
 * What timeOutHost did: `closed` the host (the manifest as written, and whether that finished
 * the capture), or nothing because the host is still `open` (not past its deadline), already
 * `final`, or `missing` (no such manifest or host).
 */
export type TimeOutResult =
  | { outcome: 'closed'; manifest: CaptureManifest; finished: boolean }
  | { outcome: 'open' | 'final' | 'missing' };

/**
 * Marks one host of a capture timed out, when its manifest still shows it open (and, unless its
 * sound lock's deadline decided, past the manifest's own deadline for it), saying why in the
 * host's errors and the history.
 */
export async function timeOutHost(
  store: EvidenceStore,
  captureId: string,
  instanceId: string,
  now: () => Date,
  cause: TimeOutCause,
): Promise<TimeOutResult> {
  let result: TimeOutResult = { outcome: 'missing' };
  let changed = false;
  let finished = false;
  const written = await updateManifest(store, captureId, now, (m) => {
    changed = false;
    finished = false;
    const host = m.hosts?.[instanceId];
    result = { outcome: host ? 'final' : 'missing' };
    if (!host || TERMINAL_HOST_STATUSES.includes(host.status)) return undefined;
    result = { outcome: 'open' };
    const at = now();
    if (host.status === 'pending') {
      // startCapture writes 'running' once SendCommand answered: a host still pending means
      // that write never happened, so the record cannot say whether the command ever ran.
      host.errors.push(
        'the manifest never recorded the command as sent to this host (the capture core stopped or failed before it could); whether the host ran it is unknown: look for the command commented with this capture ID in SSM or CloudTrail',
      );
    }
    if (cause.lock === 'sound') {
      host.errors.push(`no report from the host by its deadline ${cause.deadline}`);
      m.history.push({ at: at.toISOString(), event: 'host-timed-out', instanceId });
    } else {
      const deadline = typeof host.deadline === 'string' ? Date.parse(host.deadline) : Number.NaN;
      if (!(deadline <= at.getTime())) return undefined;
      if (cause.lock === 'corrupt') {
        const until = cause.until?.toISOString();
        host.errors.push(
          `no report from the host by its deadline ${host.deadline}; its lock ${cause.key} is corrupt (${cause.problem}): not released, it holds the host until ${until ?? 'an unknown time'}`,
        );
        m.history.push({
          at: at.toISOString(),
          event: 'host-timed-out',
          instanceId,
          deadline: host.deadline,
          lockCorrupt: cause.problem,
          lockHeldUntil: until,
        });
      } else {
        host.errors.push(
          `no report from the host by its deadline ${host.deadline}; its lock ${cause.key} was taken over before it reported (${cause.released ? `by ${cause.by}, which has released it since` : `held by ${cause.by} now`})`,
        );
        m.history.push({
          at: at.toISOString(),
          event: 'host-timed-out',
          instanceId,
          deadline: host.deadline,
          lockTakenOver: true,
          ...(cause.released ? { lockTakenOverBy: cause.by } : { lockHeldBy: cause.by }),
        });
      }
    }
    host.status = 'timed-out';
    host.endedAt = at.toISOString();
    m.state = overallState(m);
    if (m.state !== 'running' && m.state !== 'pending') {
      finished = true;
      m.history.push({ at: at.toISOString(), event: 'capture-finished', state: m.state });
    }
    changed = true;
    return m;
  });
  return changed && written ? { outcome: 'closed', manifest: written, finished } : result;
}

/**
 * Hosts still shown as pending/running/uploading although their report deadline (capture end +
 * grace) has passed: the host never reported and the timed-out sweep has not closed it (it has
 * not run yet, or the host's lock is damaged and cannot be trusted to name this capture). A
 * reading of the manifest, not a change to it: the custody record stays as written.
 */
export function overdueHosts(
  manifest: CaptureManifest,
  now: Date,
): { instanceId: string; deadline: string }[] {
  const out: { instanceId: string; deadline: string }[] = [];
  for (const [instanceId, host] of Object.entries(manifest.hosts ?? {})) {
    if (TERMINAL_HOST_STATUSES.includes(host.status) || host.deadline === undefined) continue;
    const deadline = Date.parse(host.deadline);
    if (Number.isFinite(deadline) && deadline < now.getTime()) {
      out.push({ instanceId, deadline: host.deadline });
    }
  }
  return out;
}

/** Every stored version of a manifest, oldest first (the custody history as S3 keeps it). */
export async function manifestVersions(
  store: EvidenceStore,
  captureId: string,
): Promise<{ versionId: string; lastModified?: Date | undefined }[]> {
  const versions = await versionsOfKey(store.s3, store.bucket, manifestKey(captureId));
  return versions.map(({ versionId, lastModified }) => ({ versionId, lastModified })).reverse();
}
