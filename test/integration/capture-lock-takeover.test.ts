/**
 * A capture whose host lock was taken over by a later capture before its host reported (the
 * lock had expired, or a rolling capture took it in its last seconds) is still closed when its
 * host never reports: no lock names it any more, so the taker closes it at once when its own
 * manifest deadline has passed, and otherwise carries it in the new lock (`supersedes`) for the
 * timed-out sweep and the next taker (moto).
 */
import { describe, expect, it } from 'vitest';
import { startCapture } from '../../shared/capture/start-capture.ts';
import { applyHostResult, sweepTimedOutCaptures } from '../../shared/capture/track-capture.ts';
import { lockKey, readLease } from '../../shared/evidence/guards.ts';
import { manifestOf, worldEvidenceStore } from '../support/capture-evidence.ts';
import {
  at,
  failedHostResult,
  hostCapture,
  plus,
  rollingTakeover,
  startRolling,
  worldWithNatHost,
} from '../support/capture-host-world.ts';

describe('captures whose host lock was taken over (moto)', () => {
  it('an expired lock taken over by a new capture: the old capture is closed, not left running', async () => {
    const { world, id } = await worldWithNatHost(247, {
      LOCK_TTL_SECONDS: '60',
      HOURLY_CAPTURE_BUDGET: '50',
    });
    const t0 = new Date();
    const first = await startCapture(hostCapture(id, 'IR-247 first'), at(world.deps, t0));
    expect(first.started).toHaveLength(1);

    // its lock expires at its deadline (end + 60 s); a new capture takes it before any sweep
    const second = await startCapture(
      hostCapture(id, 'IR-247 second'),
      at(world.deps, plus(t0, 100)),
    );
    expect(second.started).toHaveLength(1);

    const manifest = await manifestOf(world, first.captureId);
    expect(manifest.state).toBe('failed');
    expect(manifest.hosts[id]!.status).toBe('timed-out');
    expect(manifest.hosts[id]!.errors.join('\n')).toContain(
      `was taken over before it reported (held by ${second.captureId} now)`,
    );
    expect(manifest.history.find((h) => h.event === 'host-timed-out')).toMatchObject({
      instanceId: id,
      lockTakenOver: true,
      lockHeldBy: second.captureId,
    });
    // nothing is left for the sweep to carry, and the new capture runs on
    const lock = await readLease(worldEvidenceStore(world), lockKey(id));
    expect(lock?.lease).toMatchObject({ captureId: second.captureId, state: 'held' });
    expect(lock?.lease?.supersedes).toBeUndefined();
    expect(await sweepTimedOutCaptures(at(world.deps, plus(t0, 150)))).toEqual([]);
    expect((await manifestOf(world, second.captureId)).state).toBe('running');
  }, 60_000);

  it('a rolling capture taken over in its last seconds is closed by its own deadline when its host never reports', async () => {
    const { world, id } = await worldWithNatHost(248);
    const t0 = new Date();
    // B takes A's live lock 30 s before A ends (A's deadline: end + 900 s, still ahead)
    const { a, b } = await rollingTakeover(world, id, t0);
    expect([...a.started, ...b.started]).toHaveLength(2);
    const store = worldEvidenceStore(world);
    expect((await readLease(store, lockKey(id)))?.lease).toMatchObject({
      captureId: b.captureId,
      supersedes: [a.captureId],
    });
    expect((await manifestOf(world, a.captureId)).state).toBe('running');

    // B's host reports (its lock is released, still carrying A); C takes the released lock
    await applyHostResult(failedHostResult(b, id), at(world.deps, plus(t0, 1180)));
    const c = await startRolling(world.deps, id, 'rolling C', plus(t0, 1200));
    expect(c.started).toHaveLength(1);
    expect((await readLease(store, lockKey(id)))?.lease).toMatchObject({
      captureId: c.captureId,
      supersedes: [a.captureId],
    });

    // A's host never reports: past A's manifest deadline the sweep closes it (C still runs)
    expect(await sweepTimedOutCaptures(at(world.deps, plus(t0, 1499)))).toEqual([]);
    const swept = await sweepTimedOutCaptures(at(world.deps, plus(t0, 1501)));
    expect(swept).toEqual([{ captureId: a.captureId, instanceId: id }]);
    const manifest = await manifestOf(world, a.captureId);
    expect(manifest.hosts[id]!.status).toBe('timed-out');
    expect(manifest.hosts[id]!.errors.join('\n')).toContain(
      `was taken over before it reported (held by ${c.captureId} now)`,
    );
    expect((await manifestOf(world, c.captureId)).state).toBe('running');
  }, 60_000);
});
