import { randomBytes } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import { type CaptureRequest, parseCaptureRequest } from '../capture/request.ts';
import {
  CorruptFlowLogError,
  describeError,
  isTaplineError,
  MalformedEventError,
} from '../errors.ts';
import type { EvidenceStore } from '../evidence/store.ts';
import { flowLinesWasmProblem } from '../flowlogs/flow-lines-wasm.ts';
import { type FlowLogFormat, resolveFlowLogFormat } from '../flowlogs/format.ts';
import { FlowScanner, type ScanStats } from '../flowlogs/scanner.ts';
import { decodeSubscriptionData, isCloudWatchLogsEvent } from '../flowlogs/sources/cloudwatch.ts';
import {
  isS3Event,
  type S3ObjectRef,
  s3ObjectsFromEvent,
  scanS3Object,
} from '../flowlogs/sources/s3.ts';
import { mapLimit } from '../map-limit.ts';
import {
  claimNotice,
  findingNoticeKey,
  type NoticeClaim,
  releaseNotice,
} from '../notify/notice-marker.ts';
import { type NotifyDeps, type PublishResult, publishEvent } from '../notify/publish.ts';
import type { CoreLogger } from '../observability.ts';
import type { RulesConfig } from '../rules/config.ts';
import { type EngineStats, RuleEngine } from '../rules/engine.ts';
import { type Finding, toFinding } from './finding.ts';

/**
 * The detector core: flow-log batches → rules → findings → notifications → capture requests.
 * The same code runs in the Lambda handler (CloudWatch Logs subscription, S3/EventBridge), in
 * `tapline detect` and in tests; AWS clients, the clock and the capture core are injected.
 */

/** The capture core's entry point, bound to its deps by the caller (handler, lab, tests). */
export type StartCaptureFn = (request: CaptureRequest) => Promise<unknown>;

export interface DetectDeps {
  rules: RulesConfig;
  /** FLOW_LOG_FORMAT: the format of CloudWatch Logs records (S3 objects carry a header). */
  flowLogFormat?: string | undefined;
  s3?: S3Client;
  /** Where findings are published (EventBridge + SNS); omit to publish nothing (CLI). */
  notify?: NotifyDeps;
  /**
   * Where the finding-notice markers live (the evidence bucket: `cooldowns/<hash>/
   * finding-notice.json`) that rate-limit notifications to one per fingerprint and
   * `rules.notifyWindowSeconds` across invocations. Omit and every finding is published.
   */
  notices?: EvidenceStore;
  /** The capture core, for rules with autoCapture; omit to start nothing. */
  startCapture?: StartCaptureFn;
  clock?: () => Date;
  logger: CoreLogger;
}

/** One unit of per-batch windows: a subscription delivery, one S3 object, one file. */
export interface FlowBatch {
  /** `cwl:<logGroup>/<logStream>`, `s3://bucket/key`, a file name. */
  source: string;
  /** Header handling: S3 objects and files may start with one; CWL messages never do. */
  header: 'auto' | 'none';
  feed(scanner: FlowScanner): Promise<void>;
}

export interface CaptureResult {
  fingerprint: string;
  status: 'started' | 'refused' | 'invalid' | 'failed';
  /** false: a repeated cooldown refusal the capture core did not record or publish again. */
  recorded?: false;
  outcome?: unknown;
  error?: { name: string; code?: string; message: string };
}

export interface BatchReport {
  source: string;
  stats: ScanStats;
  engine: EngineStats;
  findings: number;
  /** Which line parser read the batch: 'js' for formats the WebAssembly fast path does not
   * take, or when it could not load (then `parserProblem` says why). */
  parser?: 'wasm' | 'js';
  parserProblem?: string;
  /**
   * Set when the batch could not be read at all, or (with `damaged`) only up to a point: a
   * damaged object's records before the damage were read, and their findings are kept.
   */
  error?: { name: string; code?: string; message: string };
  /** The input was damaged part-way; `stats` and `findings` cover what came before. */
  damaged?: true;
}

export interface DetectReport {
  batches: BatchReport[];
  findings: Finding[];
  published: Array<{ fingerprint: string } & PublishResult>;
  captures: CaptureResult[];
  /** Batches or captures that failed for a reason a retry may fix (S3/SSM unavailable). */
  retryable: number;
  /**
   * Capture requests refused by a cooldown whose window already had its refusal recorded: the
   * capture core wrote and published nothing for them (counted here and logged once).
   */
  refusalsNotRecorded: number;
  /**
   * Findings not published because their fingerprint was already published in the current
   * notification window (`rules.notifyWindowSeconds`) by this or another invocation.
   */
  notificationsSuppressed: number;
}

