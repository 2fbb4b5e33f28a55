import type { EC2Client } from '@aws-sdk/client-ec2';
import type { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import type { KMSClient } from '@aws-sdk/client-kms';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SNSClient } from '@aws-sdk/client-sns';
import { DescribeDocumentCommand, SendCommandCommand, type SSMClient } from '@aws-sdk/client-ssm';
import type { STSClient } from '@aws-sdk/client-sts';
import { resolveKeyArn, resolveTopicArn } from '../aws/resolve.ts';
import type { TaplineConfig } from '../config.ts';
import {
  type CaptureRefusal,
  describeError,
  type ErrorSummary,
  isTaplineError,
} from '../errors.ts';
import {
  acquireLease,
  cooldownKey,
  guardRetention,
  type Lease,
  lockKey,
  logCorruptGuard,
  peekLease,
  releaseLease,
  spendBudget,
  supersededBy,
} from '../evidence/guards.ts';
import {
  type CaptureManifest,
  createManifest,
  type ManifestHost,
  manifestKey,
  overallState,
  readManifest,
  timeOutHost,
  updateManifest,
} from '../evidence/manifest.ts';
import { type EvidenceStore, putJson } from '../evidence/store.ts';
import { claimNotice, refusalNoticeKey } from '../notify/notice-marker.ts';
import { publishEvent, type TaplineEventType } from '../notify/publish.ts';
import type { CoreLogger } from '../observability.ts';
import { checkSsmOnline } from '../targets/online.ts';
import { type ResolvedTarget, resolveTargets } from '../targets/resolve.ts';
import { captureDocumentParameters, checkDocumentParameters } from './document-parameters.ts';
import { CaptureIdCollisionError } from './errors.ts';
import { filterToBpf } from './filter.ts';
import { isCaptureId, newCaptureId } from './ids.ts';
import { type CaptureRequest, type CaptureRequestInput, parseCaptureRequest } from './request.ts';

/** Extra refusal reasons beyond the shared CaptureRefusal set. */
export type RefusalReason =
  | CaptureRefusal
  | 'not-found'
  | 'not-running'
  | 'no-target'
  | 'send-failed'
  | 'guard-failed';

export interface Refusal {
  instanceId?: string | undefined;
  reason: RefusalReason;
  message: string;
  details?: Record<string, unknown> | undefined;
}

export interface StartedHost {
  instanceId: string;
  why: string;
  commandId: string;
}

export interface CaptureOutcome {
  captureId: string;
  state: CaptureManifest['state'];
  started: StartedHost[];
  refused: Refusal[];
  manifestKey: string;
  durationSeconds: number;
  /** When each started host should have reported (timed out after that). */
  deadline?: string | undefined;
  /** Set when the SSM online status could not be determined (reported, not fatal). */
  ssmAvailabilityUnknown?: string | undefined;
  /**
   * false: a repeated cooldown refusal that was not written or published, because the first
   * refusal of this fingerprint on these hosts in the current cooldown window already was
   * (`manifestKey` then names no object). Absent or true: recorded as usual.
   */
  recorded?: boolean | undefined;
  /** Set with recorded: false: the capture IDs whose refusals reported this window. */
  reportedBy?: string[] | undefined;
  /**
   * Hosts whose refusal notice marker could not be read or claimed (S3 error): the refusal was
   * recorded and published anyway (the rate limit fails open), and the manifest history says so
   * (`refusal-notice-unavailable`).
   */
  refusalNoticeUnavailable?: { instanceId: string; error: ErrorSummary }[] | undefined;
  /**
   * Set when the commands were sent but the manifest could not record them (S3 error after
   * retries): the capture runs; the manifest shows its hosts pending until their result or
   * the timed-out sweep (which then says the send was never recorded).
   */
  manifestNotUpdated?: ErrorSummary | undefined;
}

export interface CaptureClients {
  s3: S3Client;
  ssm: SSMClient;
  ec2: EC2Client;
  kms: KMSClient;
  sts: STSClient;
  sns: SNSClient;
  eventBridge: EventBridgeClient;
}

