/**
 * Finding notifications are rate-limited per fingerprint across invocations (moto): the first
 * occurrence in `rules.notifyWindowSeconds` is published (EventBridge + SNS) with full detail,
 * repeats in the window are counted and publish nothing, the next window publishes again and
 * names the previous notification. The finding-notice marker is created with IfNoneMatch, so
 * concurrent invocations publish once, and writes one object version per window.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { evidenceStore, notifyDeps } from '../../shared/capture/start-capture.ts';
import { type DetectDeps, detectFlowAnomalies } from '../../shared/detection/detect.ts';
import type { EvidenceStore } from '../../shared/evidence/store.ts';
import { encodeSubscriptionData } from '../../shared/flowlogs/sources/cloudwatch.ts';
import { mapLimit } from '../../shared/map-limit.ts';
import { findingNoticeKey } from '../../shared/notify/notice-marker.ts';
import type { CoreLogger } from '../../shared/observability.ts';
import { silentLogger } from '../../shared/observability.ts';
import { loadRules } from '../../shared/rules/config.ts';
import { makeCaptureWorld } from '../fixtures/capture/world.ts';
import { motoClients, versionsOf } from '../support/aws.ts';

const t0 = Math.floor(Date.parse('2026-11-23T09:00:00Z') / 1000);

/** One CloudWatch Logs delivery with one port-0 record (default v2 format). */
function delivery(i: number, dst = '10.90.1.5') {
  const message = `2 123456789012 eni-0909000000000001a 198.51.100.66 ${dst} ${20000 + i} 0 6 1 40 ${t0} ${t0 + 60} REJECT OK`;
  return {
    awslogs: {
      data: encodeSubscriptionData({
        messageType: 'DATA_MESSAGE',
        owner: '123456789012',
        logGroup: '/tapline/test/vpc-flow-logs',
        logStream: 'eni-0909000000000001a-all',
        subscriptionFilters: ['tapline'],
        logEvents: [{ id: String(i), timestamp: t0 * 1000, message }],
      }),
    },
  };
}

interface Published {
  detailType: string;
  detail: Record<string, any>;
}

/** A moto world whose EventBridge/SNS clients record what was sent. */
async function makeWorld(notifyWindowSeconds: number) {
  const world = await makeCaptureWorld();
  const clients = motoClients();
  const events: Published[] = [];
  let snsPublishes = 0;
  clients.eventBridge.middlewareStack.add(
    (next, ctx) => async (args) => {
      const out = await next(args);
      // what reached the bus (a rejected entry or call is not an event anyone received)
      if (ctx.commandName === 'PutEventsCommand' && !(out.output as any).FailedEntryCount) {
        for (const e of (args.input as { Entries: any[] }).Entries) {
          events.push({ detailType: e.DetailType, detail: JSON.parse(e.Detail) });
        }
      }
      return out;
    },
    { step: 'initialize', name: 'recordEvents' },
  );
  clients.sns.middlewareStack.add(
    (next, ctx) => async (args) => {
      if (ctx.commandName === 'PublishCommand') snsPublishes += 1;
      return next(args);
    },
    { step: 'initialize', name: 'countPublishes' },
  );
  const captureDeps = { ...world.deps, clients: { ...world.deps.clients, ...clients } };
  const notices = await evidenceStore(captureDeps);
  let clock = new Date('2026-11-23T09:10:00Z');
  const infos: Array<{ message: string; extra: any }> = [];
  const logger = {
    ...silentLogger,
    info: (message: string, extra?: unknown) => infos.push({ message, extra }),
  } as CoreLogger;
  const deps: DetectDeps = {
    rules: loadRules({ notifyWindowSeconds }),
    logger,
    notify: await notifyDeps(captureDeps),
    notices,
    clock: () => clock,
  };
  const findingEvents = () => events.filter((e) => e.detailType === 'Flow Anomaly Detected');
  return {
    deps,
    notices,
    infos,
    findingEvents,
    snsPublishes: () => snsPublishes,
    advance: (seconds: number) => {
      clock = new Date(clock.getTime() + seconds * 1000);
    },
  };
}

const versions = (store: EvidenceStore, key: string) => versionsOf(store.s3, store.bucket, key);

/** `count` invocations, `width` at a time, each one delivery. */
async function invocations(deps: DetectDeps, count: number, width = 10, dst?: string) {
  return mapLimit(Array.from({ length: count }), width, (_, i) =>
    detectFlowAnomalies(delivery(i, dst), deps),
  );
}