/** Runs the rules over one batch; never throws for bad records (they are counted). */
export async function detectBatch(
  batch: FlowBatch,
  deps: Pick<DetectDeps, 'rules' | 'flowLogFormat' | 'clock'>,
  format: FlowLogFormat = resolveFlowLogFormat(deps.flowLogFormat),
): Promise<{ findings: Finding[]; report: BatchReport }> {
  const engine = new RuleEngine(deps.rules);
  const scanner = new FlowScanner(engine, { format, header: batch.header });
  let damage: CorruptFlowLogError | undefined;
  try {
    await batch.feed(scanner);
  } catch (error) {
    // An object cut short (or a Parquet row group that cannot be read) fails again on every
    // retry, and the records before the damage are exactly what was written: their findings
    // are kept (marked). Altered bytes (a gzip data error) make everything read suspect: the
    // batch fails as corrupt, findings dropped. Anything else (S3 unavailable) may pass on a
    // retry.
    if (!(error instanceof CorruptFlowLogError) || !error.prefixIntact) {
      throw error;
    }
    damage = error;
  }
  const stats = damage ? scanner.endDamaged() : scanner.end();
  const raw = engine.finish();
  const now = (deps.clock?.() ?? new Date()).getTime() / 1000;
  const findings = raw.map((r) =>
    toFinding(r, {
      rules: deps.rules,
      format: scanner.format,
      source: batch.source,
      now,
      ...(damage ? { sourceDamaged: damage.message } : {}),
    }),
  );
  return {
    findings,
    report: {
      source: batch.source,
      stats,
      engine: engine.stats,
      findings: findings.length,
      parser: scanner.parser,
      ...(scanner.parser === 'js' && flowLinesWasmProblem()
        ? { parserProblem: flowLinesWasmProblem()! }
        : {}),
      ...(damage ? { error: describeError(damage), damaged: true as const } : {}),
    },
  };
}

/** The batches in a Lambda event: one per CWL delivery, one per S3 object. */
export function batchesFromEvent(event: unknown, s3?: S3Client): FlowBatch[] {
  if (isCloudWatchLogsEvent(event)) {
    const payload = decodeSubscriptionData(event.awslogs.data);
    if (payload.messageType === 'CONTROL_MESSAGE') return [];
    return [
      {
        source: `cwl:${payload.logGroup ?? '?'}/${payload.logStream ?? '?'}`,
        header: 'none',
        async feed(scanner) {
          for (const e of payload.logEvents) scanner.pushRecord(e.message);
        },
      },
    ];
  }
  if (isS3Event(event)) {
    return s3ObjectsFromEvent(event).map((ref: S3ObjectRef) => ({
      source: `s3://${ref.bucket}/${ref.key}`,
      header: 'auto' as const,
      async feed(scanner: FlowScanner) {
        if (!s3) throw new MalformedEventError('S3 event but no S3 client configured');
        await scanS3Object(s3, ref, scanner);
      },
    }));
  }
  throw new MalformedEventError(
    'Not a CloudWatch Logs subscription, S3 notification or EventBridge S3 event',
    { keys: typeof event === 'object' && event !== null ? Object.keys(event).slice(0, 10) : [] },
  );
}

/** What happened to one finding's notification. */
export interface SuppressedNotification {
  fingerprint: string;
  /** The notification ID that was published for this window. */
  reportedBy?: string | undefined;
  until?: string | undefined;
}

type NotifyResult =
  | { published: DetectReport['published'][number] }
  | { suppressed: SuppressedNotification }
  | Record<string, never>;

/**
 * Publishes one finding, at most once per fingerprint and notification window across
 * invocations: the first occurrence claims the finding notice (IfNoneMatch create, or IfMatch
 * takeover of the last window's expired marker) and is published in full; a repeat within the
 * window writes and publishes nothing and is counted. When the marker cannot be read or written
 * (S3 unavailable) the finding is published anyway: a duplicate is better than a lost alert.
 */