export interface CaptureDeps {
  clients: CaptureClients;
  config: TaplineConfig;
  logger: CoreLogger;
  now?: () => Date;
  newId?: (now: Date) => string;
  /** The verified identity of the caller (Lambda invoker ARN, CLI STS ARN), for the manifest. */
  invokedBy?: string | undefined;
  /** Lab only: the S3 endpoint the host script should use (document parameter EndpointUrl). */
  hostS3Endpoint?: string | undefined;
  /** Lab only: the host work directory (document parameter WorkDir). */
  hostWorkDir?: string | undefined;
  /** Rolling capture only: ceiling that replaces MAX_DURATION_SECONDS (operator-configured). */
  durationCeiling?: number | undefined;
  /** Rolling capture only: scheduled captures do not spend the hourly budget. */
  budgetExempt?: boolean | undefined;
  /** Rolling capture only: may take over a live lock held by a capture of this source ending soon. */
  takeOverEndingWithinSeconds?: number | undefined;
}

/** Seconds after a capture's planned end by which its host must have reported. */
export const REPORT_GRACE_SECONDS = 900;
/** SSM delivery timeout: a host that does not pick the command up within this fails fast. */
export const DELIVERY_TIMEOUT_SECONDS = 600;

export async function notifyDeps(deps: CaptureDeps) {
  return {
    eventBridge: deps.clients.eventBridge,
    sns: deps.clients.sns,
    eventBusName: deps.config.EVENT_BUS_NAME,
    topicArn: await resolveTopicArn(
      deps.clients.sts,
      deps.config.AWS_REGION,
      deps.config.NOTIFICATION_TOPIC,
    ),
    logger: deps.logger,
  };
}

export async function evidenceStore(deps: {
  clients: Pick<CaptureClients, 's3' | 'kms'>;
  config: TaplineConfig;
}): Promise<EvidenceStore> {
  return {
    s3: deps.clients.s3,
    bucket: deps.config.EVIDENCE_BUCKET,
    keyArn: await resolveKeyArn(deps.clients.kms, deps.config.EVIDENCE_KEY_ID),
    guardRetentionHours: deps.config.GUARD_RETENTION_HOURS,
  };
}

async function publish(
  deps: CaptureDeps,
  type: TaplineEventType,
  detail: Record<string, unknown>,
): Promise<void> {
  try {
    await publishEvent(await notifyDeps(deps), type, detail);
  } catch (error) {
    // Topic resolution failed: logged loudly, never lose the capture over a notification.
    deps.logger.error('notification failed', { type, error: String(error) });
  }
}

/**
 * Announces a host the capture core closed as timed out (the sweep, or a lock taken over before
 * its host reported): `Capture Updated`, and `Capture Finished` when that finished its capture.
 */
export async function announceTimedOut(
  deps: CaptureDeps,
  host: { captureId: string; instanceId: string },
  done: { manifest: CaptureManifest; finished: boolean },
  extra: Record<string, unknown> = {},
): Promise<void> {
  await publish(deps, 'Capture Updated', {
    captureId: host.captureId,
    instanceId: host.instanceId,
    status: 'timed-out',
    ...extra,
  });
  if (done.finished) {
    await publish(deps, 'Capture Finished', {
      captureId: host.captureId,
      state: done.manifest.state,
    });
  }
}

function fingerprintOf(request: CaptureRequest): string | undefined {
  return request.fingerprint ?? request.finding?.fingerprint;
}

/** What holds a host back: the holder as stored, until when, and what is wrong with it. */
interface Holding {
  holder: Lease | undefined;
  until?: Date | undefined;
  problem?: string | undefined;
}

/**
 * A live cooldown of `fingerprint` on a host, read without writing anything (liveness decided
 * by guards.ts leaseLiveness, as acquireLease and the notice markers decide it).
 */
async function liveCooldown(
  store: EvidenceStore,
  fingerprint: string,
  instanceId: string,
  at: Date,
): Promise<Holding | undefined> {
  const peeked = await peekLease(store, cooldownKey(fingerprint, instanceId), at);
  if (!peeked?.liveness.live) return undefined;
  return { holder: peeked.lease, until: peeked.liveness.until, problem: peeked.liveness.problem };
}

function cooldownRefusal(fingerprint: string, instanceId: string, holding: Holding): Refusal {
  const { holder, until, problem } = holding;
  const captureIdOf = typeof holder?.captureId === 'string' ? holder.captureId : undefined;
  return {
    instanceId,
    reason: 'cooldown' as const,
    message: `${fingerprint} already started a capture on ${instanceId} (${captureIdOf ?? '?'}); next allowed after ${until?.toISOString() ?? '?'}${problem ? ` (corrupt cooldown, held: ${problem})` : ''}`,
    details: {
      holder: captureIdOf,
      until: until?.toISOString(),
      ...(problem ? { corruptGuard: problem } : {}),
    },
  };
}

