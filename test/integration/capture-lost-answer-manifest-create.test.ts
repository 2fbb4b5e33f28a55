/**
 * startCapture's first manifest write is `IfNoneMatch: '*'`. When S3 stores it but the answer is
 * lost (a 500 or a dropped connection after the write), the SDK retries the PUT and S3 answers
 * 412: the manifest that "already exists" is this capture's own. That is not an ID collision:
 * the capture must go on (as it did before the collision check), not give its guards back and
 * leave its own manifest pending forever with nothing left that would ever close it. (moto; the
 * lost answer is injected below the SDK's retry.)
 */
import { describe, expect, it } from 'vitest';
import { CaptureIdCollisionError } from '../../shared/capture/errors.ts';
import { startCapture } from '../../shared/capture/start-capture.ts';
import { lockKey, readLease } from '../../shared/evidence/guards.ts';
import { motoClients } from '../support/aws.ts';
import { manifestOf, worldEvidenceStore } from '../support/capture-evidence.ts';
import { hostCapture, worldWithNatHost } from '../support/capture-host-world.ts';
import {
  clientsLosingFirstAnswer,
  isManifestCreate,
  type PutInput,
  type SdkMiddleware,
} from '../support/lost-s3-answer.ts';

describe('startCapture when the answer to its manifest write is lost (moto)', () => {
  it('a retried create that finds its own manifest goes on with the capture', async () => {
    const { world, id } = await worldWithNatHost(233, { HOURLY_CAPTURE_BUDGET: '50' });
    const { clients } = clientsLosingFirstAnswer(isManifestCreate);

    const outcome = await startCapture(hostCapture(id, 'IR-233 lost answer'), {
      ...world.deps,
      clients,
    });

    expect(outcome.started.map((s) => s.instanceId)).toEqual([id]);
    const manifest = await manifestOf(world, outcome.captureId);
    expect(manifest.state).toBe('running');
    expect(manifest.hosts[id]!.status).toBe('running');
    expect((await readLease(worldEvidenceStore(world), lockKey(id)))?.lease).toMatchObject({
      captureId: outcome.captureId,
      state: 'held',
    });
  }, 60_000);

  it('a manifest that exists with other content is still a collision: guards given back', async () => {
    const { world, id } = await worldWithNatHost(234, { HOURLY_CAPTURE_BUDGET: '50' });
    const clients = motoClients();
    // another writer's manifest appears under the new capture's ID just before ours
    const middleware: SdkMiddleware = (next, ctx) => async (args) => {
      const input = (args as { input: PutInput }).input;
      if (ctx.commandName === 'PutObjectCommand' && isManifestCreate(input)) {
        await next({
          ...(args as object),
          input: { ...input, IfNoneMatch: undefined, Body: '{}' },
        });
      }
      return next(args);
    };
    clients.s3.middlewareStack.add(middleware as never, { step: 'initialize', name: 'collide' });

    const attempt = startCapture(
      { targets: { kind: 'instances', instanceIds: [id] }, reason: 'IR-234 collision' },
      { ...world.deps, clients },
    );

    await expect(attempt).rejects.toBeInstanceOf(CaptureIdCollisionError);
    expect((await readLease(worldEvidenceStore(world), lockKey(id)))?.lease?.state).toBe(
      'released',
    );
  }, 60_000);
});
