import { HeadObjectCommand, ListObjectVersionsCommand } from '@aws-sdk/client-s3';
import {
  GetCommandInvocationCommand,
  type GetCommandInvocationCommandOutput,
} from '@aws-sdk/client-ssm';
import { z } from 'zod';
import { describeError, isTaplineError, MalformedEventError } from '../errors.ts';
import {
  heldLocks,
  instanceOfLockKey,
  lockCaptureIdHistory,
  lockKey,
  logCorruptGuard,
  readLease,
  releaseLease,
  supersededBy,
} from '../evidence/guards.ts';
import {
  type CaptureManifest,
  type HostStatus,
  type ManifestFile,
  overallState,
  readManifest,
  TERMINAL_HOST_STATUSES,
  timeOutHost,
  updateManifest,
} from '../evidence/manifest.ts';
import type { EvidenceStore } from '../evidence/store.ts';
import { publishEvent } from '../notify/publish.ts';
import { type HostReport, parseHostReport } from './host-report.ts';
import { CAPTURE_ID_PATTERN, isCaptureId } from './ids.ts';
import { announceTimedOut, type CaptureDeps, evidenceStore, notifyDeps } from './start-capture.ts';

/**
 * track-capture's core. The EventBridge "EC2 Command Invocation Status-change Notification"
 * says a host's command changed state; we read the invocation (GetCommandInvocation), parse the
 * script's report line, verify what is actually in the bucket (HeadObject per pcap: version,
 * size, metadata hash, S3 SHA-256 checksum), rewrite the manifest, release the host's lock and
 * publish. Hosts that never report are marked timed out by sweepTimedOutCaptures.
 */

export const commandStatusEventSchema = z.object({
  'detail-type': z.literal('EC2 Command Invocation Status-change Notification'),
  source: z.literal('aws.ssm'),
  detail: z.object({
    'command-id': z.string().regex(/^[0-9a-f-]{36}$/),
    'instance-id': z.string().regex(/^(i|mi)-[0-9a-f]{8,17}$/),
    'document-name': z.string().min(1).max(256),
    status: z.string().min(1).max(32),
    'requested-date-time': z.string().optional(),
  }),
});

export type CommandStatusEvent = z.infer<typeof commandStatusEventSchema>;