interface NoticeCheck {
  /** The capture IDs that reported this window; undefined: this refusal is to be recorded. */
  reportedBy?: string[] | undefined;
  /** Hosts whose refusal notice marker could not be read or claimed. */
  unavailable: { instanceId: string; error: ErrorSummary }[];
}

/**
 * Rate limit for refusal floods (a detector re-reporting one anomaly while its host cools
 * down): when every refusal is a cooldown refusal, only the first per fingerprint, host and
 * cooldown window is recorded (manifest) and published. Each host's first refusal creates a
 * notice marker next to the cooldown (IfNoneMatch, expiring with the cooldown); a request whose
 * hosts all have a notice already is not recorded. A marker that cannot be read or claimed
 * (S3 5xx, throttling, AccessDenied) fails open: the refusal is recorded and published as if it
 * were the first (a duplicate notice beats a lost one), and the failure is returned to be logged
 * and written to the manifest; it never escapes startCapture.
 */
async function alreadyReported(
  store: EvidenceStore,
  fingerprint: string | undefined,
  refused: Refusal[],
  captureId: string,
  at: Date,
  logger: CoreLogger,
): Promise<NoticeCheck> {
  const unavailable: NoticeCheck['unavailable'] = [];
  if (!fingerprint || refused.length === 0) return { unavailable };
  if (!refused.every((r) => r.reason === 'cooldown' && r.instanceId)) return { unavailable };
  const reporters: string[] = [];
  let first = false;
  await Promise.all(
    refused.map(async (r) => {
      const instanceId = r.instanceId!;
      const until = (r.details?.until as string | undefined) ?? at.toISOString();
      try {
        const claim = await claimNotice(store, refusalNoticeKey(fingerprint, instanceId), {
          purpose: 'refusal-notice',
          reporter: captureId,
          fingerprint,
          instanceId,
          at,
          until: new Date(until),
        });
        if (claim.first) {
          first = true;
          if (claim.replacedCorrupt) {
            logger.error('replaced a corrupt refusal-notice marker', {
              key: claim.key,
              problem: claim.replacedCorrupt,
              captureId,
            });
          }
        } else if (typeof claim.holder?.captureId === 'string') {
          reporters.push(claim.holder.captureId);
        }
      } catch (error) {
        // as the manifest keeps a failed AWS call: its HTTP status, a bounded message
        unavailable.push({
          instanceId,
          error: describeError(error, { status: true, maxMessageLength: 300 }),
        });
      }
    }),
  );
  if (first || unavailable.length > 0) return { unavailable };
  return { reportedBy: [...new Set(reporters)], unavailable };
}

function redactRequest(request: CaptureRequest): Record<string, unknown> {
  return JSON.parse(JSON.stringify(request)) as Record<string, unknown>;
}

/**
 * The capture core: validate, resolve targets, apply guards, write the manifest, send the SSM
 * command (≤ 50 instances per call), publish. Invalid requests throw (InvalidCaptureRequestError,
 * InvalidFilterError) and start nothing; every refusal (kill switch, limits, no target, host
 * offline, lock, cooldown, budget) is logged, returned, written to the manifest and published,
 * except repeated cooldown refusals: the first per fingerprint, host and cooldown window is
 * recorded, later ones are logged and returned with `recorded: false` (see alreadyReported).
 */
