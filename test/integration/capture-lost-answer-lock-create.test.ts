/**
 * A guard write (`IfNoneMatch: '*'` on the host lock) that S3 stored but whose answer was lost:
 * the SDK retries the PUT and S3 answers 412 for the lock this very capture just wrote. That is
 * not another capture holding the host: the capture goes on, instead of being refused as
 * "host-busy" by itself and leaving a lock that names a capture that never ran. (moto; the lost
 * answer is injected below the SDK's retry.)
 */
import { describe, expect, it } from 'vitest';
import { startCapture } from '../../shared/capture/start-capture.ts';
import { lockKey, readLease } from '../../shared/evidence/guards.ts';
import { manifestOf, worldEvidenceStore } from '../support/capture-evidence.ts';
import { hostCapture, worldWithNatHost } from '../support/capture-host-world.ts';
import { clientsLosingFirstAnswer, isCreateOf } from '../support/lost-s3-answer.ts';

describe('startCapture when the answer to its lock write is lost (moto)', () => {
  it('a retried lock create that finds its own lock takes the host', async () => {
    const { world, id } = await worldWithNatHost(235, { HOURLY_CAPTURE_BUDGET: '50' });
    const { clients, seen } = clientsLosingFirstAnswer(isCreateOf(lockKey(id)));

    const outcome = await startCapture(hostCapture(id, 'IR-235 lost lock answer'), {
      ...world.deps,
      clients,
    });

    expect(seen.writes).toBeGreaterThan(1); // the SDK did retry the create
    expect(outcome.refused).toEqual([]);
    expect(outcome.started.map((s) => s.instanceId)).toEqual([id]);
    expect((await manifestOf(world, outcome.captureId)).hosts[id]!.status).toBe('running');
    expect((await readLease(worldEvidenceStore(world), lockKey(id)))?.lease).toMatchObject({
      captureId: outcome.captureId,
      state: 'held',
    });
  }, 60_000);
});
