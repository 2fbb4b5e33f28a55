/**
 * A flood of identical capture requests while their fingerprint cools down on the host (what
 * a detector re-reporting one anomaly produces): the first refusal of each cooldown window is
 * recorded (manifest) and published; the rest are returned, logged and counted, but write
 * nothing to the evidence bucket and publish nothing.
 */
import { describe, expect, it } from 'vitest';
import { type CaptureDeps, startCapture } from '../../shared/capture/start-capture.ts';
import { mapLimit } from '../../shared/map-limit.ts';
import type { CoreLogger } from '../../shared/observability.ts';
import { makeCaptureWorld, makeTopology } from '../fixtures/capture/world.ts';
import { motoClients, objectVersions } from '../support/aws.ts';
import { countCommands } from '../support/command-counter.ts';
import { detectorPortZeroRequest } from '../support/detector-request.ts';

/** Clients against moto that count the calls that write or notify. */
function countingClients() {
  const clients = motoClients();
  const calls = countCommands(clients.s3, clients.sns, clients.eventBridge, clients.ssm);
  return { clients, calls };
}

/** Every object version in the bucket (writes are versions: nothing is ever overwritten). */
async function versionCount(deps: CaptureDeps): Promise<number> {
  const versions = await objectVersions(deps.clients.s3, deps.config.EVIDENCE_BUCKET);
  return [...versions.values()].reduce((sum, n) => sum + n, 0);
}

async function flood(count: number, run: () => Promise<Awaited<ReturnType<typeof startCapture>>>) {
  return mapLimit(Array.from({ length: count }), 10, run);
}

describe('a flood of cooldown refusals', () => {
  it('records and publishes the first refusal per fingerprint, host and window; the rest only count', async () => {
    const world = await makeCaptureWorld({
      COOLDOWN_SECONDS: '900',
      LOCK_TTL_SECONDS: '60',
      HOURLY_CAPTURE_BUDGET: '100',
    });
    const topo = await makeTopology(world, 80);
    const { clients, calls } = countingClients();
    const suppressedLogs: unknown[] = [];
    const logger: CoreLogger = {
      ...world.deps.logger,
      info: (message: string, extra?: unknown) => {
        if (String(message).includes('not recorded again')) suppressedLogs.push(extra);
      },
    } as CoreLogger;
    let clock = new Date();
    const deps: CaptureDeps = { ...world.deps, clients, logger, now: () => clock };
    const request = detectorPortZeroRequest(topo.nat.instanceId, {
      workload: '10.80.1.5',
      peer: '198.51.100.66',
    });

    const first = await startCapture(request, deps);
    expect(first.started).toHaveLength(1);

    const before = await versionCount(deps);
    calls.clear();
    const outcomes = await flood(100, () => startCapture(request, deps));
    expect(outcomes).toHaveLength(100);
    for (const o of outcomes) {
      expect(o.started).toEqual([]);
      expect(o.refused.map((r) => r.reason)).toEqual(['cooldown']);
    }
    const recorded = outcomes.filter((o) => o.recorded !== false);
    expect(recorded).toHaveLength(1);
    const quiet = outcomes.filter((o) => o.recorded === false);
    expect(quiet).toHaveLength(99);
    expect(quiet.every((o) => o.reportedBy?.includes(recorded[0]!.captureId))).toBe(true);
    expect(suppressedLogs).toHaveLength(99);

    // Bounded: the refusal notice and one manifest, one publication on each channel.
    expect((await versionCount(deps)) - before).toBe(2);
    expect(calls.get('PublishCommand') ?? 0).toBe(1);
    expect(calls.get('PutEventsCommand') ?? 0).toBe(1);
    expect(calls.get('SendCommandCommand') ?? 0).toBe(0);
    // Refused before the host lock is touched: the only PUT attempts are the notice races
    // (each a conditional create) and the one manifest.
    expect(calls.get('PutObjectCommand') ?? 0).toBeLessThanOrEqual(100 + 1);

    // The next window: the capture runs again, and its first refusal is recorded again.
    clock = new Date(clock.getTime() + 901_000);
    const again = await startCapture(request, deps);
    expect(again.started).toHaveLength(1);
    const second = await flood(20, () => startCapture(request, deps));
    expect(second.filter((o) => o.recorded !== false)).toHaveLength(1);
    expect(second.filter((o) => o.recorded === false)).toHaveLength(19);
  }, 120_000);

  it('still records every refusal that is not only a cooldown (busy host, other fingerprints)', async () => {
    const world = await makeCaptureWorld({ COOLDOWN_SECONDS: '900' });
    const topo = await makeTopology(world, 81);
    const deps: CaptureDeps = world.deps;
    const base = {
      targets: { kind: 'instances' as const, instanceIds: [topo.nat.instanceId] },
      reason: 'detector finding',
      durationSeconds: 60,
    };
    const first = await startCapture({ ...base, fingerprint: 'rare-protocol:a:b' }, deps);
    expect(first.started).toHaveLength(1);
    // Another fingerprint on the busy host: host-busy, recorded each time.
    const busy = await Promise.all(
      [1, 2, 3].map(() => startCapture({ ...base, fingerprint: 'port-scan:c:d' }, deps)),
    );
    for (const o of busy) {
      expect(o.refused.map((r) => r.reason)).toEqual(['host-busy']);
      expect(o.recorded).toBeUndefined();
    }
  }, 60_000);
});
