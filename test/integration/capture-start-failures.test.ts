/**
 * startCapture when an AWS call fails part-way (moto; the failures are injected into the
 * clients): nothing ran on the host, so nothing it guards may claim that something did. After a
 * failed SendCommand the lock and the fingerprint's cooldown are both released, and the same
 * finding can start its capture as soon as SSM answers again; an S3 error while one host's
 * guards are taken refuses that host with the cause, gives back what it took, and still starts
 * the other hosts (no exception); a manifest that cannot be written gives its guards back and
 * sends nothing; a manifest write that fails after the command went out is reported with the
 * running capture, not thrown.
 */
import { SSMServiceException } from '@aws-sdk/client-ssm';
import { describe, expect, it } from 'vitest';
import { DocumentParameterError } from '../../shared/capture/errors.ts';
import { startCapture } from '../../shared/capture/start-capture.ts';
import { sweepTimedOutCaptures } from '../../shared/capture/track-capture.ts';
import { cooldownKey, lockKey, readLease } from '../../shared/evidence/guards.ts';
import { makeCaptureWorld, makeTopology } from '../fixtures/capture/world.ts';
import { motoClients } from '../support/aws.ts';
import { manifestOf, worldEvidenceStore } from '../support/capture-evidence.ts';
import { hostCapture, worldWithNatHost } from '../support/capture-host-world.ts';
import {
  injectedS3Error,
  isManifestCreate,
  isManifestUpdate,
  type PutInput,
  type SdkMiddleware,
} from '../support/lost-s3-answer.ts';