async function notifyFinding(finding: Finding, deps: DetectDeps): Promise<NotifyResult> {
  if (!deps.notify) return {};
  const windowSeconds = deps.rules.notifyWindowSeconds;
  const id = `ntf-${randomBytes(6).toString('hex')}`;
  let notification: Record<string, unknown> = { id, rateLimited: false };
  if (deps.notices && windowSeconds > 0) {
    const at = deps.clock?.() ?? new Date();
    const until = new Date(at.getTime() + windowSeconds * 1000);
    let claim: NoticeClaim | undefined;
    try {
      claim = await claimNotice(deps.notices, findingNoticeKey(finding.fingerprint), {
        purpose: 'finding-notice',
        reporter: id,
        fingerprint: finding.fingerprint,
        instanceId: '-',
        at,
        until,
      });
    } catch (error) {
      deps.logger.warn('finding-notice marker unavailable; publishing without the rate limit', {
        fingerprint: finding.fingerprint,
        error: describeError(error),
      });
    }
    if (claim && !claim.first) {
      return {
        suppressed: {
          fingerprint: finding.fingerprint,
          reportedBy: claim.holder?.captureId,
          until: claim.holder?.expiresAt,
        },
      };
    }
    if (claim?.first && claim.replacedCorrupt) {
      deps.logger.error('replaced a corrupt finding-notice marker', {
        key: claim.key,
        problem: claim.replacedCorrupt,
        fingerprint: finding.fingerprint,
      });
    }
    if (claim?.first) {
      notification = {
        id,
        rateLimited: true,
        windowSeconds,
        // Repeats of this fingerprint are counted in the detector's log, not published, until:
        repeatsNotPublishedUntil: until.toISOString(),
        // The last window's notification, when there was one (repeats since then: see the log).
        // (A marker given back after a failed publication names nothing that went out.)
        ...(claim.previous?.state === 'held'
          ? { previous: { id: claim.previous.captureId, at: claim.previous.createdAt } }
          : {}),
      };
    }
  }
  const result = await publishEvent(deps.notify, 'Flow Anomaly Detected', {
    ...finding,
    evidence: finding.evidence.slice(0, 10),
    notification,
  });
  if (notification.rateLimited && result.eventBridge === 'failed' && result.sns === 'failed') {
    // Nothing went out: give the window back so the next occurrence is published, not counted.
    await releaseNotice(
      deps.notices!,
      findingNoticeKey(finding.fingerprint),
      id,
      deps.clock?.() ?? new Date(),
      'publication failed on every channel',
    ).catch((error: unknown) =>
      deps.logger.error('finding-notice marker could not be released after a failed publication', {
        fingerprint: finding.fingerprint,
        error: describeError(error),
      }),
    );
  }
  return { published: { fingerprint: finding.fingerprint, ...result } };
}

/**
 * Publishes each finding (rate-limited per fingerprint, see notifyFinding) and hands
 * auto-capture findings to the capture core, a few at a time (the capture core's per-host lock
 * and cooldown make concurrent requests for one host safe).
 */
export async function actOnFindings(
  findings: Finding[],
  deps: DetectDeps,
  concurrency = 8,
): Promise<
  Pick<DetectReport, 'published' | 'captures'> & { suppressed: SuppressedNotification[] }
> {
  const outcomes = await mapLimit(findings, concurrency, async (finding) => {
    const notified = await notifyFinding(finding, deps);
    if (!finding.autoCapture || !deps.startCapture) return { notified };
    return { notified, capture: await requestCapture(finding, deps) };
  });
  return {
    published: outcomes.flatMap((o) => ('published' in o.notified ? [o.notified.published] : [])),
    suppressed: outcomes.flatMap((o) =>
      'suppressed' in o.notified ? [o.notified.suppressed] : [],
    ),
    captures: outcomes.flatMap((o) => (o.capture ? [o.capture] : [])),
  };
}