export async function startCapture(
  input: CaptureRequest | CaptureRequestInput,
  deps: CaptureDeps,
): Promise<CaptureOutcome> {
  const request = parseCaptureRequest(input);
  const now = deps.now ?? (() => new Date());
  const startedAt = now();
  const captureId = (deps.newId ?? newCaptureId)(startedAt);
  const config = deps.config;
  const logger = deps.logger;
  const durationSeconds = request.durationSeconds ?? config.DEFAULT_DURATION_SECONDS;
  const maxMegabytes = request.maxMegabytes ?? config.MAX_CAPTURE_MEGABYTES;
  const bpf = filterToBpf(request.filter);
  const requestedBy = request.requestedBy ?? deps.invokedBy ?? 'unknown';
  const fingerprint = fingerprintOf(request);
  const store = await evidenceStore(deps);
  // Every SendCommand parameter, checked against the document's allowedPatterns now: a value
  // SSM would refuse (moto does not check) starts nothing and takes no guard.
  const parameters = captureDocumentParameters({
    captureId,
    request,
    bpf,
    durationSeconds,
    maxMegabytes,
    bucket: config.EVIDENCE_BUCKET,
    keyArn: store.keyArn,
    region: config.AWS_REGION,
    minFreeMegabytes: config.MIN_FREE_MEGABYTES,
    hostS3Endpoint: deps.hostS3Endpoint,
    hostWorkDir: deps.hostWorkDir,
  });
  checkDocumentParameters(parameters);
  const refused: Refusal[] = [];
  const history: CaptureManifest['history'] = [
    { at: startedAt.toISOString(), event: 'requested', source: request.source, requestedBy },
  ];

  const manifest: CaptureManifest = {
    version: 1,
    captureId,
    state: 'pending',
    createdAt: startedAt.toISOString(),
    updatedAt: startedAt.toISOString(),
    request: redactRequest(request),
    requestedBy,
    invokedBy: deps.invokedBy,
    source: request.source,
    reason: request.reason,
    ticket: request.ticket,
    finding: request.finding,
    fingerprint,
    limits: { durationSeconds, maxMegabytes, bpf },
    targets: [],
    refused,
    ssm: { commandIds: [], documentName: config.CAPTURE_DOCUMENT_NAME },
    hosts: {},
    history,
  };

  /** The outcome of a refused request (extra: what the refusing step adds). */
  const refusedOutcome = (extra: Partial<CaptureOutcome> = {}): CaptureOutcome => ({
    captureId,
    state: 'refused',
    started: [],
    refused,
    manifestKey: manifestKey(captureId),
    durationSeconds,
    ...extra,
  });

  const refuseAll = async (refusal: Refusal): Promise<CaptureOutcome> => {
    refused.push(refusal);
    logger.warn('capture refused', { captureId, ...refusal });
    manifest.state = 'refused';
    history.push({ at: now().toISOString(), event: 'refused', reason: refusal.reason });
    await createManifest(store, manifest);
    await publish(deps, 'Capture Refused', {
      captureId,
      reason: refusal.reason,
      message: refusal.message,
      requestedBy,
      invokedBy: deps.invokedBy,
      source: request.source,
    });
    return refusedOutcome();
  };

  // 1. Kill switch and limits: nothing is resolved or locked when these refuse. Who may ask is
  // IAM's to decide (lambda:InvokeFunction on start-capture): Lambda does not tell a function
  // which principal invoked it, so an allow-list here could only check what the caller claims.
  if (!config.CAPTURES_ENABLED) {
    return refuseAll({
      reason: 'kill-switch',
      message: 'captures are disabled (CAPTURES_ENABLED=false): no new capture is started',
    });
  }
  const ceiling = deps.durationCeiling ?? config.MAX_DURATION_SECONDS;
  if (durationSeconds > ceiling) {
    return refuseAll({
      reason: 'duration-limit',
      message: `durationSeconds ${durationSeconds} is above the maximum ${ceiling}`,
      details: { durationSeconds, max: ceiling },
    });
  }
  if (maxMegabytes > config.MAX_CAPTURE_MEGABYTES) {
    return refuseAll({
      reason: 'bytes-limit',
      message: `maxMegabytes ${maxMegabytes} is above the maximum ${config.MAX_CAPTURE_MEGABYTES}`,
      details: { maxMegabytes, max: config.MAX_CAPTURE_MEGABYTES },
    });
  }

  // 2. Targets.
  let targets: ResolvedTarget[];
  try {
    const resolution = await resolveTargets(request.targets, {
      ec2: deps.clients.ec2,
      captureTag: config.CAPTURE_TAG,
      sensorTag: config.SENSOR_TAG,
      logger,
    });
    targets = resolution.targets;
    for (const s of resolution.skipped) {
      refused.push({ instanceId: s.instanceId, reason: s.reason, message: s.detail });
    }
  } catch (error) {
    if (isTaplineError(error) && error.code === 'NO_CAPTURE_TARGET') {
      return refuseAll({ reason: 'no-target', message: error.message, details: error.details });
    }
    throw error;
  }
  manifest.targets = targets.map((t) => ({ instanceId: t.instanceId, why: t.why, via: t.via }));
  history.push({
    at: now().toISOString(),
    event: 'targets-resolved',
    targets: targets.map((t) => t.instanceId),
  });

  // 3. SSM availability (unknown is reported, not fatal).
  const online = await checkSsmOnline(
    deps.clients.ssm,
    targets.map((t) => t.instanceId),
    logger,
  );
  const available: ResolvedTarget[] = [];
  for (const target of targets) {
    if (online.status[target.instanceId] === 'offline') {
      refused.push({
        instanceId: target.instanceId,
        reason: 'host-offline',
        message: `${target.instanceId} is not an online SSM managed instance`,
      });
    } else {
      available.push(target);
    }
  }

  // 4. Guards per host: lock, then cooldown, then budget; later failures roll back earlier ones.
  const endsAt = new Date(startedAt.getTime() + durationSeconds * 1000);
  const deadline = new Date(
    endsAt.getTime() + Math.min(REPORT_GRACE_SECONDS, config.LOCK_TTL_SECONDS) * 1000,
  );
  const lockExpiry = new Date(endsAt.getTime() + config.LOCK_TTL_SECONDS * 1000);
  const takeOverWindow = deps.takeOverEndingWithinSeconds;
  /**
   * The lock to write when we take a host's lock over (it had expired, or a rolling capture's
   * last seconds): no lock would name the previous holder any more, so the takeover write
   * itself carries every capture it leaves (`supersedes`); a taker that stops right after that
   * write loses none of them.
   */
  const takingOver = (lock: Lease, holder: Lease | undefined): Lease => {
    const supersedes = supersededBy(holder, captureId, isCaptureId);
    return supersedes.length > 0 ? { ...lock, supersedes } : lock;
  };
  /**
   * After a takeover: each capture the lock carries is closed now when its own manifest shows
   * the host open past its deadline; those still within their deadline stay carried in our
   * lock for the sweep and the next taker (the lock is rewritten only when some were closed).
   * Never refuses or fails this capture.
   */
  const settleTakenOver = async (lock: Lease, holder: Lease, etag: string): Promise<void> => {
    const key = lockKey(lock.instanceId);
    const carried: string[] = [];
    const carriedAtTakeOver = supersededBy(holder, captureId, isCaptureId);
    for (const previous of carriedAtTakeOver) {
      try {
        const done = await timeOutHost(store, previous, lock.instanceId, now, {
          lock: 'taken-over',
          key,
          by: captureId,
        });
        if (done.outcome === 'open') carried.push(previous);
        if (done.outcome !== 'closed') continue;
        logger.warn('capture host timed out: its lock was taken over', {
          captureId: previous,
          instanceId: lock.instanceId,
          takenOverBy: captureId,
        });
        await announceTimedOut(deps, { captureId: previous, instanceId: lock.instanceId }, done, {
          lockHeldBy: captureId,
        });
      } catch (error) {
        carried.push(previous);
        logger.error('could not close a capture whose lock was taken over', {
          captureId: previous,
          instanceId: lock.instanceId,
          takenOverBy: captureId,
          error: describeError(error, { status: true, maxMessageLength: 300 }),
        });
      }
    }
    if (carried.length === carriedAtTakeOver.length) return;
    const written = await putJson(
      store,
      key,
      (carried.length > 0 ? { ...lock, supersedes: carried } : lock) satisfies Lease,
      { ifMatch: etag },
      guardRetention(store, lock.expiresAt, startedAt),
    ).catch((error: unknown) => {
      // harmless: the closed ones stay carried, and the sweep finds them final
      logger.warn('could not drop closed superseded captures from the lock', {
        captureId,
        key,
        supersedes: carried,
        error: describeError(error, { status: true, maxMessageLength: 300 }),
      });
      return null;
    });
    if (written === undefined) {
      logger.warn('could not drop closed superseded captures from the lock: it changed', {
        captureId,
        key,
        supersedes: carried,
      });
    }
  };
  /** Releases the locks and cooldowns this capture took on `hosts` (what it holds only). */
  const giveBackGuards = async (hosts: ResolvedTarget[], because: string): Promise<void> => {
    for (const { instanceId } of hosts) {
      const keys = [
        lockKey(instanceId),
        ...(fingerprint && config.COOLDOWN_SECONDS > 0
          ? [cooldownKey(fingerprint, instanceId)]
          : []),
      ];
      for (const key of keys) {
        await releaseLease(store, key, captureId, now(), because).catch((error: unknown) =>
          logger.error('could not give back a capture guard', {
            captureId,
            instanceId,
            key,
            because,
            error: describeError(error, { status: true, maxMessageLength: 300 }),
          }),
        );
      }
    }
  };
  const guardHost = async (target: ResolvedTarget): Promise<ResolvedTarget | undefined> => {
    const id = target.instanceId;
    // A fingerprint still cooling down on this host is refused before the lock is touched:
    // a flood of identical findings then costs reads only (the lock/cooldown writes below
    // stay the atomic decision for requests that pass this check).
    if (fingerprint && config.COOLDOWN_SECONDS > 0) {
      const cooling = await liveCooldown(store, fingerprint, id, startedAt);
      if (cooling) {
        const key = cooldownKey(fingerprint, id);
        logCorruptGuard(logger, 'cooldown', { captureId, instanceId: id, key }, cooling);
        refused.push(cooldownRefusal(fingerprint, id, cooling));
        return undefined;
      }
    }
    const lock: Lease = {
      kind: 'lock',
      state: 'held',
      captureId,
      instanceId: id,
      createdAt: startedAt.toISOString(),
      expiresAt: lockExpiry.toISOString(),
      deadline: deadline.toISOString(),
      source: request.source,
      endsAt: endsAt.toISOString(),
    };
    const locked = await acquireLease(
      store,
      lockKey(id),
      lock,
      startedAt,
      (holder, liveness) =>
        // only a sound lease of the same source ending soon; a corrupt lock stays held
        takeOverWindow !== undefined &&
        liveness.problem === undefined &&
        holder?.source === request.source &&
        typeof holder.endsAt === 'string' &&
        Date.parse(holder.endsAt) - startedAt.getTime() <= takeOverWindow * 1000,
      { onTakeOver: (holder) => takingOver(lock, holder), uniqueHolder: true },
    );
    if (!locked.acquired) {
      logCorruptGuard(logger, 'lock', { captureId, instanceId: id, key: lockKey(id) }, locked);
      refused.push({
        instanceId: id,
        reason: 'host-busy',
        message: locked.problem
          ? `${id} has a corrupt capture lock, treated as held until ${locked.until?.toISOString() ?? '?'} (${locked.problem})`
          : `${id} is already capturing (${locked.holder?.captureId ?? 'unknown capture'} until ${locked.holder?.endsAt ?? locked.holder?.expiresAt ?? '?'})`,
        details: {
          holder: locked.holder?.captureId,
          ...(locked.problem
            ? { corruptGuard: locked.problem, until: locked.until?.toISOString() }
            : {}),
        },
      });
      return undefined;
    }
    if (locked.tookOverFrom !== undefined) {
      await settleTakenOver(lock, locked.tookOverFrom, locked.etag);
    }
    if (fingerprint && config.COOLDOWN_SECONDS > 0) {
      const cooldown: Lease = {
        kind: 'cooldown',
        state: 'held',
        captureId,
        instanceId: id,
        fingerprint,
        createdAt: startedAt.toISOString(),
        expiresAt: new Date(startedAt.getTime() + config.COOLDOWN_SECONDS * 1000).toISOString(),
      };
      const cooled = await acquireLease(
        store,
        cooldownKey(fingerprint, id),
        cooldown,
        startedAt,
        undefined,
        { uniqueHolder: true },
      );
      if (!cooled.acquired) {
        await releaseLease(store, lockKey(id), captureId, now(), 'cooldown refused the capture');
        const key = cooldownKey(fingerprint, id);
        logCorruptGuard(logger, 'cooldown', { captureId, instanceId: id, key }, cooled);
        refused.push(cooldownRefusal(fingerprint, id, cooled));
        return undefined;
      }
    }
    if (!deps.budgetExempt) {
      const slot = await spendBudget(
        store,
        config.HOURLY_CAPTURE_BUDGET,
        { captureId, instanceId: id, at: startedAt.toISOString() },
        startedAt,
      );
      if (slot === undefined) {
        await giveBackGuards([target], 'budget refused the capture');
        refused.push({
          instanceId: id,
          reason: 'budget',
          message: `the hourly capture budget (${config.HOURLY_CAPTURE_BUDGET}) is spent`,
        });
        return undefined;
      }
    }
    return target;
  };
  const guarded = await Promise.all(
    available.map(async (target): Promise<ResolvedTarget | undefined> => {
      try {
        return await guardHost(target);
      } catch (error) {
        // An S3 error part-way (lock taken, cooldown or budget failed): this host is refused
        // with the cause, and what it took is given back (releaseLease only releases what this
        // capture holds), so a transient error neither throws away the other hosts nor leaves
        // guards naming a capture that never ran.
        const id = target.instanceId;
        const cause = describeError(error, { status: true, maxMessageLength: 300 });
        await giveBackGuards([target], 'guard error');
        refused.push({
          instanceId: id,
          reason: 'guard-failed',
          message: `the capture guards for ${id} could not be applied: ${cause.name}${cause.status ? ` (HTTP ${cause.status})` : ''}: ${cause.message}`,
          details: { error: cause },
        });
        return undefined;
      }
    }),
  );
  const cleared = guarded.filter((t): t is ResolvedTarget => t !== undefined);
  const notices: NoticeCheck =
    cleared.length === 0
      ? await alreadyReported(store, fingerprint, refused, captureId, startedAt, deps.logger)
      : { unavailable: [] };
  const reportedBy = notices.reportedBy;
  if (notices.unavailable.length > 0) {
    logger.error('refusal notice marker unavailable; recording and publishing the refusal anyway', {
      captureId,
      fingerprint,
      unavailable: notices.unavailable,
    });
    history.push({
      at: now().toISOString(),
      event: 'refusal-notice-unavailable',
      unavailable: notices.unavailable,
    });
  }
  if (reportedBy) {
    logger.info(
      'capture refused (cooldown); already reported for this window, not recorded again',
      {
        captureId,
        fingerprint,
        hosts: refused.map((r) => r.instanceId),
        reportedBy,
        suppressedRefusals: 1,
      },
    );
    return refusedOutcome({
      ssmAvailabilityUnknown: online.unknownBecause,
      recorded: false,
      reportedBy,
    });
  }
  for (const r of refused) logger.warn('capture refused for a host', { captureId, ...r });

  for (const target of targets) {
    const refusal = refused.find((r) => r.instanceId === target.instanceId);
    manifest.hosts[target.instanceId] = {
      status: refusal ? 'refused' : 'pending',
      why: target.why,
      ssmAvailability: online.status[target.instanceId],
      deadline: refusal ? undefined : deadline.toISOString(),
      files: [],
      errors: refusal ? [`${refusal.reason}: ${refusal.message}`] : [],
    } satisfies ManifestHost;
  }
  if (online.unknownBecause) {
    history.push({
      at: now().toISOString(),
      event: 'ssm-status-unknown',
      because: online.unknownBecause,
    });
  }
  if (cleared.length === 0) {
    manifest.state = 'refused';
    history.push({
      at: now().toISOString(),
      event: 'refused',
      reasons: refused.map((r) => r.reason),
    });
    await createManifest(store, manifest);
    await publish(deps, 'Capture Refused', {
      captureId,
      refused,
      requestedBy,
      invokedBy: deps.invokedBy,
      source: request.source,
      ...(notices.unavailable.length > 0
        ? { refusalNoticeUnavailable: notices.unavailable.map((u) => u.instanceId) }
        : {}),
    });
    return refusedOutcome({
      ssmAvailabilityUnknown: online.unknownBecause,
      ...(notices.unavailable.length > 0 ? { refusalNoticeUnavailable: notices.unavailable } : {}),
    });
  }

  // 5. Manifest first (custody records the intent before anything runs), then SSM.
  const documentVersion = await deps.clients.ssm
    .send(new DescribeDocumentCommand({ Name: config.CAPTURE_DOCUMENT_NAME }))
    .then((d) => d.Document?.DefaultVersion ?? d.Document?.DocumentVersion)
    .catch((error) => {
      logger.warn('DescribeDocument failed; sending $DEFAULT', { error: String(error) });
      return undefined;
    });
  manifest.ssm.documentVersion = documentVersion;
  manifest.ssm.parameters = Object.fromEntries(
    Object.entries(parameters).map(([k, v]) => [k, v[0]!]),
  );
  history.push({
    at: now().toISOString(),
    event: 'guards-passed',
    hosts: cleared.map((t) => t.instanceId),
  });
  // No command goes out without its custody record: if the manifest cannot be written, the
  // guards taken for it are given back (they would otherwise hold the hosts, and refuse the
  // finding's next report, in the name of a capture that does not exist) and the error is thrown.
  // A create whose answer was lost (S3 stored it; the SDK's retry then got 412, or every retry
  // failed) has written this very manifest: that is our record, not a collision, and the capture
  // goes on (giving the guards back would leave it pending with nothing to ever close it).
  const isOurManifest = async (): Promise<boolean> => {
    const stored = await readManifest(store, captureId).catch(() => undefined);
    return stored !== undefined && JSON.stringify(stored.manifest) === JSON.stringify(manifest);
  };
  let created: boolean;
  try {
    created = (await createManifest(store, manifest)) !== undefined || (await isOurManifest());
  } catch (error) {
    if (!(await isOurManifest())) {
      await giveBackGuards(cleared, 'the manifest could not be written');
      throw error;
    }
    created = true;
  }
  if (!created) {
    await giveBackGuards(cleared, 'a manifest with this capture ID already exists');
    throw new CaptureIdCollisionError(captureId);
  }

  const started: StartedHost[] = [];
  const comment = `Tapline ${captureId}: ${request.reason}`.slice(0, 100);
  for (let i = 0; i < cleared.length; i += 50) {
    const batch = cleared.slice(i, i + 50);
    const ids = batch.map((t) => t.instanceId);
    try {
      const out = await deps.clients.ssm.send(
        new SendCommandCommand({
          DocumentName: config.CAPTURE_DOCUMENT_NAME,
          ...(documentVersion ? { DocumentVersion: documentVersion } : {}),
          InstanceIds: ids,
          Parameters: parameters,
          Comment: comment,
          TimeoutSeconds: DELIVERY_TIMEOUT_SECONDS,
          MaxConcurrency: '100%',
          MaxErrors: '100%',
        }),
      );
      const commandId = out.Command?.CommandId;
      if (!commandId) throw new Error('SendCommand returned no CommandId');
      for (const t of batch) started.push({ instanceId: t.instanceId, why: t.why, commandId });
    } catch (error) {
      logger.error('SendCommand failed', { captureId, instances: ids, error: String(error) });
      for (const t of batch) {
        refused.push({
          instanceId: t.instanceId,
          reason: 'send-failed',
          message: `SendCommand failed: ${String(error).slice(0, 300)}`,
        });
        // Nothing ran: the lock, and the fingerprint's cooldown (it must not hold back the next
        // report of the same finding with a refusal naming this capture), are given back.
        await giveBackGuards([t], 'SendCommand failed');
      }
    }
  }

  const commandIds = [...new Set(started.map((s) => s.commandId))];
  // The commands are out: whatever happens to this write, the capture runs and the caller must
  // hear that (an exception here made a running capture look like one that never started).
  let manifestNotUpdated: ErrorSummary | undefined;
  const written = await updateManifest(store, captureId, now, (m) => {
    m.ssm.commandId = commandIds[0];
    m.ssm.commandIds = commandIds;
    m.refused = refused;
    for (const s of started) {
      const host = m.hosts[s.instanceId]!;
      host.status = 'running';
      host.commandId = s.commandId;
      host.startedAt = startedAt.toISOString();
    }
    for (const r of refused) {
      const host = r.instanceId ? m.hosts[r.instanceId] : undefined;
      if (host && host.status === 'pending') {
        host.status = 'failed';
        host.errors.push(`${r.reason}: ${r.message}`);
      }
    }
    m.state = started.length > 0 ? 'running' : overallState(m);
    m.history.push({ at: now().toISOString(), event: 'command-sent', commandIds });
    return m;
  }).catch((error: unknown) => {
    manifestNotUpdated = describeError(error, { status: true, maxMessageLength: 300 });
    logger.error('the manifest could not record the sent commands; the capture runs', {
      captureId,
      started: started.map((s) => s.instanceId),
      commandIds,
      error: manifestNotUpdated,
    });
    return undefined;
  });

  logger.info('capture started', {
    captureId,
    started: started.map((s) => s.instanceId),
    refused: refused.length,
  });
  if (started.length > 0) {
    await publish(deps, 'Capture Started', {
      captureId,
      hosts: started,
      requestedBy,
      invokedBy: deps.invokedBy,
      reason: request.reason,
      source: request.source,
      durationSeconds,
      filter: bpf,
      documentName: config.CAPTURE_DOCUMENT_NAME,
      documentVersion,
      commandIds,
      ...(manifestNotUpdated ? { manifestNotUpdated } : {}),
    });
  }
  if (refused.length > 0) {
    await publish(deps, 'Capture Refused', {
      captureId,
      refused,
      requestedBy,
      invokedBy: deps.invokedBy,
      source: request.source,
      partial: started.length > 0,
    });
  }
  return {
    captureId,
    state: written?.state ?? (started.length > 0 ? 'running' : 'failed'),
    started,
    refused,
    manifestKey: manifestKey(captureId),
    durationSeconds,
    deadline: started.length > 0 ? deadline.toISOString() : undefined,
    ssmAvailabilityUnknown: online.unknownBecause,
    ...(manifestNotUpdated ? { manifestNotUpdated } : {}),
  };
}