/** moto clients whose SSM SendCommand fails (throttled) while `failing.on` is true. */
function clientsWithFailingSend() {
  const clients = motoClients();
  const failing = { on: true };
  const middleware: SdkMiddleware = (next, ctx) => async (args) => {
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
    const { world, id } = await worldWithNatHost(245, {
      COOLDOWN_SECONDS: '900',
      HOURLY_CAPTURE_BUDGET: '50',
    });
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

  it('an S3 error while one host is guarded refuses that host with the cause and releases its lock', async () => {
    const world = await makeCaptureWorld({ COOLDOWN_SECONDS: '900', HOURLY_CAPTURE_BUDGET: '50' });
    const topo = await makeTopology(world, 246);
    const failingHost = topo.nat.instanceId;
    const clients = motoClients();
    // the budget slot write for one host fails (S3 503 SlowDown), after its lock and cooldown
    const middleware: SdkMiddleware = (next, ctx) => async (args) => {
      const input = (args as { input: { Key?: string; Body?: unknown } }).input;
      if (
        ctx.commandName === 'PutObjectCommand' &&
        String(input.Key).startsWith('budget/') &&
        String(input.Body).includes(failingHost)
      ) {
        throw injectedS3Error('SlowDown', 503, 'injected: Please reduce your request rate.');
      }
      return next(args);
    };
    clients.s3.middlewareStack.add(middleware as never, { step: 'initialize', name: 'failSlot' });
    const request = {
      targets: { kind: 'instances' as const, instanceIds: [failingHost, topo.sensor.instanceId] },
      reason: 'IR-246 two hosts',
      fingerprint: 'port-zero:10.246.1.5:198.51.100.9',
      source: 'detector' as const,
    };

    const outcome = await startCapture(request, { ...world.deps, clients });

    expect(outcome.started.map((s) => s.instanceId)).toEqual([topo.sensor.instanceId]);
    expect(outcome.refused).toEqual([
      expect.objectContaining({ instanceId: failingHost, reason: 'guard-failed' }),
    ]);
    expect(outcome.refused[0]!.message).toContain('SlowDown (HTTP 503)');
    const store = worldEvidenceStore(world);
    expect((await readLease(store, lockKey(failingHost)))?.lease?.state).toBe('released');
    expect(
      (await readLease(store, cooldownKey(request.fingerprint, failingHost)))?.lease?.state,
    ).toBe('released');
    const manifest = await manifestOf(world, outcome.captureId);
    expect(manifest.hosts[failingHost]?.status).toBe('refused');
    expect(manifest.hosts[failingHost]?.errors.join('\n')).toContain('SlowDown');
    expect(manifest.hosts[topo.sensor.instanceId]?.status).toBe('running');
  }, 60_000);

  it('a manifest write that fails after the command went out does not hide the running capture', async () => {
    const { world, id } = await worldWithNatHost(249, { HOURLY_CAPTURE_BUDGET: '50' });
    const clients = motoClients();
    // every update of an existing manifest fails (S3 500), the first version is written
    const middleware: SdkMiddleware = (next, ctx) => async (args) => {
      const input = (args as { input: PutInput }).input;
      if (ctx.commandName === 'PutObjectCommand' && isManifestUpdate(input)) {
        throw injectedS3Error('InternalError', 500, 'injected: We encountered an internal error.');
      }
      return next(args);
    };
    clients.s3.middlewareStack.add(middleware as never, { step: 'initialize', name: 'failUpdate' });
    const t0 = new Date();

    const outcome = await startCapture(hostCapture(id, 'IR-249 manifest update fails'), {
      ...world.deps,
      clients,
      now: () => t0,
    });

    // the command is out: the caller hears that the capture runs, and why the record lags
    expect(outcome.started.map((s) => s.instanceId)).toEqual([id]);
    expect(outcome.state).toBe('running');
    expect(outcome.manifestNotUpdated).toMatchObject({ name: 'InternalError', status: 500 });
    expect((await manifestOf(world, outcome.captureId)).hosts[id]?.status).toBe('pending');
    // if the host then never reports, the time-out says the send was never recorded
    const swept = await sweepTimedOutCaptures({
      ...world.deps,
      now: () => new Date(t0.getTime() + 931_000),
    });
    expect(swept).toEqual([{ captureId: outcome.captureId, instanceId: id }]);
    const errors = (await manifestOf(world, outcome.captureId)).hosts[id]!.errors.join('\n');
    expect(errors).toContain('the manifest never recorded the command as sent to this host');
  }, 60_000);

  it('a parameter the document would refuse is a typed error before any guard or command', async () => {
    const { world, id } = await worldWithNatHost(250);
    const attempt = startCapture(
      { targets: { kind: 'instances', instanceIds: [id] }, reason: 'IR-250 odd capture ID' },
      { ...world.deps, newId: () => 'cap-manual-1' },
    );
    await expect(attempt).rejects.toBeInstanceOf(DocumentParameterError);
    await expect(attempt).rejects.toMatchObject({ details: { parameter: 'CaptureId' } });
    expect(await readLease(worldEvidenceStore(world), lockKey(id))).toBeUndefined();
  }, 60_000);

  it('a manifest that cannot be written gives the guards back and sends nothing', async () => {
    const { world, id } = await worldWithNatHost(254, {
      COOLDOWN_SECONDS: '900',
      HOURLY_CAPTURE_BUDGET: '50',
    });
    const clients = motoClients();
    const failing = { on: true };
    let sent = 0;
    const middleware: SdkMiddleware = (next, ctx) => async (args) => {
      const input = (args as { input: PutInput }).input;
      if (ctx.commandName === 'SendCommandCommand') sent++;
      if (failing.on && ctx.commandName === 'PutObjectCommand' && isManifestCreate(input)) {
        throw injectedS3Error('ServiceUnavailable', 503, 'injected: Service Unavailable');
      }
      return next(args);
    };
    clients.s3.middlewareStack.add(middleware as never, { step: 'initialize', name: 'failCreate' });
    clients.ssm.middlewareStack.add(middleware as never, { step: 'initialize', name: 'countSend' });
    const request = {
      targets: { kind: 'instances' as const, instanceIds: [id] },
      reason: 'IR-254 manifest write fails',
      fingerprint: 'port-zero:10.254.1.5:198.51.100.9',
      source: 'detector' as const,
    };

    await expect(startCapture(request, { ...world.deps, clients })).rejects.toMatchObject({
      name: 'ServiceUnavailable',
    });

    expect(sent).toBe(0);
    const store = worldEvidenceStore(world);
    expect((await readLease(store, lockKey(id)))?.lease?.state).toBe('released');
    expect((await readLease(store, cooldownKey(request.fingerprint, id)))?.lease?.state).toBe(
      'released',
    );
    // the retry of the same finding starts at once (not "busy", not "cooling down")
    failing.on = false;
    const retried = await startCapture(request, { ...world.deps, clients });
    expect(retried.refused).toEqual([]);
    expect(retried.started.map((s) => s.instanceId)).toEqual([id]);
  }, 60_000);
});
