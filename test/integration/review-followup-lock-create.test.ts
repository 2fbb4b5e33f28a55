/**
 * A guard write (`IfNoneMatch: '*'` on the host lock) that S3 stored but whose answer was lost:
 * the SDK retries the PUT and S3 answers 412 for the lock this very capture just wrote. That is
 * not another capture holding the host: the capture goes on, instead of being refused as
 * "host-busy" by itself and leaving a lock that names a capture that never ran. (moto; the lost
 * answer is injected below the SDK's retry.)
 */
import { S3ServiceException } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { startCapture } from '../../shared/capture/start-capture.ts';
import { lockKey, readLease } from '../../shared/evidence/guards.ts';
import { makeCaptureWorld, makeTopology } from '../fixtures/capture/world.ts';
import { motoClients } from '../support/aws.ts';
import { manifestOf, worldEvidenceStore } from '../support/capture-evidence.ts';

type Middleware = (
  next: (args: unknown) => Promise<unknown>,
  ctx: { commandName?: string },
) => (args: unknown) => Promise<unknown>;

describe('startCapture when the answer to its lock write is lost (moto)', () => {
  it('a retried lock create that finds its own lock takes the host', async () => {
    const world = await makeCaptureWorld({ HOURLY_CAPTURE_BUDGET: '50' });
    const topo = await makeTopology(world, 235);
    const id = topo.nat.instanceId;
    const clients = motoClients();
    const seen = { lost: 0 };
    const middleware: Middleware = (next, ctx) => async (args) => {
      const input = (args as { input: { Key?: string; IfNoneMatch?: string } }).input;
      const out = await next(args);
      if (
        ctx.commandName === 'PutObjectCommand' &&
        input.Key === lockKey(id) &&
        input.IfNoneMatch === '*' &&
        seen.lost++ === 0
      ) {
        throw new S3ServiceException({
          name: 'InternalError',
          $fault: 'server',
          $metadata: { httpStatusCode: 500 },
          message: 'injected: the write was stored, the answer lost',
        });
      }
      return out;
    };
    clients.s3.middlewareStack.add(middleware as never, { step: 'deserialize', name: 'lose' });

    const outcome = await startCapture(
      {
        targets: { kind: 'instances', instanceIds: [id] },
        reason: 'IR-235 lost lock answer',
        durationSeconds: 30,
      },
      { ...world.deps, clients },
    );

    expect(seen.lost).toBeGreaterThan(1); // the SDK did retry the create
    expect(outcome.refused).toEqual([]);
    expect(outcome.started.map((s) => s.instanceId)).toEqual([id]);
    expect((await manifestOf(world, outcome.captureId)).hosts[id]!.status).toBe('running');
    expect((await readLease(worldEvidenceStore(world), lockKey(id)))?.lease).toMatchObject({
      captureId: outcome.captureId,
      state: 'held',
    });
  }, 60_000);
});