export function parseCommandStatusEvent(event: unknown): CommandStatusEvent {
  const result = commandStatusEventSchema.safeParse(event);
  if (!result.success) {
    throw new MalformedEventError('not an SSM command invocation status-change event', {
      issues: result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`),
    });
  }
  return result.data;
}

const TERMINAL_SSM = new Set([
  'Success',
  'Failed',
  'TimedOut',
  'Cancelled',
  'DeliveryTimedOut',
  'ExecutionTimedOut',
  'Undeliverable',
  'Terminated',
  'InvalidPlatform',
  'AccessDenied',
]);

export interface HostResultInput {
  captureId: string;
  instanceId: string;
  commandId?: string | undefined;
  /** SSM's status for the invocation (Success, Failed, TimedOut, ...). */
  ssmStatus: string;
  /** The script's stdout (StandardOutputContent, or the lab agent's captured stdout). */
  stdout: string;
  stderrTail?: string | undefined;
}

export interface TrackOutcome {
  captureId?: string | undefined;
  instanceId: string;
  hostStatus?: HostStatus | undefined;
  state?: CaptureManifest['state'] | undefined;
  ignored?: string | undefined;
  lockReleased?: boolean | undefined;
}

function hostStatusFrom(ssmStatus: string, report: HostReport | undefined): HostStatus {
  if (report) {
    if (report.status === 'success') return 'success';
    if (report.status === 'partial') return 'partial';
    if (report.status === 'refused') return 'refused';
    return 'failed';
  }
  if (ssmStatus === 'TimedOut' || ssmStatus === 'ExecutionTimedOut') return 'timed-out';
  return 'failed';
}

/** What is in the bucket for this host: the latest version of each pcap, verified. */
async function verifiedFiles(
  store: EvidenceStore,
  captureId: string,
  instanceId: string,
  report: HostReport | undefined,
  errors: string[],
): Promise<ManifestFile[]> {
  const prefix = `pcaps/${captureId}/${instanceId}/`;
  const latest = new Map<string, string | undefined>();
  let KeyMarker: string | undefined;
  let VersionIdMarker: string | undefined;
  do {
    const out = await store.s3.send(
      new ListObjectVersionsCommand({
        Bucket: store.bucket,
        Prefix: prefix,
        KeyMarker,
        VersionIdMarker,
      }),
    );
    for (const v of out.Versions ?? []) {
      if (v.Key && v.IsLatest) latest.set(v.Key, v.VersionId);
    }
    KeyMarker = out.IsTruncated ? out.NextKeyMarker : undefined;
    VersionIdMarker = out.IsTruncated ? out.NextVersionIdMarker : undefined;
  } while (KeyMarker);
  const reported = new Map((report?.files ?? []).map((f) => [f.key, f]));
  const files: ManifestFile[] = [];
  for (const [key, versionId] of [...latest].sort(([a], [b]) => a.localeCompare(b))) {
    const head = await store.s3.send(
      new HeadObjectCommand({
        Bucket: store.bucket,
        Key: key,
        ...(versionId && versionId !== 'null' ? { VersionId: versionId } : {}),
        ChecksumMode: 'ENABLED',
      }),
    );
    const metaHash = head.Metadata?.sha256 ?? '';
    const checksumHex = head.ChecksumSHA256
      ? Buffer.from(head.ChecksumSHA256, 'base64').toString('hex')
      : '';
    const host = reported.get(key);
    const verified =
      /^[0-9a-f]{64}$/.test(metaHash) &&
      checksumHex === metaHash &&
      (host === undefined || host.sha256 === metaHash);
    if (!verified) {
      errors.push(
        `integrity: ${key} metadata sha256 ${metaHash || '(none)'}, S3 checksum ${checksumHex || '(none)'}, host report ${host?.sha256 ?? '(not reported)'}`,
      );
    }
    if (head.ServerSideEncryption !== 'aws:kms') errors.push(`${key} is not SSE-KMS encrypted`);
    // A complete report lists every file the host uploaded (a failed attempt that reached S3
    // after all is in its unsent list): anything else under the host's prefix is not the host's
    // word, and is said so rather than recorded as its evidence without comment.
    if (
      report &&
      !report.filesOmitted &&
      host === undefined &&
      !report.unsent.some((u) => u.key === key)
    ) {
      errors.push(`${key} is in the bucket but not in the host's report`);
    }
    const num = (v: string | undefined) => (v !== undefined && v !== '' ? Number(v) : undefined);
    files.push({
      key,
      versionId: head.VersionId ?? versionId,
      size: head.ContentLength ?? 0,
      sha256: metaHash,
      s3ChecksumSha256: head.ChecksumSHA256,
      lookback: head.Metadata?.lookback === 'true',
      start: num(head.Metadata?.['time-start']),
      end: num(head.Metadata?.['time-end']),
      verified,
    });
    reported.delete(key);
  }
  for (const missing of reported.keys()) {
    errors.push(`the host reported ${missing} but it is not in the bucket`);
  }
  return files;
}

/**
 * Applies one host's final result to the manifest (shared by track-capture and the lab agent):
 * verified files, counts, errors, status; releases the host's lock; publishes. Duplicate
 * deliveries for a host that is already final change nothing (they only release a lock this
 * capture still holds); a result of another command than the host's is ignored and leaves the
 * lock; a host the timed-out sweep closed still takes its late result (the time-out is kept).
 */
export async function applyHostResult(
  input: HostResultInput,
  deps: CaptureDeps,
): Promise<TrackOutcome> {
  const now = deps.now ?? (() => new Date());
  const store = await evidenceStore(deps);
  let report: HostReport | undefined;
  const errors: string[] = [];
  try {
    report = parseHostReport(input.stdout);
    if (report.captureId !== input.captureId || report.instanceId !== input.instanceId) {
      errors.push(
        `the report names ${report.captureId}/${report.instanceId}, expected ${input.captureId}/${input.instanceId}`,
      );
      report = undefined;
    }
  } catch (error) {
    // what exactly is wrong (the fields that failed, the start of a line that is not JSON): a
    // responder must be able to tell a truncated output from a script of another version
    const details = isTaplineError(error) ? error.details : {};
    const issues = Array.isArray(details.issues) ? (details.issues as unknown[]).slice(0, 5) : [];
    const why = [
      ...issues.map(String),
      ...(typeof details.error === 'string' ? [details.error] : []),
      ...(typeof details.line === 'string'
        ? [`line starts ${JSON.stringify(details.line.slice(0, 80))}`]
        : []),
    ];
    errors.push(
      `no usable report from the host: ${(error as Error).message}${why.length > 0 ? ` (${why.join('; ')})` : ''}`.slice(
        0,
        1000,
      ),
    );
    if (input.stderrTail) errors.push(`stderr: ${input.stderrTail.slice(-500)}`);
  }
  const status = hostStatusFrom(input.ssmStatus, report);
  const files = await verifiedFiles(store, input.captureId, input.instanceId, report, errors);
  if (files.some((f) => f.verified === false) && status === 'success')
    errors.push('integrity check failed');
  const notes: string[] = [];
  // Files the host reported that are not all safely in the bucket (not there, failing their
  // hashes, not SSE-KMS) or that it had to leave on its disk: the capture is not a plain success.
  for (const u of report?.unsent ?? []) {
    const arrived = files.find((f) => f.key === u.key);
    if (arrived?.verified && arrived.sha256 === u.sha256) {
      // the host gave up on the upload but S3 had taken it: the evidence is there (noted only)
      notes.push(
        `${u.key} is in the bucket although the host kept it after a failed upload (${u.path})`,
      );
    } else {
      errors.push(`${u.key} was not uploaded: the host kept it at ${u.path}`);
    }
  }
  const evidenceIncomplete = errors.length > 0 && report !== undefined;
  errors.push(...notes);
  let finishedNow = false;
  type Applied = 'no-host' | 'already-final' | 'other-command' | 'applied';
  // set by the change below (which may run more than once); read after the write
  let applied = 'no-host' as Applied;
  const written = await updateManifest(store, input.captureId, now, (m) => {
    finishedNow = false;
    applied = 'no-host';
    const host = m.hosts[input.instanceId];
    if (!host) return undefined;
    // A host the sweep timed out (it records no SSM status: only a delivered result does) may
    // still report late: what it reports is evidence and is recorded, the time-out staying in
    // the errors and the history. Any other final status is final (duplicates change nothing).
    const afterTimeOut = host.status === 'timed-out' && host.ssmStatus === undefined;
    if (TERMINAL_HOST_STATUSES.includes(host.status) && !afterTimeOut) {
      applied = 'already-final';
      return undefined;
    }
    if (input.commandId && host.commandId && host.commandId !== input.commandId) {
      applied = 'other-command';
      return undefined;
    }
    applied = 'applied';
    host.status = evidenceIncomplete && status === 'success' ? 'partial' : status;
    host.ssmStatus = input.ssmStatus;
    host.endedAt = now().toISOString();
    host.files = files;
    host.interface = report?.interface;
    host.tools = report?.tools;
    host.bytes = files.reduce((sum, f) => sum + f.size, 0);
    host.packetsCaptured = report?.packetsCaptured ?? null;
    host.packetsReceivedByFilter = report?.packetsReceivedByFilter ?? null;
    host.packetsDroppedByKernel = report?.packetsDroppedByKernel ?? null;
    host.unsent = report?.unsent ?? [];
    // The look-back report (which ring files covered the finding's time range, how completely):
    // kept per host; readers tolerate its absence.
    if (report?.lookback) host.lookback = report.lookback;
    // What of the report could not be kept as sent (a bad `tools` entry) is said, not lost.
    host.errors = [
      ...host.errors,
      ...(report?.errors ?? []),
      ...(report?.reportProblems ?? []),
      ...errors,
    ];
    m.history.push({
      at: now().toISOString(),
      event: 'host-finished',
      instanceId: input.instanceId,
      status: host.status,
      ssmStatus: input.ssmStatus,
      files: files.length,
      ...(afterTimeOut ? { afterTimeOut: true } : {}),
    });
    const before = m.state;
    m.state = overallState(m);
    if (m.state !== 'running' && m.state !== 'pending' && before !== m.state) {
      finishedNow = true;
      m.history.push({ at: now().toISOString(), event: 'capture-finished', state: m.state });
    }
    return m;
  });
  if (!written || applied !== 'applied') {
    // Nothing of this delivery was recorded and nothing is published again. A status event of
    // another command leaves the lock alone (it must not free the host while the capture's own
    // command still runs); a redelivery for a host already final releases the lock in case the
    // delivery that recorded it stopped between its two writes (releaseLease only releases a
    // lock this capture still holds).
    const host = written?.hosts[input.instanceId];
    const lockReleased =
      applied === 'already-final'
        ? await releaseLease(
            store,
            lockKey(input.instanceId),
            input.captureId,
            now(),
            `host result already recorded (${host?.status})`,
          )
        : undefined;
    return {
      captureId: input.captureId,
      instanceId: input.instanceId,
      hostStatus: host?.status,
      state: written?.state,
      ...(lockReleased !== undefined ? { lockReleased } : {}),
      ignored:
        applied === 'other-command'
          ? `command ${input.commandId} is not the capture's command ${host?.commandId} on this host`
          : applied === 'already-final'
            ? `the host's result is already recorded (${host?.status})`
            : 'no such capture or host',
    };
  }
  const lockReleased = await releaseLease(
    store,
    lockKey(input.instanceId),
    input.captureId,
    now(),
    `host reported ${status}`,
  );
  const host = written.hosts[input.instanceId]!;
  const n = await notifyDeps(deps).catch(() => undefined);
  if (n) {
    await publishEvent(n, 'Capture Updated', {
      captureId: input.captureId,
      instanceId: input.instanceId,
      status: host.status,
      files: host.files.length,
      bytes: host.bytes,
      packetsCaptured: host.packetsCaptured,
      packetsDroppedByKernel: host.packetsDroppedByKernel,
      errors: host.errors.slice(0, 10),
    });
    if (finishedNow) {
      await publishEvent(n, 'Capture Finished', {
        captureId: input.captureId,
        state: written.state,
        hosts: Object.fromEntries(Object.entries(written.hosts).map(([id, h]) => [id, h.status])),
        requestedBy: written.requestedBy,
        invokedBy: written.invokedBy,
      });
    }
  }
  return {
    captureId: input.captureId,
    instanceId: input.instanceId,
    hostStatus: host.status,
    state: written.state,
    lockReleased,
  };
}

/** Handles one EventBridge status-change event end to end. */
export async function trackCommandStatus(event: unknown, deps: CaptureDeps): Promise<TrackOutcome> {
  const parsed = parseCommandStatusEvent(event);
  const { detail } = parsed;
  const instanceId = detail['instance-id'];
  const docName = detail['document-name'];
  if (
    docName !== deps.config.CAPTURE_DOCUMENT_NAME &&
    !docName.endsWith(`/${deps.config.CAPTURE_DOCUMENT_NAME}`)
  ) {
    return { instanceId, ignored: `document ${docName} is not the Tapline capture document` };
  }
  if (!TERMINAL_SSM.has(detail.status)) {
    return { instanceId, ignored: `status ${detail.status} is not final` };
  }
  let invocation: GetCommandInvocationCommandOutput;
  try {
    invocation = await deps.clients.ssm.send(
      new GetCommandInvocationCommand({ CommandId: detail['command-id'], InstanceId: instanceId }),
    );
  } catch (error) {
    const name = (error as { name?: string }).name;
    if (name === 'InvocationDoesNotExist' || name === 'InvalidCommandId') {
      deps.logger.warn('status change for an invocation SSM does not know', { detail });
      return {
        instanceId,
        ignored: `SSM has no invocation ${detail['command-id']} on ${instanceId}`,
      };
    }
    throw error;
  }
  const stdout = invocation.StandardOutputContent ?? '';
  const fromComment = /\b(cap-\d{8}T\d{6}Z-[0-9a-f]{8})\b/.exec(invocation.Comment ?? '')?.[1];
  let fromReport: string | undefined;
  try {
    fromReport = parseHostReport(stdout).captureId;
  } catch {
    fromReport = undefined;
  }
  const captureId = fromComment ?? fromReport;
  if (!captureId || !CAPTURE_ID_PATTERN.test(captureId)) {
    deps.logger.warn('status change for a command with no Tapline capture ID', { detail });
    return { instanceId, ignored: 'no capture ID in the command comment or output' };
  }
  return applyHostResult(
    {
      captureId,
      instanceId,
      commandId: detail['command-id'],
      ssmStatus: invocation.Status ?? detail.status,
      stdout,
      stderrTail: invocation.StandardErrorContent?.slice(-1000),
    },
    deps,
  );
}

/** A host the timed-out sweep closed; `lockCorrupt`: its lock was corrupt (and stays held). */
export interface TimedOutHost {
  captureId: string;
  instanceId: string;
  lockCorrupt?: string | undefined;
}

/**
 * Marks hosts that never reported as timed out: every held lock past its deadline (capture end
 * + grace) whose manifest still shows the host running. A corrupt lock is not believed and not
 * released (it holds its host until `until`), but the captures its key has named (its current
 * and recent versions: hints only) are each closed when their own manifest shows this host open
 * past the manifest's deadline, so no capture stays "running" forever behind a damaged lock.
 * The captures a lock carries as superseded (`supersedes`: taken over before their host
 * reported), held or already released, are closed the same way, by their own manifest deadline.
 * One host that cannot be closed (an unreadable manifest, an S3 error) is logged with its cause
 * and left for the next run; it never stops the others. Runs on every track-capture and
 * rolling-capture invocation (and on track-capture's own schedule); returns what it closed.
 */
export async function sweepTimedOutCaptures(deps: CaptureDeps): Promise<TimedOutHost[]> {
  const now = deps.now ?? (() => new Date());
  const store = await evidenceStore(deps);
  const closed: TimedOutHost[] = [];
  const cannotClose = (where: Record<string, unknown>, error: unknown) =>
    deps.logger.error('timed-out sweep could not close a host', {
      ...where,
      error: describeError(error, { status: true, maxMessageLength: 300 }),
    });
  const announce = async (
    host: TimedOutHost,
    done: { manifest: CaptureManifest; finished: boolean },
  ) => {
    closed.push(host);
    deps.logger.warn('capture host timed out', { ...host });
    await announceTimedOut(
      deps,
      host,
      done,
      host.lockCorrupt ? { lockCorrupt: host.lockCorrupt } : {},
    );
  };
  // One read per superseded capture and run: a rolling capture's hosts all carry the same
  // previous capture, and only a host open past its deadline needs the conditional write.
  const seen = new Map<string, Promise<CaptureManifest | undefined>>();
  const mayBeOverdue = async (captureId: string, instanceId: string): Promise<boolean> => {
    if (!seen.has(captureId)) {
      seen.set(
        captureId,
        readManifest(store, captureId).then((r) => r?.manifest),
      );
    }
    const host = (await seen.get(captureId))?.hosts[instanceId];
    if (!host || TERMINAL_HOST_STATUSES.includes(host.status)) return false;
    const deadline = typeof host.deadline === 'string' ? Date.parse(host.deadline) : Number.NaN;
    return deadline <= now().getTime();
  };
  for (const lock of await heldLocks(store, now(), { withCarrying: true })) {
    if (lock.corrupt) {
      // Its captureId, host and deadline cannot be trusted: it holds its host until `until`
      // (as startCapture holds it), and it is never released on its word.
      logCorruptGuard(deps.logger, 'lock', { key: lock.key }, lock);
      const instanceId = instanceOfLockKey(lock.key);
      if (!instanceId) continue;
      let hints: string[];
      try {
        hints = await lockCaptureIdHistory(store, lock.key);
      } catch (error) {
        // e.g. no s3:ListBucketVersions / s3:GetObjectVersion on locks/*: the current object
        // (when it still names a capture) is the only hint left
        deps.logger.error('could not read the versions of a corrupt lock; using its current body', {
          key: lock.key,
          instanceId,
          error: describeError(error, { status: true, maxMessageLength: 300 }),
        });
        try {
          const current = (await readLease(store, lock.key))?.lease?.captureId;
          hints = typeof current === 'string' ? [current] : [];
        } catch (again) {
          cannotClose({ key: lock.key, instanceId }, again);
          continue;
        }
      }
      for (const captureId of hints.filter(isCaptureId)) {
        try {
          const done = await timeOutHost(store, captureId, instanceId, now, {
            lock: 'corrupt',
            key: lock.key,
            problem: lock.problem,
            until: lock.until,
          });
          if (done.outcome === 'closed') {
            await announce({ captureId, instanceId, lockCorrupt: lock.problem }, done);
          }
        } catch (error) {
          cannotClose({ key: lock.key, captureId, instanceId }, error);
        }
      }
      continue;
    }
    const { key, lease } = lock;
    // earlier captures whose lock this one took over before their host reported
    for (const captureId of supersededBy({ supersedes: lease.supersedes }, '', isCaptureId)) {
      try {
        if (!(await mayBeOverdue(captureId, lease.instanceId))) continue;
        const done = await timeOutHost(store, captureId, lease.instanceId, now, {
          lock: 'taken-over',
          key,
          by: lease.captureId,
          released: lock.released === true,
        });
        if (done.outcome === 'closed') {
          await announce({ captureId, instanceId: lease.instanceId }, done);
        }
      } catch (error) {
        cannotClose({ key, captureId, instanceId: lease.instanceId }, error);
      }
    }
    // a released lock is here only for the captures it carries: its own capture is done
    if (lock.released) continue;
    const deadline = Date.parse(lease.deadline ?? lease.expiresAt);
    if (!(deadline <= now().getTime())) continue;
    const where = { key, captureId: lease.captureId, instanceId: lease.instanceId };
    try {
      const done = await timeOutHost(store, lease.captureId, lease.instanceId, now, {
        lock: 'sound',
        deadline: lease.deadline ?? lease.expiresAt,
      });
      await releaseLease(store, key, lease.captureId, now(), 'timed out');
      if (done.outcome === 'closed') {
        await announce({ captureId: lease.captureId, instanceId: lease.instanceId }, done);
      }
    } catch (error) {
      cannotClose(where, error);
    }
  }
  return closed;
}