async function requestCapture(finding: Finding, deps: DetectDeps): Promise<CaptureResult> {
  let request: CaptureRequest;
  try {
    request = parseCaptureRequest(finding.capture.request);
  } catch (error) {
    deps.logger.error('finding produced an invalid capture request', {
      fingerprint: finding.fingerprint,
      error: describeError(error),
    });
    return { fingerprint: finding.fingerprint, status: 'invalid', error: describeError(error) };
  }
  try {
    const outcome = await deps.startCapture!(request);
    // the capture core returns refusals (cooldown, lock, budget…) instead of throwing
    const started = (outcome as { started?: unknown[] } | undefined)?.started;
    const status = Array.isArray(started) && started.length === 0 ? 'refused' : 'started';
    const recorded = (outcome as { recorded?: boolean } | undefined)?.recorded;
    return {
      fingerprint: finding.fingerprint,
      status,
      ...(recorded === false ? { recorded: false as const } : {}),
      outcome,
    };
  } catch (error) {
    const refused = isTaplineError(error) && error.code.startsWith('CAPTURE_REFUSED');
    (refused ? deps.logger.info : deps.logger.error).call(deps.logger, 'capture not started', {
      fingerprint: finding.fingerprint,
      error: describeError(error),
    });
    return {
      fingerprint: finding.fingerprint,
      status: refused ? 'refused' : 'failed',
      error: describeError(error),
    };
  }
}

/** A whole Lambda event: every batch, then findings out. One bad batch does not stop others. */
export async function detectFlowAnomalies(event: unknown, deps: DetectDeps): Promise<DetectReport> {
  const batches = batchesFromEvent(event, deps.s3);
  const report: DetectReport = {
    batches: [],
    findings: [],
    published: [],
    captures: [],
    retryable: 0,
    refusalsNotRecorded: 0,
    notificationsSuppressed: 0,
  };
  for (const batch of batches) {
    try {
      const { findings, report: batchReport } = await detectBatch(batch, deps);
      report.batches.push(batchReport);
      report.findings.push(...findings);
      if (batchReport.damaged) {
        deps.logger.error('flow-log object damaged; findings from the records before it kept', {
          source: batch.source,
          error: batchReport.error,
          linesRead: batchReport.stats.lines,
          findings: findings.length,
        });
      }
      if (batchReport.stats.malformed > 0) {
        deps.logger.warn('malformed flow-log records', {
          source: batch.source,
          malformed: batchReport.stats.malformed,
          byReason: batchReport.stats.malformedByReason,
          sample: batchReport.stats.malformedSample,
        });
      }
      if (batchReport.parserProblem) {
        // correct either way, but about 2.3× slower: say so rather than degrade silently
        deps.logger.warn('flow-log WebAssembly parser unavailable; using the JavaScript parser', {
          source: batch.source,
          problem: batchReport.parserProblem,
        });
      }
      if (batchReport.stats.skipdata > 0) {
        deps.logger.warn('flow logs skipped records (SKIPDATA): some flows were not logged', {
          source: batch.source,
          skipdata: batchReport.stats.skipdata,
        });
      }
    } catch (error) {
      const info = describeError(error);
      if (!isTaplineError(error)) report.retryable += 1;
      deps.logger.error('flow-log batch failed', { source: batch.source, error: info });
      report.batches.push({
        source: batch.source,
        stats: new FlowScanner({ observe() {} }).stats,
        engine: { untrackedKeys: 0, suppressedFindings: 0, trackedKeys: 0 },
        findings: 0,
        error: info,
      });
    }
  }
  const acted = await actOnFindings(report.findings, deps);
  report.published = acted.published;
  report.captures = acted.captures;
  report.notificationsSuppressed = acted.suppressed.length;
  if (acted.suppressed.length > 0) {
    const byFingerprint = new Map<string, number>();
    for (const s of acted.suppressed) {
      byFingerprint.set(s.fingerprint, (byFingerprint.get(s.fingerprint) ?? 0) + 1);
    }
    deps.logger.info('finding notifications suppressed: already published in this window', {
      notificationsSuppressed: acted.suppressed.length,
      windowSeconds: deps.rules.notifyWindowSeconds,
      fingerprints: [...byFingerprint].slice(0, 20).map(([fingerprint, count]) => ({
        fingerprint,
        count,
        reportedBy: acted.suppressed.find((s) => s.fingerprint === fingerprint)?.reportedBy,
      })),
    });
  }
  const quiet = acted.captures.filter((c) => c.recorded === false);
  report.refusalsNotRecorded = quiet.length;
  if (quiet.length > 0) {
    deps.logger.info('repeated cooldown refusals not recorded again', {
      refusalsNotRecorded: quiet.length,
      fingerprints: [...new Set(quiet.map((c) => c.fingerprint))].slice(0, 20),
    });
  }
  // A capture that failed on infrastructure (not a refusal, not a bad request) is worth a
  // retry: the handler fails, Lambda retries, the cooldown holds back what already started.
  report.retryable += acted.captures.filter((c) => c.status === 'failed' && !c.error?.code).length;
  return report;
}
