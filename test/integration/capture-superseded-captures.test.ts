/**
 * A capture whose host lock a rolling capture took over before its host reported is carried in
 * the new lock (`supersedes`) until its own manifest deadline passes. It must be closed then even
 * when (1) the taker's lock has since been released and no later capture takes it (the sweep
 * reads released locks that carry captures too), and (2) the taker's Lambda stopped right after
 * its takeover write (the lock names the superseded capture from that very write, not from a
 * second write that may never happen). moto; the "kill" is every later S3 call hanging.
 */
import { describe, expect, it } from 'vitest';
import { applyHostResult, sweepTimedOutCaptures } from '../../shared/capture/track-capture.ts';
import { lockKey, readLease } from '../../shared/evidence/guards.ts';
import { motoClients } from '../support/aws.ts';
import { manifestOf, worldEvidenceStore } from '../support/capture-evidence.ts';
import {
  at,
  failedHostResult,
  plus,
  rollingTakeover,
  startRolling,
  worldWithNatHost,
} from '../support/capture-host-world.ts';
import type { PutInput, SdkMiddleware } from '../support/lost-s3-answer.ts';

describe('superseded captures are closed by their deadline (moto)', () => {
  it('when the lock that carries them was released and no capture takes it again', async () => {
    const { world, id } = await worldWithNatHost(231);
    const t0 = new Date();
    const { a, b } = await rollingTakeover(world, id, t0);
    expect([...a.started, ...b.started]).toHaveLength(2);
    // B's host reports: B's lock is released (it still carries A); rolling stops here
    await applyHostResult(failedHostResult(b, id), at(world.deps, plus(t0, 1180)));
    const store = worldEvidenceStore(world);
    expect((await readLease(store, lockKey(id)))?.lease).toMatchObject({
      captureId: b.captureId,
      state: 'released',
      supersedes: [a.captureId],
    });

    // A's host never reports: past A's own deadline the sweep closes it
    expect(await sweepTimedOutCaptures(at(world.deps, plus(t0, 1499)))).toEqual([]);
    const swept = await sweepTimedOutCaptures(at(world.deps, plus(t0, 1501)));
    expect(swept).toEqual([{ captureId: a.captureId, instanceId: id }]);
    const manifest = await manifestOf(world, a.captureId);
    expect(manifest.state).not.toBe('running');
    expect(manifest.hosts[id]!.status).toBe('timed-out');
    expect(manifest.hosts[id]!.errors.join('\n')).toContain(
      `was taken over before it reported (by ${b.captureId}, which has released it since)`,
    );
    // B's own record is untouched and the lock stays released
    expect((await manifestOf(world, b.captureId)).hosts[id]!.status).toBe('failed');
    expect((await readLease(store, lockKey(id)))?.lease?.state).toBe('released');
  }, 60_000);

  it('when the taker stopped right after its takeover write', async () => {
    const { world, id } = await worldWithNatHost(232);
    const t0 = new Date();
    const a = await startRolling(world.deps, id, 'rolling A', t0);
    expect(a.started).toHaveLength(1);

    // B's Lambda is killed as soon as its takeover of A's lock is written: every S3 call after
    // that never answers
    const clients = motoClients();
    const state = { killed: false };
    const middleware: SdkMiddleware = (next, ctx) => async (args) => {
      if (state.killed) return new Promise(() => undefined);
      const input = (args as { input: PutInput }).input;
      const out = await next(args);
      if (
        ctx.commandName === 'PutObjectCommand' &&
        input.Key === lockKey(id) &&
        input.IfMatch !== undefined
      ) {
        state.killed = true;
      }
      return out;
    };
    clients.s3.middlewareStack.add(middleware as never, { step: 'initialize', name: 'kill' });
    void startRolling({ ...world.deps, clients }, id, 'rolling B', plus(t0, 570));
    for (let i = 0; i < 200 && !state.killed; i++) await new Promise((r) => setTimeout(r, 50));
    expect(state.killed).toBe(true);

    const store = worldEvidenceStore(world);
    const lock = (await readLease(store, lockKey(id)))?.lease;
    expect(lock).toMatchObject({ state: 'held', supersedes: [a.captureId] });
    expect(lock?.captureId).not.toBe(a.captureId);

    // A's host never reports: past A's deadline the sweep closes A
    const swept = await sweepTimedOutCaptures(at(world.deps, plus(t0, 1501)));
    expect(swept).toContainEqual({ captureId: a.captureId, instanceId: id });
    expect((await manifestOf(world, a.captureId)).hosts[id]!.status).toBe('timed-out');
  }, 60_000);
});
