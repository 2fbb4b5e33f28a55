import { TaplineError } from '../errors.ts';
import {
  acquireLease,
  cooldownKey,
  type Lease,
  peekLease,
  releaseLease,
} from '../evidence/guards.ts';
import type { EvidenceStore } from '../evidence/store.ts';

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
  /**
   * This claimant reports; `previous` is the expired marker of the last window, if any;
   * `replacedCorrupt` says what was wrong with a corrupt marker this claim replaced.
   */
  | {
      first: true;
      key: string;
      previous?: NoticeMarker | undefined;
      replacedCorrupt?: string | undefined;
    }
  /**
   * Already reported in this window, by `holder`, until `until`. `problem`: what is wrong with
   * the holder when it is corrupt (a corrupt marker is normally taken over, see claimNotice).
   */
  | {
      first: false;
      key: string;
      holder?: NoticeMarker | undefined;
      until?: Date | undefined;
      problem?: string | undefined;
    };

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
  if (!Number.isFinite(claim.until.getTime())) {
    throw new TaplineError('a notice window must end at a valid instant', {
      code: 'NOTICE_WINDOW_INVALID',
      details: { key },
    });
  }
  const peeked = await peekLease<NoticeMarker>(store, key, claim.at);
  const current = peeked?.lease;
  if (peeked?.liveness.live && !peeked.liveness.problem) {
    return { first: false, key, holder: current, until: peeked.liveness.until };
  }
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
  // A corrupt marker is live by the lease rule (guards.ts leaseLiveness), but a notice fails
  // open: it is taken over (IfMatch: exactly one claimant reports, and the marker is sound
  // again), so a broken marker costs at most one duplicate notice instead of silencing the
  // fingerprint until the corrupt object ages out.
  const got = await acquireLease(
    store,
    key,
    marker,
    claim.at,
    (_holder, liveness) => liveness.problem !== undefined,
  );
  if (got.acquired) {
    return {
      first: true,
      key,
      previous: (got.tookOverFrom as NoticeMarker | undefined) ?? current,
      ...(peeked?.liveness.problem ? { replacedCorrupt: peeked.liveness.problem } : {}),
    };
  }
  return {
    first: false,
    key,
    holder: got.holder as NoticeMarker | undefined,
    until: got.until,
    problem: got.problem,
  };
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
