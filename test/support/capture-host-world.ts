/**
 * The set-up the capture review tests share: a capture world with one NAT host, the capture
 * requests they send for it, a clock they move by hand, the rolling (scheduled) capture deps,
 * and the report of a host whose capture failed.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { CaptureRequestInput } from '../../shared/capture/request.ts';
import {
  type CaptureDeps,
  type CaptureOutcome,
  startCapture,
} from '../../shared/capture/start-capture.ts';
import type { HostResultInput } from '../../shared/capture/track-capture.ts';
import { type CaptureWorld, makeCaptureWorld, makeTopology } from '../fixtures/capture/world.ts';

/** `deps` with a clock stopped at `t`. */
export const at = (deps: CaptureDeps, t: Date): CaptureDeps => ({ ...deps, now: () => t });

/** `t` moved on by `seconds`. */
export const plus = (t: Date, seconds: number): Date => new Date(t.getTime() + seconds * 1000);

/** The deps of a rolling capture: long, budget-exempt, taking over a lock ending within 60 s. */
export const rolling: Partial<CaptureDeps> = {
  durationCeiling: 600,
  budgetExempt: true,
  takeOverEndingWithinSeconds: 60,
};

/** A capture world (config `env` overrides) with a topology on `octet`; `id` is its NAT host. */
export async function worldWithNatHost(
  octet: number,
  env: Record<string, string> = {},
): Promise<{ world: CaptureWorld; id: string }> {
  const world = await makeCaptureWorld(env);
  const topo = await makeTopology(world, octet);
  return { world, id: topo.nat.instanceId };
}

/** A 30-second capture of the one host `id`. */
export function hostCapture(id: string, reason: string): CaptureRequestInput {
  return { targets: { kind: 'instances', instanceIds: [id] }, reason, durationSeconds: 30 };
}

/** A scheduled 600-second capture of the one host `id`, as the rolling capture sends it. */
export function rollingCapture(id: string, reason: string): CaptureRequestInput {
  return {
    targets: { kind: 'instances', instanceIds: [id] },
    reason,
    durationSeconds: 600,
    source: 'schedule',
  };
}

/** The result of host `id` in `capture` whose SSM command failed without output. */
export function failedHostResult(capture: CaptureOutcome, id: string): HostResultInput {
  return {
    captureId: capture.captureId,
    instanceId: id,
    commandId: capture.started[0]!.commandId,
    ssmStatus: 'Failed',
    stdout: '',
  };
}

/** Starts the rolling capture `reason` of host `id` at `t` with `deps` (and the rolling deps). */
export function startRolling(
  deps: CaptureDeps,
  id: string,
  reason: string,
  t: Date,
): Promise<CaptureOutcome> {
  return startCapture(rollingCapture(id, reason), { ...at(deps, t), ...rolling });
}

/**
 * Rolling capture A of host `id` at `t0`, then rolling capture B 30 s before A ends (at
 * `t0 + 570 s`), which takes over A's live lock.
 */
export async function rollingTakeover(
  world: CaptureWorld,
  id: string,
  t0: Date,
): Promise<{ a: CaptureOutcome; b: CaptureOutcome }> {
  const a = await startRolling(world.deps, id, 'rolling A', t0);
  const b = await startRolling(world.deps, id, 'rolling B', plus(t0, 570));
  return { a, b };
}

/** Overwrites `key` with `body` as a stray writer would (no condition, SSE-KMS as required). */
export async function overwrite(world: CaptureWorld, key: string, body: string): Promise<void> {
  await world.clients.s3.send(
    new PutObjectCommand({
      Bucket: world.config.EVIDENCE_BUCKET,
      Key: key,
      Body: body,
      ServerSideEncryption: 'aws:kms',
      SSEKMSKeyId: world.keyArn,
    }),
  );
}

/** The result of host `id` in `capture` whose SSM command succeeded and printed `report`. */
export function reportedHostResult(
  capture: CaptureOutcome,
  id: string,
  report: unknown,
): HostResultInput {
  return {
    captureId: capture.captureId,
    instanceId: id,
    commandId: capture.started[0]!.commandId,
    ssmStatus: 'Success',
    stdout: `${JSON.stringify(report)}\n`,
  };
}
