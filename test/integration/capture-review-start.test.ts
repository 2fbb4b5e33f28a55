/**
 * startCapture when the SSM command could not be sent (moto; the SendCommand failure is
 * injected into the SSM client): nothing ran on the host, so nothing it guards may claim that
 * something did. The lock and the fingerprint's cooldown are both released, and the same
 * finding can start its capture as soon as SSM answers again.
 */
import { SSMServiceException } from '@aws-sdk/client-ssm';
import { describe, expect, it } from 'vitest';
import { startCapture } from '../../shared/capture/start-capture.ts';
import { cooldownKey, lockKey, readLease } from '../../shared/evidence/guards.ts';
import { makeCaptureWorld, makeTopology } from '../fixtures/capture/world.ts';
import { motoClients } from '../support/aws.ts';
import { manifestOf, worldEvidenceStore } from '../support/capture-evidence.ts';

type Middleware = (
  next: (args: unknown) => Promise<unknown>,
  ctx: { commandName?: string },
) => (args: unknown) => Promise<unknown>;

/** moto clients whose SSM SendCommand fails (throttled) while `failing.on` is true. */
function clientsWithFailingSend() {
  const clients = motoClients();
  const failing = { on: true };
  const middleware: Middleware = (next, ctx) => async (args) => {
    if (failing.on && ctx.commandName === 'SendCommandCommand') {
      throw new SSMServiceException({
        name: 'ThrottlingException',
        $fault: 'client',
        $metadata: { httpStatusCode: 400 },
        message: 'injected: Rate exceeded',
      });
    }
    return next(args);
  };
  clients.ssm.middlewareStack.add(middleware as never, { step: 'initialize', name: 'failSend' });
  return { clients, failing };
}

describe('startCapture after a failed SendCommand (moto)', () => {
  it('releases the lock and the cooldown, so the same finding can capture once SSM answers', async () => {
    const world = await makeCaptureWorld({ COOLDOWN_SECONDS: '900', HOURLY_CAPTURE_BUDGET: '50' });
    const topo = await makeTopology(world, 245);
    const id = topo.nat.instanceId;
    const { clients, failing } = clientsWithFailingSend();
    const deps = { ...world.deps, clients };
    const request = {
      targets: { kind: 'instances' as const, instanceIds: [id] },
      reason: 'IR-245 port zero burst',
      fingerprint: 'port-zero:10.245.1.5:198.51.100.9',
      source: 'detector' as const,
    };

    const first = await startCapture(request, deps);

    expect(first.started).toEqual([]);
    expect(first.refused).toEqual([
      expect.objectContaining({ instanceId: id, reason: 'send-failed' }),
    ]);
    expect(first.refused[0]!.message).toContain('Rate exceeded');
    const store = worldEvidenceStore(world);
    expect((await readLease(store, lockKey(id)))?.lease?.state).toBe('released');
    expect((await readLease(store, cooldownKey(request.fingerprint, id)))?.lease).toMatchObject({
      state: 'released',
      captureId: first.captureId,
    });
    expect((await manifestOf(world, first.captureId)).hosts[id]?.status).toBe('failed');

    // SSM answers again: the finding's next report captures (it is not "cooling down" after a
    // capture that never ran)
    failing.on = false;
    const second = await startCapture(request, deps);
    expect(second.refused).toEqual([]);
    expect(second.started.map((s) => s.instanceId)).toEqual([id]);
  }, 60_000);
});
