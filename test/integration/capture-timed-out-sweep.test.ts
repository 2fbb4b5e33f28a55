/**
 * The timed-out sweep closes every host that never reported, also when the host's lock cannot be
 * trusted (a corrupt lock: the manifest's own deadline decides, the lock stays held and the
 * record says so), and one capture it cannot update (an unreadable manifest: a typed error
 * naming the record) does not stop it from closing the others (moto).
 */
import { describe, expect, it } from 'vitest';
import { startCapture } from '../../shared/capture/start-capture.ts';
import { sweepTimedOutCaptures } from '../../shared/capture/track-capture.ts';
import { lockKey, readLease } from '../../shared/evidence/guards.ts';
import {
  ManifestUnreadableError,
  manifestKey,
  readManifest,
} from '../../shared/evidence/manifest.ts';
import { readStoredJson } from '../../shared/evidence/store.ts';
import { makeCaptureWorld, makeTopology } from '../fixtures/capture/world.ts';
import { motoClients } from '../support/aws.ts';
import { manifestOf, worldEvidenceStore } from '../support/capture-evidence.ts';
import { overwrite, worldWithNatHost } from '../support/capture-host-world.ts';
import { injectedS3Error } from '../support/lost-s3-answer.ts';
import { loggerRecordingErrors } from '../support/recording-logger.ts';

const request = (instanceId: string, reason: string) => ({
  targets: { kind: 'instances' as const, instanceIds: [instanceId] },
  reason,
  durationSeconds: 30,
  source: 'manual' as const,
});

