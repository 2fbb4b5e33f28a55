/**
 * A manifest update (IfMatch) that S3 stored but whose answer was lost: the SDK retries the PUT
 * and S3 answers 412, because the manifest now is the one this very call wrote. Since
 * duplicate deliveries change and publish nothing (c2f62ee), a caller that took that 412 for
 * someone else's write re-read the manifest, found the host already final and went quiet: the
 * host's result was recorded but "Capture Updated"/"Capture Finished" never sent, and a sweep
 * that closed a host never announced it. updateManifest must recognise its own write. (moto;
 * the lost answer is injected below the SDK's retry.)
 */
import { describe, expect, it } from 'vitest';
import { startCapture } from '../../shared/capture/start-capture.ts';
import { applyHostResult, sweepTimedOutCaptures } from '../../shared/capture/track-capture.ts';
import { manifestOf } from '../support/capture-evidence.ts';
import {
  at,
  failedHostResult,
  hostCapture,
  plus,
  worldWithNatHost,
} from '../support/capture-host-world.ts';
import { clientsLosingFirstAnswer, isManifestUpdate } from '../support/lost-s3-answer.ts';

describe('a manifest update whose answer was lost (moto)', () => {
  it('applyHostResult still releases the host and publishes its result', async () => {
    const { world, id } = await worldWithNatHost(236, { HOURLY_CAPTURE_BUDGET: '50' });
    const started = await startCapture(hostCapture(id, 'IR-236 lost update answer'), world.deps);
    const { clients, seen } = clientsLosingFirstAnswer(isManifestUpdate);

    const tracked = await applyHostResult(failedHostResult(started, id), {
      ...world.deps,
      clients,
    });

    expect(seen.writes).toBeGreaterThan(1); // the SDK retried the update
    expect(tracked).toMatchObject({ hostStatus: 'failed', state: 'failed', lockReleased: true });
    expect(tracked).not.toHaveProperty('ignored');
    const manifest = await manifestOf(world, started.captureId);
    expect(manifest.history.filter((h) => h.event === 'host-finished')).toHaveLength(1);
  }, 60_000);

  it('the timed-out sweep still reports the host it closed', async () => {
    const { world, id } = await worldWithNatHost(237, { HOURLY_CAPTURE_BUDGET: '50' });
    const t0 = new Date();
    const started = await startCapture(
      hostCapture(id, 'IR-237 lost sweep answer'),
      at(world.deps, t0),
    );
    const { clients } = clientsLosingFirstAnswer(isManifestUpdate);

    const swept = await sweepTimedOutCaptures(at({ ...world.deps, clients }, plus(t0, 3600)));

    expect(swept).toEqual([{ captureId: started.captureId, instanceId: id }]);
    const manifest = await manifestOf(world, started.captureId);
    expect(manifest.hosts[id]!.status).toBe('timed-out');
    expect(manifest.history.filter((h) => h.event === 'host-timed-out')).toHaveLength(1);
  }, 60_000);
});
