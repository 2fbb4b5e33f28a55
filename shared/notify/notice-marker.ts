import { acquireLease, cooldownKey, type Lease, releaseLease } from '../evidence/guards.ts';
import { type EvidenceStore, getJson } from '../evidence/store.ts';

/**
 * Notice markers: "this was already reported in this window", the rate limit for notification
 * floods (a detector re-reporting one anomaly from every delivery, the capture core refusing
 * each of those requests while the fingerprint cools down). A marker lives next to the
 * fingerprint's cooldowns (`cooldowns/<sha256(fingerprint)[:32]>/…`, same lifecycle rule, same
 * IAM grant) and is a lease: created with IfNoneMatch '*' (of concurrent claimants exactly one
 * publishes) and, once its window is over, taken over with IfMatch on the ETag read (again
 * exactly one winner).
 *
 * Object Lock: every version written here is retained (a short GOVERNANCE retention past the
 * marker's window when GUARD_RETENTION_HOURS is set, the bucket default otherwise), and lifecycle
 * cannot expire a version before its retention ends. So a marker writes at most
 * one version per key and window (the claim that wins); a suppressed occurrence writes nothing
 * (a read, and only when the read cannot decide, a failed conditional PUT, which creates no
 * version). That is also why no suppression counter is kept in the marker: counting with IfMatch
 * rewrites would leave one retained version per suppressed occurrence.
 */

export type NoticePurpose = 'refusal-notice' | 'finding-notice';

export interface NoticeMarker extends Lease {
  purpose: NoticePurpose;
}

/** The refusal notice of a cooldown: one recorded capture refusal per window and host. */
export function refusalNoticeKey(fingerprint: string, instanceId: string): string {
  return cooldownKey(fingerprint, instanceId).replace(/\.json$/, '.refusal-notice.json');
}

/** The finding notice of a fingerprint: one published finding notification per window. */
export function findingNoticeKey(fingerprint: string): string {
  return cooldownKey(fingerprint, 'finding-notice');
}

export type NoticeClaim =
  /** This claimant reports; `previous` is the expired marker of the last window, if any. */
  | { first: true; key: string; previous?: NoticeMarker | undefined }
  /** Already reported in this window, by `holder`. */
  | { first: false; key: string; holder?: NoticeMarker | undefined };

function live(marker: NoticeMarker | undefined, at: Date): marker is NoticeMarker {
  return marker?.state === 'held' && Date.parse(marker.expiresAt) > at.getTime();
}

/**
 * Claims the notice at `key` until `until` for `reporter` (a capture ID, a notification ID).
 * Reads first (a flood of repeats costs one GET each and writes nothing), then claims with the
 * lease protocol. S3 errors propagate: the caller decides whether to report anyway.
 */
export async function claimNotice(
  store: EvidenceStore,
  key: string,
  claim: {
    purpose: NoticePurpose;
    reporter: string;
    fingerprint: string;
    /** The host a refusal notice is about; "-" for a finding notice (all hosts). */
    instanceId: string;
    at: Date;
    until: Date;
  },
): Promise<NoticeClaim> {
  const current = (await getJson<NoticeMarker>(store, key))?.value;
  if (live(current, claim.at)) return { first: false, key, holder: current };
  const marker: NoticeMarker = {
    kind: 'cooldown',
    state: 'held',
    purpose: claim.purpose,
    captureId: claim.reporter,
    instanceId: claim.instanceId,
    fingerprint: claim.fingerprint,
    createdAt: claim.at.toISOString(),
    expiresAt: claim.until.toISOString(),
  };
  const got = await acquireLease(store, key, marker, claim.at);
  if (got.acquired) {
    return {
      first: true,
      key,
      previous: (got.tookOverFrom as NoticeMarker | undefined) ?? current,
    };
  }
  return { first: false, key, holder: got.holder as NoticeMarker | undefined };
}

/**
 * Gives a claimed notice back (the report it stood for did not go out), so the next occurrence
 * reports instead of being suppressed for the rest of the window. Only our own live claim is
 * released (IfMatch); false when it is no longer ours.
 */
export function releaseNotice(
  store: EvidenceStore,
  key: string,
  reporter: string,
  at: Date,
  because: string,
): Promise<boolean> {
  return releaseLease(store, key, reporter, at, because);
}