describe('timed-out sweep (moto)', () => {
  it('closes a host whose lock is corrupt by its manifest deadline, keeps the lock held and says why', async () => {
    const world = await makeCaptureWorld({ HOURLY_CAPTURE_BUDGET: '50' });
    const topo = await makeTopology(world, 240);
    const store = worldEvidenceStore(world);
    const t0 = new Date();
    const at = { ...world.deps, now: () => t0 };
    // one lock loses a field (still JSON, names its capture), the other is not JSON at all
    const fieldLost = await startCapture(request(topo.nat.instanceId, 'IR-240 field lost'), at);
    const garbled = await startCapture(request(topo.sensor.instanceId, 'IR-240 garbled'), at);
    expect([...fieldLost.started, ...garbled.started]).toHaveLength(2);
    const natKey = lockKey(topo.nat.instanceId);
    const { expiresAt: _dropped, ...rest } = (await readLease(store, natKey))!.lease!;
    await overwrite(world, natKey, JSON.stringify(rest));
    const sensorKey = lockKey(topo.sensor.instanceId);
    await overwrite(world, sensorKey, '{"state":"held",');

    // before the manifest's deadline (start + 30 s + 900 s grace) nothing is closed
    const early = new Date(t0.getTime() + 929_000);
    expect(await sweepTimedOutCaptures({ ...world.deps, now: () => early })).toEqual([]);
    expect((await manifestOf(world, fieldLost.captureId)).state).toBe('running');

    const { logger, errors } = loggerRecordingErrors(world.deps.logger);
    const late = new Date(t0.getTime() + 931_000);
    const swept = await sweepTimedOutCaptures({ ...world.deps, logger, now: () => late });

    expect(swept).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          captureId: fieldLost.captureId,
          instanceId: topo.nat.instanceId,
          lockCorrupt: 'expiresAt is missing',
        }),
        expect.objectContaining({
          captureId: garbled.captureId,
          instanceId: topo.sensor.instanceId,
          lockCorrupt: 'the lease is not a JSON object',
        }),
      ]),
    );
    for (const [started, id, key, problem] of [
      [fieldLost, topo.nat.instanceId, natKey, 'expiresAt is missing'],
      [garbled, topo.sensor.instanceId, sensorKey, 'the lease is not a JSON object'],
    ] as const) {
      const manifest = await manifestOf(world, started.captureId);
      expect(manifest.state).toBe('failed');
      const host = manifest.hosts[id]!;
      expect(host.status).toBe('timed-out');
      expect(host.errors.join('\n')).toContain(`no report from the host by its deadline`);
      expect(host.errors.join('\n')).toContain(`${key} is corrupt (${problem})`);
      expect(host.errors.join('\n')).toContain('not released');
      expect(manifest.history.at(-2)).toMatchObject({
        event: 'host-timed-out',
        instanceId: id,
        lockCorrupt: problem,
      });
      expect(manifest.history.at(-1)).toMatchObject({ event: 'capture-finished', state: 'failed' });
    }
    // the corrupt locks are as they were: still holding their hosts (fail closed), unreleased
    expect((await readLease(store, natKey))?.lease).toEqual(rest);
    const garbledNow = await readStoredJson(store, sensorKey);
    expect(garbledNow?.parsed).toBe(false);
    expect(errors.map((e) => e.message)).toContain('corrupt host lock treated as held');

    // a second run changes nothing more: the custody record is written once
    const versionsBefore = (await manifestOf(world, fieldLost.captureId)).history.length;
    const again = await sweepTimedOutCaptures({ ...world.deps, now: () => late });
    expect(again).toEqual([]);
    expect((await manifestOf(world, fieldLost.captureId)).history).toHaveLength(versionsBefore);
  }, 60_000);

  it('a capture whose manifest cannot be read does not stop the sweep closing the others', async () => {
    const world = await makeCaptureWorld({ HOURLY_CAPTURE_BUDGET: '50' });
    const topo = await makeTopology(world, 241);
    const t0 = new Date();
    const at = { ...world.deps, now: () => t0 };
    const hosts = [topo.nat.instanceId, topo.sensor.instanceId, topo.workload.instanceId];
    const captures = [];
    for (const id of hosts) captures.push(await startCapture(request(id, 'IR-241 sweep'), at));
    expect(captures.flatMap((c) => c.started)).toHaveLength(3);
    // the middle capture's manifest is damaged (whatever the listing order, one good capture
    // comes after the bad one or before it; both must be closed)
    await overwrite(world, manifestKey(captures[1]!.captureId), 'not a manifest');

    const { logger, errors } = loggerRecordingErrors(world.deps.logger);
    const late = new Date(t0.getTime() + 931_000);
    const swept = await sweepTimedOutCaptures({ ...world.deps, logger, now: () => late });

    expect(swept.map((s) => s.captureId).sort()).toEqual(
      [captures[0]!.captureId, captures[2]!.captureId].sort(),
    );
    for (const c of [captures[0]!, captures[2]!]) {
      expect((await manifestOf(world, c.captureId)).state).toBe('failed');
    }
    // the damaged one is reported with its cause and its lock stays held for the next run
    expect(errors).toContainEqual({
      message: 'timed-out sweep could not close a host',
      extra: expect.objectContaining({
        captureId: captures[1]!.captureId,
        instanceId: hosts[1],
        error: expect.objectContaining({
          name: 'ManifestUnreadableError',
          code: 'INTEGRITY_MISMATCH',
          message: expect.stringContaining(`captures/${captures[1]!.captureId}/manifest.json`),
        }),
      }),
    });
    const lock = await readLease(worldEvidenceStore(world), lockKey(hosts[1]!));
    expect(lock?.lease?.state).toBe('held');
    // JSON that is not a manifest is as unreadable, not a TypeError deep in a reader
    await overwrite(world, manifestKey(captures[1]!.captureId), 'null');
    await expect(
      readManifest(worldEvidenceStore(world), captures[1]!.captureId),
    ).rejects.toBeInstanceOf(ManifestUnreadableError);
  }, 60_000);

  it('without access to lock versions, a corrupt lock that still names its capture closes it', async () => {
    const { world, id } = await worldWithNatHost(253);
    const store = worldEvidenceStore(world);
    const t0 = new Date();
    const started = await startCapture(request(id, 'IR-253 no versions'), {
      ...world.deps,
      now: () => t0,
    });
    const key = lockKey(id);
    const { expiresAt: _dropped, ...rest } = (await readLease(store, key))!.lease!;
    await overwrite(world, key, JSON.stringify(rest));
    // a role without s3:ListBucketVersions on locks/*
    const clients = motoClients();
    clients.s3.middlewareStack.add(
      ((next: (a: unknown) => Promise<unknown>, ctx: { commandName?: string }) =>
        async (args: { input: { Prefix?: string } }) => {
          if (
            ctx.commandName === 'ListObjectVersionsCommand' &&
            args.input.Prefix?.startsWith('locks/')
          ) {
            throw injectedS3Error('AccessDenied', 403, 'injected: Access Denied');
          }
          return next(args);
        }) as never,
      { step: 'initialize', name: 'denyVersions' },
    );
    const { logger, errors } = loggerRecordingErrors(world.deps.logger);

    const swept = await sweepTimedOutCaptures({
      ...world.deps,
      clients,
      logger,
      now: () => new Date(t0.getTime() + 931_000),
    });

    expect(swept).toEqual([
      {
        captureId: started.captureId,
        instanceId: id,
        lockCorrupt: 'expiresAt is missing',
      },
    ]);
    expect(errors).toContainEqual({
      message: 'could not read the versions of a corrupt lock; using its current body',
      extra: expect.objectContaining({ key, error: expect.objectContaining({ status: 403 }) }),
    });
  }, 60_000);
});
