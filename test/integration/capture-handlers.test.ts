import { readFile } from 'node:fs/promises';
import type { Context } from 'aws-lambda';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeHandler as makeRollingHandler } from '../../functions/rolling-capture.ts';
import { makeHandler as makeStartHandler } from '../../functions/start-capture.ts';
import { makeHandler as makeTrackHandler } from '../../functions/track-capture.ts';
import { rollingOverlapSeconds } from '../../shared/capture/rolling-capture.ts';
import { readManifest } from '../../shared/evidence/manifest.ts';
import { lambdaContext } from '../../shared/lab/lab-aws.ts';
import {
  type CaptureWorld,
  makeCaptureWorld,
  makeTopology,
  runInstance,
} from '../fixtures/capture/world.ts';
import { worldEvidenceStore } from '../support/capture-evidence.ts';

const context = lambdaContext('tapline-test-startCapture', {
  awsRequestId: 'c6af9ac6-7b61-11e6-9a41-93e8deadbeef',
  logStreamName: 'test',
  callbackWaitsForEmptyEventLoop: true,
  getRemainingTimeInMillis: () => 60_000,
});

async function sampleEvent(path: string): Promise<any> {
  return JSON.parse(await readFile(new URL(`../../events/${path}`, import.meta.url), 'utf8'));
}

describe('capture handlers', () => {
  let world: CaptureWorld;

  beforeAll(async () => {
    world = await makeCaptureWorld({ ROLLING_INTERVAL_SECONDS: '600' });
  });

  it('start-capture answers the sample manual event with a structured refusal, not a crash', async () => {
    const handler = makeStartHandler(() => world.deps);
    const result = await handler(await sampleEvent('manual/instance.json'), context);
    // The sample names an instance that does not exist here: nothing can be captured, and it says so.
    expect(result.ok).toBe(false);
    expect(result.state).toBe('refused');
    expect(result.refused).toEqual([expect.objectContaining({ reason: 'no-target' })]);
    const stored = await readManifest(worldEvidenceStore(world), result.captureId!);
    expect(stored?.manifest.invokedBy).toContain(context.awsRequestId);
  });

  it('start-capture returns validation errors with the field, token and position', async () => {
    const handler = (event: unknown, ctx: Context) =>
      makeStartHandler(() => world.deps)(event as any, ctx);
    const badFilter = await handler(
      {
        targets: { kind: 'instances', instanceIds: ['i-0123456789abcdef0'] },
        reason: 'IR-9',
        filter: { kind: 'bpf', expression: 'port 0 `id`' },
      },
      context,
    );
    expect(badFilter).toMatchObject({
      ok: false,
      error: {
        code: 'FILTER_INVALID',
        details: { token: '`', position: 7, field: 'filter.expression' },
      },
    });
    const badField = await handler(
      { targets: { kind: 'instances', instanceIds: ['i-x'] }, reason: 'IR-9' },
      context,
    );
    expect(badField.error?.code).toBe('CAPTURE_REQUEST_INVALID');
    expect(JSON.stringify(badField.error?.details)).toContain('targets.instanceIds.0');
    const notObject = await handler('start a capture please' as any, context);
    expect(notObject.error?.code).toBe('EVENT_MALFORMED');
  });

  it('start-capture does not let a caller claim to be the schedule', async () => {
    const topo = await makeTopology(world, 76);
    const handler = (event: unknown, ctx: Context) =>
      makeStartHandler(() => world.deps)(event as any, ctx);
    const result = await handler(
      {
        targets: { kind: 'instances', instanceIds: [topo.nat.instanceId] },
        reason: 'IR-10',
        source: 'schedule',
      },
      context,
    );
    expect(result.ok).toBe(true);
    const stored = await readManifest(worldEvidenceStore(world), result.captureId!);
    expect(stored?.manifest.source).toBe('manual');
  });

  it('rolling-capture starts on every ROLLING_TAG host for the interval plus overlap', async () => {
    const topo = await makeTopology(world, 77);
    const a = await runInstance(world.clients.ec2, topo.publicSubnetId, [world.tags.rolling]);
    const b = await runInstance(world.clients.ec2, topo.privateSubnetId, [world.tags.rolling]);
    const handler = makeRollingHandler(() => world.deps);
    const outcome = await handler(await sampleEvent('schedule/hourly.json'), context);
    expect(outcome.capture.started.map((s) => s.instanceId).sort()).toEqual(
      [a.instanceId, b.instanceId].sort(),
    );
    expect(outcome.overlapSeconds).toBe(rollingOverlapSeconds(600));
    expect(outcome.capture.durationSeconds).toBe(600 + 30);
    // The next run, while these still run, is refused per host (not in its overlap window yet).
    const again = await handler(await sampleEvent('schedule/hourly.json'), context);
    expect(again.capture.refused.map((r) => r.reason)).toEqual(['host-busy', 'host-busy']);
    // In the last seconds of the previous capture the next one takes over its hosts.
    const later = new Date(Date.now() + 610_000);
    const takeover = await makeRollingHandler(() => ({ ...world.deps, now: () => later }))(
      await sampleEvent('schedule/hourly.json'),
      context,
    );
    expect(takeover.capture.started).toHaveLength(2);
  });

  it('track-capture on its schedule (the sample scheduled event) only sweeps: hosts past their deadline time out', async () => {
    const sweepWorld = await makeCaptureWorld();
    const topo = await makeTopology(sweepWorld, 82);
    /** Starts a one-host capture through the start-capture handler, as of `at` (default now). */
    const startOn = (instanceId: string, reason: string, durationSeconds: number, at?: Date) =>
      makeStartHandler(() => (at ? { ...sweepWorld.deps, now: () => at } : sweepWorld.deps))(
        {
          targets: { kind: 'instances', instanceIds: [instanceId] },
          reason,
          durationSeconds,
        } as any,
        context,
      );
    // A capture started two hours ago whose host never reported: its deadline has passed.
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    const started = await startOn(topo.nat.instanceId, 'IR-12 sweep test', 60, twoHoursAgo);
    expect(started.ok).toBe(true);
    // And one still running: the sweep must leave it alone.
    const running = await startOn(topo.sensor.instanceId, 'IR-12 still running', 600);
    expect(running.ok).toBe(true);

    const handler = makeTrackHandler(() => sweepWorld.deps);
    const result = await handler(await sampleEvent('schedule/track-capture-sweep.json'), context);
    expect(result.tracked).toBeUndefined();
    expect(result.timedOut).toEqual([
      { captureId: started.captureId, instanceId: topo.nat.instanceId },
    ]);
    const store = worldEvidenceStore(sweepWorld);
    const closed = await readManifest(store, started.captureId!);
    expect(closed?.manifest.hosts[topo.nat.instanceId]?.status).toBe('timed-out');
    const open = await readManifest(store, running.captureId!);
    expect(open?.manifest.hosts[topo.sensor.instanceId]?.status).toBe('running');
    // The next scheduled run finds nothing more to close.
    const again = await handler(await sampleEvent('schedule/track-capture-sweep.json'), context);
    expect(again.timedOut).toEqual([]);
  });

  it('track-capture ignores a status event for a command SSM does not know (the sample event)', async () => {
    const handler = makeTrackHandler(() => ({
      ...world.deps,
      config: { ...world.config, CAPTURE_DOCUMENT_NAME: 'tapline-dev-capture' },
    }));
    const result = await handler(await sampleEvent('ssm/command-status-success.json'), context);
    expect(result.tracked?.ignored).toMatch(/SSM has no invocation/);
    expect(result.timedOut).toEqual([]);
  });
});
