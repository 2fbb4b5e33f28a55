/**
 * The refusal-notice marker (the rate limit on cooldown refusal floods) fails open: when S3
 * refuses or fails the marker's read or claim (AccessDenied, 5xx, throttling), startCapture
 * still returns the cooldown refusal as its typed outcome, records it in the manifest (with the
 * marker failure in the history) and publishes it; nothing escapes as an exception. Normal path
 * on moto; the faults are injected into the S3 client for the marker keys only.
 */
import { PutObjectCommand, S3ServiceException } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { type CaptureDeps, startCapture } from '../../shared/capture/start-capture.ts';
import { refusalNoticeKey } from '../../shared/notify/notice-marker.ts';
import { makeCaptureWorld, makeTopology } from '../fixtures/capture/world.ts';
import { motoClients } from '../support/aws.ts';
import { manifestOf } from '../support/capture-evidence.ts';
import { countCommands } from '../support/command-counter.ts';
import { detectorPortZeroRequest } from '../support/detector-request.ts';
import { loggerRecordingErrors } from '../support/recording-logger.ts';

type Middleware = (
  next: (args: { input: Record<string, unknown> }) => Promise<unknown>,
  ctx: { commandName?: string },
) => (args: { input: Record<string, unknown> }) => Promise<unknown>;

interface Fault {
  name: string;
  status: number;
  fault: 'client' | 'server';
  /** Which marker call fails: its read (GetObject) or its claim (PutObject). */
  command: 'GetObjectCommand' | 'PutObjectCommand';
}

/** moto clients whose S3 calls on refusal-notice keys fail with `fault`; counts publications. */
function faultyClients(fault: Fault) {
  const clients = motoClients();
  const failing: Middleware = (next, ctx) => async (args) => {
    const key = String(args.input.Key ?? '');
    if (ctx.commandName === fault.command && key.endsWith('.refusal-notice.json')) {
      throw new S3ServiceException({
        name: fault.name,
        $fault: fault.fault,
        $metadata: { httpStatusCode: fault.status },
        message: `injected ${fault.name} on ${key}`,
      });
    }
    return next(args);
  };
  clients.s3.middlewareStack.add(failing as never, { step: 'initialize', name: 'injectFault' });
  const calls = countCommands(clients.sns, clients.eventBridge);
  return { clients, calls };
}

describe('refusal-notice marker faults in startCapture', () => {
  it('records, logs and publishes the cooldown refusal when the marker read or claim fails', async () => {
    const world = await makeCaptureWorld({ COOLDOWN_SECONDS: '900', HOURLY_CAPTURE_BUDGET: '50' });
    const topo = await makeTopology(world, 213);
    const request = detectorPortZeroRequest(topo.nat.instanceId, {
      workload: '10.213.1.5',
      peer: '198.51.100.9',
    });
    const first = await startCapture(request, world.deps);
    expect(first.started).toHaveLength(1);

    const faults: Fault[] = [
      { name: 'AccessDenied', status: 403, fault: 'client', command: 'GetObjectCommand' },
      { name: 'InternalError', status: 500, fault: 'server', command: 'PutObjectCommand' },
      { name: 'SlowDown', status: 503, fault: 'server', command: 'GetObjectCommand' },
      { name: 'ServiceUnavailable', status: 503, fault: 'server', command: 'PutObjectCommand' },
    ];
    for (const fault of faults) {
      const { clients, calls } = faultyClients(fault);
      const { logger, errors: logged } = loggerRecordingErrors(world.deps.logger);
      const deps: CaptureDeps = { ...world.deps, clients, logger };

      const outcome = await startCapture(request, deps);

      // the typed refusal, as before notice markers existed
      expect(outcome.state, fault.name).toBe('refused');
      expect(outcome.started).toEqual([]);
      expect(outcome.refused.map((r) => r.reason)).toEqual(['cooldown']);
      expect(outcome.refused[0]!.details).toMatchObject({ holder: first.captureId });
      expect(outcome.recorded).toBeUndefined();
      expect(outcome.refusalNoticeUnavailable).toEqual([
        {
          instanceId: topo.nat.instanceId,
          error: { name: fault.name, status: fault.status, message: expect.any(String) },
        },
      ]);
      // logged loudly
      expect(logged.map((l) => l.message)).toContain(
        'refusal notice marker unavailable; recording and publishing the refusal anyway',
      );
      // recorded: the manifest exists and its history says the rate limit was unavailable
      const manifest = await manifestOf(world, outcome.captureId);
      expect(manifest.state).toBe('refused');
      expect(manifest.hosts[topo.nat.instanceId]?.status).toBe('refused');
      const events = manifest.history.map((h) => h.event);
      expect(events).toEqual(expect.arrayContaining(['refusal-notice-unavailable', 'refused']));
      expect(manifest.history.find((h) => h.event === 'refusal-notice-unavailable')).toMatchObject({
        unavailable: [{ instanceId: topo.nat.instanceId, error: { name: fault.name } }],
      });
      // published, not silently dropped
      expect(calls.get('PublishCommand') ?? 0, fault.name).toBe(1);
      expect(calls.get('PutEventsCommand') ?? 0, fault.name).toBe(1);
    }

    // With S3 healthy again the rate limit works: the failed claims left no marker behind, so
    // the next refusal is the window's first (recorded), and the one after it is quiet.
    const healthy = await startCapture(request, world.deps);
    expect(healthy.recorded).toBeUndefined();
    expect(healthy.refusalNoticeUnavailable).toBeUndefined();
    const quiet = await startCapture(request, world.deps);
    expect(quiet.recorded).toBe(false);
    expect(quiet.reportedBy).toEqual([healthy.captureId]);

    // A corrupt marker (here: not JSON) is taken over by the next refusal, which is recorded,
    // and the takeover is logged as an error, not passed over in silence.
    await world.clients.s3.send(
      new PutObjectCommand({
        Bucket: world.config.EVIDENCE_BUCKET,
        Key: refusalNoticeKey(request.fingerprint, topo.nat.instanceId),
        Body: '{"state":"held","expiresAt":',
        ServerSideEncryption: 'aws:kms',
        SSEKMSKeyId: world.keyArn,
      }),
    );
    const { logger, errors } = loggerRecordingErrors(world.deps.logger);
    const afterCorrupt = await startCapture(request, { ...world.deps, logger });
    expect(afterCorrupt.recorded).toBeUndefined();
    expect(errors).toContainEqual({
      message: 'replaced a corrupt refusal-notice marker',
      extra: expect.objectContaining({ problem: expect.any(String) }),
    });
  }, 60_000);
});