describe('finding notifications, rate-limited per fingerprint and window', () => {
  it('publishes the first of 60 concurrent identical findings; the rest are counted, not published', async () => {
    const w = await makeWorld(900);
    const reports = await invocations(w.deps, 60);
    expect(reports.every((r) => r.findings.length === 1)).toBe(true);
    const fingerprint = reports[0]!.findings[0]!.fingerprint;
    expect(fingerprint).toBe('port-zero:tcp:10.90.1.5:198.51.100.66');

    const published = w.findingEvents();
    expect(published).toHaveLength(1);
    expect(w.snsPublishes()).toBe(1);
    // full detail on the one that went out
    const detail = published[0]!.detail;
    expect(detail.fingerprint).toBe(fingerprint);
    expect(detail.evidence).toHaveLength(1);
    expect(detail.notification).toMatchObject({ rateLimited: true, windowSeconds: 900 });
    expect(detail.notification.previous).toBeUndefined();
    expect(reports.reduce((n, r) => n + r.published.length, 0)).toBe(1);
    expect(reports.reduce((n, r) => n + r.notificationsSuppressed, 0)).toBe(59);
    // each suppressing invocation logs how many and who reported the window
    const logged = w.infos.filter((l) => l.message.startsWith('finding notifications suppressed'));
    expect(logged).toHaveLength(59);
    expect(logged[0]!.extra.fingerprints[0]).toMatchObject({
      fingerprint,
      count: 1,
      reportedBy: detail.notification.id,
    });
    // one marker version for the window (Object Lock retains every version written here)
    expect(await versions(w.notices, findingNoticeKey(fingerprint))).toBe(1);

    // another fingerprint in the same window is its own notification
    await invocations(w.deps, 5, 5, '10.90.1.6');
    expect(w.findingEvents()).toHaveLength(2);

    // still inside the window: nothing new
    w.advance(899);
    await invocations(w.deps, 5, 5);
    expect(w.findingEvents()).toHaveLength(2);

    // the window has passed: the next occurrence publishes again, once, naming the last one
    w.advance(2);
    const again = await invocations(w.deps, 20, 10);
    const fresh = w.findingEvents().slice(2);
    expect(fresh).toHaveLength(1);
    expect(fresh[0]!.detail.notification.previous).toEqual({
      id: detail.notification.id,
      at: '2026-11-23T09:10:00.000Z',
    });
    expect(again.reduce((n, r) => n + r.notificationsSuppressed, 0)).toBe(19);
    expect(await versions(w.notices, findingNoticeKey(fingerprint))).toBe(2);
  }, 120_000);

  it('notifyWindowSeconds 0 publishes every finding', async () => {
    const w = await makeWorld(0);
    const reports = await invocations(w.deps, 5, 5);
    expect(w.findingEvents()).toHaveLength(5);
    expect(reports.every((r) => r.notificationsSuppressed === 0)).toBe(true);
    expect(w.findingEvents()[0]!.detail.notification.rateLimited).toBe(false);
  }, 60_000);

  it('gives the window back when the notification went out on no channel', async () => {
    const w = await makeWorld(900);
    const broken: DetectDeps = {
      ...w.deps,
      notify: {
        ...w.deps.notify!,
        eventBusName: 'no-such-bus-tapline',
        topicArn: `${w.deps.notify!.topicArn}-missing`,
      },
    };
    const failed = await detectFlowAnomalies(delivery(1), broken);
    expect(failed.published).toEqual([
      expect.objectContaining({ eventBridge: 'failed', sns: 'failed' }),
    ]);
    // the next occurrence in the same window is published, not counted as already reported
    const next = await detectFlowAnomalies(delivery(2), w.deps);
    expect(next.notificationsSuppressed).toBe(0);
    expect(next.published).toEqual([expect.objectContaining({ eventBridge: 'sent', sns: 'sent' })]);
    const sent = w.findingEvents();
    expect(sent).toHaveLength(1);
    expect(sent[0]!.detail.notification.rateLimited).toBe(true);
    expect(sent[0]!.detail.notification.previous).toBeUndefined();
    // and it holds the window again
    expect((await detectFlowAnomalies(delivery(3), w.deps)).notificationsSuppressed).toBe(1);
  }, 60_000);

  it('publishes anyway when the marker cannot be read or written (a duplicate beats a lost alert)', async () => {
    const w = await makeWorld(900);
    const warnings: unknown[] = [];
    const deps: DetectDeps = {
      ...w.deps,
      notices: { ...w.notices, bucket: `${w.notices.bucket}-missing` },
      logger: { ...w.deps.logger, warn: (m: string) => warnings.push(m) } as CoreLogger,
    };
    await invocations(deps, 3, 3);
    expect(w.findingEvents()).toHaveLength(3);
    expect(warnings.filter((m) => String(m).includes('finding-notice marker'))).toHaveLength(3);
  }, 60_000);

  it('takes over a corrupt marker, publishes, and logs the takeover as an error', async () => {
    const w = await makeWorld(900);
    await detectFlowAnomalies(delivery(0), w.deps);
    expect(w.findingEvents()).toHaveLength(1);
    const fingerprint = w.findingEvents()[0]!.detail.fingerprint as string;
    await w.notices.s3.send(
      new PutObjectCommand({
        Bucket: w.notices.bucket,
        Key: findingNoticeKey(fingerprint),
        Body: 'not a marker',
        ServerSideEncryption: 'aws:kms',
        SSEKMSKeyId: w.notices.keyArn,
      }),
    );
    const errors: Array<{ message: string; extra: any }> = [];
    const deps: DetectDeps = {
      ...w.deps,
      logger: {
        ...w.deps.logger,
        error: (message: string, extra?: unknown) => errors.push({ message, extra }),
      } as CoreLogger,
    };
    await detectFlowAnomalies(delivery(1), deps);
    expect(w.findingEvents()).toHaveLength(2);
    expect(errors).toContainEqual({
      message: 'replaced a corrupt finding-notice marker',
      extra: expect.objectContaining({ fingerprint, problem: expect.any(String) }),
    });
    // and the new marker holds the window again
    await detectFlowAnomalies(delivery(2), w.deps);
    expect(w.findingEvents()).toHaveLength(2);
  }, 60_000);
});
