/**
 * A manifest update (IfMatch) that S3 stored but whose answer was lost: the SDK retries the PUT
 * and S3 answers 412, because the manifest now is the one this very call wrote. Since
 * duplicate deliveries change and publish nothing (c2f62ee), a caller that took that 412 for
 * someone else's write re-read the manifest, found the host already final and went quiet: the
 * host's result was recorded but "Capture Updated"/"Capture Finished" never sent, and a sweep
 * that closed a host never announced it. updateManifest must recognise its own write. (moto;
 * the lost answer is injected below the SDK's retry.)
 */
import { S3ServiceException } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { type CaptureDeps, startCapture } from '../../shared/capture/start-capture.ts';
import { applyHostResult, sweepTimedOutCaptures } from '../../shared/capture/track-capture.ts';
import { makeCaptureWorld, makeTopology } from '../fixtures/capture/world.ts';
import { motoClients } from '../support/aws.ts';
import { manifestOf } from '../support/capture-evidence.ts';

type Middleware = (
  next: (args: unknown) => Promise<unknown>,
  ctx: { commandName?: string },
) => (args: unknown) => Promise<unknown>;

/** moto clients whose first manifest update (IfMatch) is stored but answered with a 500. */
function clientsLosingFirstUpdateAnswer() {
  const clients = motoClients();
  const seen = { updates: 0 };
  const middleware: Middleware = (next, ctx) => async (args) => {
    const input = (args as { input: { Key?: string; IfMatch?: string } }).input;
    const out = await next(args);
    if (
      ctx.commandName === 'PutObjectCommand' &&
      String(input.Key).startsWith('captures/') &&
      input.IfMatch !== undefined &&
      seen.updates++ === 0
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
  return { clients, seen };
}

describe('a manifest update whose answer was lost (moto)', () => {
  it('applyHostResult still releases the host and publishes its result', async () => {
    const world = await makeCaptureWorld({ HOURLY_CAPTURE_BUDGET: '50' });
    const topo = await makeTopology(world, 236);
    const id = topo.nat.instanceId;
    const started = await startCapture(
      {
        targets: { kind: 'instances', instanceIds: [id] },
        reason: 'IR-236 lost update answer',
        durationSeconds: 30,
      },
      world.deps,
    );
    const { clients, seen } = clientsLosingFirstUpdateAnswer();

    const tracked = await applyHostResult(
      {
        captureId: started.captureId,
        instanceId: id,
        commandId: started.started[0]!.commandId,
        ssmStatus: 'Failed',
        stdout: '',
      },
      { ...world.deps, clients },
    );

    expect(seen.updates).toBeGreaterThan(1); // the SDK retried the update
    expect(tracked).toMatchObject({ hostStatus: 'failed', state: 'failed', lockReleased: true });
    expect(tracked).not.toHaveProperty('ignored');
    const manifest = await manifestOf(world, started.captureId);
    expect(manifest.history.filter((h) => h.event === 'host-finished')).toHaveLength(1);
  }, 60_000);

  it('the timed-out sweep still reports the host it closed', async () => {
    const world = await makeCaptureWorld({ HOURLY_CAPTURE_BUDGET: '50' });
    const topo = await makeTopology(world, 237);
    const id = topo.nat.instanceId;
    const t0 = new Date();
    const at = (deps: CaptureDeps, t: Date): CaptureDeps => ({ ...deps, now: () => t });
    const started = await startCapture(
      {
        targets: { kind: 'instances', instanceIds: [id] },
        reason: 'IR-237 lost sweep answer',
        durationSeconds: 30,
      },
      at(world.deps, t0),
    );
    const { clients } = clientsLosingFirstUpdateAnswer();

    const swept = await sweepTimedOutCaptures(
      at({ ...world.deps, clients }, new Date(t0.getTime() + 3_600_000)),
    );

    expect(swept).toEqual([{ captureId: started.captureId, instanceId: id }]);
    const manifest = await manifestOf(world, started.captureId);
    expect(manifest.hosts[id]!.status).toBe('timed-out');
    expect(manifest.history.filter((h) => h.event === 'host-timed-out')).toHaveLength(1);
  }, 60_000);
});
