/**
 * The three places that decide whether a lease holds (acquireLease, the notice markers'
 * claimNotice, startCapture's read-only cooldown check) decide with one rule
 * (guards.ts leaseLiveness) against the same stored objects in moto, including corrupt ones:
 * a corrupt lock or cooldown holds (fail closed, reported), until its S3 LastModified +
 * MAX_LEASE_SECONDS; a corrupt notice marker is taken over (a notice fails open).
 */
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { type CaptureDeps, startCapture } from '../../shared/capture/start-capture.ts';
import { sweepTimedOutCaptures } from '../../shared/capture/track-capture.ts';
import {
  acquireLease,
  cooldownKey,
  heldLocks,
  type Lease,
  lockKey,
  MAX_LEASE_SECONDS,
  peekLease,
  readLease,
  releaseLease,
} from '../../shared/evidence/guards.ts';
import { readManifest } from '../../shared/evidence/manifest.ts';
import type { EvidenceStore } from '../../shared/evidence/store.ts';
import { claimNotice, refusalNoticeKey } from '../../shared/notify/notice-marker.ts';
import { makeCaptureWorld, makeTopology } from '../fixtures/capture/world.ts';
import { motoClients, versionedBucketWithKey } from '../support/aws.ts';
import { manifestOf, worldEvidenceStore } from '../support/capture-evidence.ts';
import { loggerRecordingErrors } from '../support/recording-logger.ts';

const { s3, kms } = motoClients();

async function put(store: EvidenceStore, key: string, body: string): Promise<Date> {
  await s3.send(new PutObjectCommand({ Bucket: store.bucket, Key: key, Body: body }));
  const head = await s3.send(new HeadObjectCommand({ Bucket: store.bucket, Key: key }));
  return head.LastModified!;
}

const held = (expiresAt: unknown, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    kind: 'cooldown',
    state: 'held',
    captureId: 'cap-20261123T115500Z-0a1b2c3d',
    instanceId: 'i-0123456789abcdef0',
    createdAt: new Date().toISOString(),
    ...(expiresAt === undefined ? {} : { expiresAt }),
    ...extra,
  });

describe('one lease liveness rule for guards, notice markers and the capture core (moto)', () => {
  let store: EvidenceStore;
  beforeAll(async () => {
    const { bucket, keyArn } = await versionedBucketWithKey('tl-lease', undefined, { s3, kms });
    store = { s3, bucket, keyArn };
  });

  it('peekLease, acquireLease and claimNotice agree on past, exactly-now, future, released and corrupt leases', async () => {
    const now = new Date(Math.floor(Date.now() / 1000) * 1000);
    const iso = (seconds: number) => new Date(now.getTime() + seconds * 1000).toISOString();
    const cases: { name: string; body: string; live: boolean; corrupt?: boolean }[] = [
      { name: 'future', body: held(iso(600)), live: true },
      { name: 'past', body: held(iso(-1)), live: false },
      { name: 'exactly now', body: held(now.toISOString()), live: false },
      { name: 'released', body: held(iso(600), { state: 'released' }), live: false },
      { name: 'missing expiry', body: held(undefined), live: true, corrupt: true },
      { name: 'unparseable expiry', body: held('tomorrow-ish'), live: true, corrupt: true },
      { name: 'null expiry', body: held(null), live: true, corrupt: true },
      {
        name: 'unknown state',
        body: held(iso(600), { state: 'zombie' }),
        live: true,
        corrupt: true,
      },
      { name: 'JSON null', body: 'null', live: true, corrupt: true },
      { name: 'not JSON', body: '{"state":"held","expiresAt":', live: true, corrupt: true },
    ];
    for (const [n, c] of cases.entries()) {
      const instanceId = `i-0000000000000${String(n).padStart(4, '0')}`;
      const fingerprint = `liveness:${c.name}`;
      // the same object at a cooldown key and at its refusal-notice key
      const cooldown = cooldownKey(fingerprint, instanceId);
      const notice = refusalNoticeKey(fingerprint, instanceId);
      await put(store, cooldown, c.body);
      await put(store, notice, c.body);

      const peeked = await peekLease(store, cooldown, now);
      expect(peeked?.liveness.live, c.name).toBe(c.live);
      expect(peeked?.liveness.problem !== undefined, c.name).toBe(c.corrupt === true);

      const fresh: Lease = {
        kind: 'cooldown',
        state: 'held',
        captureId: 'cap-20261123T120000Z-00000001',
        instanceId,
        createdAt: now.toISOString(),
        expiresAt: iso(900),
      };
      const acquired = await acquireLease(store, cooldown, fresh, now);
      expect(acquired.acquired, c.name).toBe(!c.live);
      if (!acquired.acquired) {
        expect(acquired.problem !== undefined, c.name).toBe(c.corrupt === true);
        expect(acquired.until, c.name).toBeDefined();
      }

      const claim = await claimNotice(store, notice, {
        purpose: 'refusal-notice',
        reporter: 'cap-20261123T120000Z-00000002',
        fingerprint,
        instanceId,
        at: now,
        until: new Date(iso(900)),
      });
      // a sound marker agrees with the guards; a corrupt one is taken over (notices fail open)
      expect(claim.first, c.name).toBe(!c.live || c.corrupt === true);
      if (claim.first && c.corrupt) expect(claim.replacedCorrupt, c.name).toBeDefined();
      // whoever claimed, the marker is sound now: the next claimant in the window is suppressed
      const again = await claimNotice(store, notice, {
        purpose: 'refusal-notice',
        reporter: 'cap-20261123T120000Z-00000003',
        fingerprint,
        instanceId,
        at: now,
        until: new Date(iso(900)),
      });
      expect(again.first, c.name).toBe(false);
      expect(again.first === false && again.problem, c.name).toBeFalsy();
    }
  });

  it('a corrupt lease does not wedge the key: free once LastModified + MAX_LEASE_SECONDS has passed', async () => {
    const key = lockKey('i-0c0c0c0c0c0c0c0c0');
    const written = await put(store, key, held('never'));
    const lease: Lease = {
      kind: 'lock',
      state: 'held',
      captureId: 'cap-20261123T120000Z-0000c0c0',
      instanceId: 'i-0c0c0c0c0c0c0c0c0',
      createdAt: written.toISOString(),
      expiresAt: new Date(written.getTime() + 3_600_000).toISOString(),
    };
    const bound = new Date(written.getTime() + MAX_LEASE_SECONDS * 1000);
    const before = await acquireLease(store, key, lease, new Date(bound.getTime() - 1000));
    expect(before).toMatchObject({ acquired: false, until: bound });
    expect(before.acquired === false && before.problem).toMatch(/expiresAt "never" is not a date/);
    // only the capture it names may release it early
    expect(await releaseLease(store, key, 'cap-20261123T115500Z-ffffffff', bound, 'x')).toBe(false);
    const after = await acquireLease(
      store,
      key,
      { ...lease, expiresAt: bound.toISOString() },
      bound,
    );
    expect(after.acquired).toBe(true);
    expect(after.acquired && after.tookOverFrom?.expiresAt).toBe('never');
  });

  it('startCapture refuses on a corrupt cooldown or lock (reported, no exception) and starts on an expired one', async () => {
    const world = await makeCaptureWorld({ COOLDOWN_SECONDS: '900', HOURLY_CAPTURE_BUDGET: '50' });
    const topo = await makeTopology(world, 212);
    const { logger, errors } = loggerRecordingErrors(world.deps.logger);
    const now = new Date();
    const deps: CaptureDeps = { ...world.deps, logger, now: () => now };
    const worldStore = worldEvidenceStore(world);
    const fingerprint = 'port-zero:tcp:10.212.1.5:198.51.100.7';
    const request = (instanceId: string) => ({
      targets: { kind: 'instances' as const, instanceIds: [instanceId] },
      reason: 'detector: port-0',
      fingerprint,
      durationSeconds: 60,
      source: 'detector' as const,
    });

    // A cooldown that expired exactly now: the capture starts (all three readers: not live).
    await put(worldStore, cooldownKey(fingerprint, topo.nat.instanceId), held(now.toISOString()));
    const started = await startCapture(request(topo.nat.instanceId), deps);
    expect(started.started.map((s) => s.instanceId)).toEqual([topo.nat.instanceId]);

    // A cooldown without an expiry: refused as cooling down (it used to read as not live here
    // while acquireLease held it), recorded, with the corruption in the refusal.
    const written = await put(
      worldStore,
      cooldownKey(fingerprint, topo.sensor.instanceId),
      held(undefined),
    );
    const cooled = await startCapture(request(topo.sensor.instanceId), deps);
    expect(cooled.state).toBe('refused');
    expect(cooled.recorded).toBeUndefined();
    expect(cooled.refused).toHaveLength(1);
    expect(cooled.refused[0]).toMatchObject({
      reason: 'cooldown',
      details: {
        until: new Date(written.getTime() + MAX_LEASE_SECONDS * 1000).toISOString(),
        corruptGuard: 'expiresAt is missing',
      },
    });
    expect(errors).toContainEqual({
      message: 'corrupt cooldown object treated as live',
      extra: {
        captureId: cooled.captureId,
        instanceId: topo.sensor.instanceId,
        key: cooldownKey(fingerprint, topo.sensor.instanceId),
        problem: 'expiresAt is missing',
        until: new Date(written.getTime() + MAX_LEASE_SECONDS * 1000).toISOString(),
      },
    });
    const manifest = await readManifest(worldStore, cooled.captureId);
    expect(manifest?.manifest.state).toBe('refused');
    // the refusal notice marker is sound (expires with the bounded cooldown), so a repeat is quiet
    const repeat = await startCapture(request(topo.sensor.instanceId), deps);
    expect(repeat.recorded).toBe(false);
    expect(repeat.reportedBy).toEqual([cooled.captureId]);

    // A lock whose body is not JSON: the host is busy, not an exception.
    await put(worldStore, lockKey(topo.workload.instanceId), '\u0000garbage');
    const busy = await startCapture(
      { ...request(topo.workload.instanceId), fingerprint: 'another:fingerprint' },
      deps,
    );
    expect(busy.refused).toMatchObject([
      { reason: 'host-busy', details: { corruptGuard: 'the lease is not a JSON object' } },
    ]);
    expect(busy.refused[0]!.message).toMatch(/corrupt capture lock, treated as held until/);
    expect(errors).toContainEqual({
      message: 'corrupt host lock treated as held',
      extra: {
        captureId: busy.captureId,
        instanceId: topo.workload.instanceId,
        key: lockKey(topo.workload.instanceId),
        problem: 'the lease is not a JSON object',
        until: expect.any(String),
      },
    });
  }, 60_000);
  it('heldLocks: a sound held lock is a lease; every other unreleased lock is corrupt with its problem', async () => {
    const { bucket, keyArn } = await versionedBucketWithKey('tl-held', undefined, { s3, kms });
    const locks: EvidenceStore = { s3, bucket, keyArn };
    const now = new Date(Math.floor(Date.now() / 1000) * 1000);
    const iso = (seconds: number) => new Date(now.getTime() + seconds * 1000).toISOString();
    const lock = (id: string, extra: Record<string, unknown> = {}) =>
      held(iso(600), { kind: 'lock', instanceId: id, ...extra });
    const cases: {
      name: string;
      body: (instanceId: string) => string;
      problem?: RegExp;
      omitted?: true;
    }[] = [
      { name: 'sound', body: (id) => lock(id, { deadline: iso(300) }) },
      {
        name: 'sound and expired (still to be swept)',
        body: (id) => lock(id, { expiresAt: iso(-60) }),
      },
      { name: 'released', body: (id) => lock(id, { state: 'released' }), omitted: true },
      {
        name: 'not JSON',
        body: () => '{"state":"held"',
        problem: /^the lease is not a JSON object$/,
      },
      {
        name: 'missing expiry',
        body: (id) => held(undefined, { kind: 'lock', instanceId: id }),
        problem: /^expiresAt is missing$/,
      },
      {
        name: 'unknown state',
        body: (id) => lock(id, { state: 'zombie' }),
        problem: /^state "zombie" is neither/,
      },
      {
        name: 'missing captureId',
        body: (id) => lock(id, { captureId: undefined }),
        problem: /^captureId is missing$/,
      },
      {
        name: 'numeric instanceId',
        body: (id) => lock(id, { instanceId: 5 }),
        problem: /^instanceId 5 is not a non-empty string$/,
      },
      {
        name: 'unknown kind',
        body: (id) => lock(id, { kind: 'mutex' }),
        problem: /^kind "mutex" is neither lock nor cooldown$/,
      },
      {
        name: 'names another instance than its key',
        body: () => lock('i-0fffffffffffffff0'),
        problem: /^names instance i-0fffffffffffffff0, not the one of its key$/,
      },
      {
        name: 'deadline not a string',
        body: (id) => lock(id, { deadline: 1 }),
        problem: /^deadline 1 is not a string$/,
      },
      {
        name: 'expiry far past the write and no captureId',
        body: (id) => lock(id, { expiresAt: iso(MAX_LEASE_SECONDS + 7_200), captureId: '' }),
        problem:
          /^expiresAt .* is more than \d+ s past the last write; captureId "" is not a non-empty string$/,
      },
    ];
    const written = new Map<string, Date>();
    const idOf = (n: number) => `i-0000000000000${String(n).padStart(4, '0')}`;
    const bodies = cases.map((c, n) => c.body(idOf(n)));
    for (const [n, c] of cases.entries()) {
      written.set(c.name, await put(locks, lockKey(idOf(n)), bodies[n]!));
    }

    const found = await heldLocks(locks, now);

    for (const [n, c] of cases.entries()) {
      const key = lockKey(idOf(n));
      const entry = found.find((f) => f.key === key);
      if (c.omitted) {
        expect(entry, c.name).toBeUndefined();
      } else if (!c.problem) {
        expect(entry, c.name).toEqual({ key, corrupt: false, lease: JSON.parse(bodies[n]!) });
      } else {
        expect(entry?.corrupt, c.name).toBe(true);
        if (entry?.corrupt) {
          expect(entry.problem, c.name).toMatch(c.problem);
          // a corrupt lock holds until its write + MAX_LEASE_SECONDS at the most
          const bound = written.get(c.name)!.getTime() + MAX_LEASE_SECONDS * 1000;
          expect(entry.until?.getTime(), c.name).toBeLessThanOrEqual(bound);
        }
      }
    }
    expect(found).toHaveLength(cases.filter((c) => !c.omitted).length);
  });

  it("the timed-out sweep times out sound locks, keeps a corrupt lock held and logged, and closes its capture by that capture's own manifest deadline", async () => {
    const world = await makeCaptureWorld({ HOURLY_CAPTURE_BUDGET: '50' });
    const topo = await makeTopology(world, 215);
    const worldStore = worldEvidenceStore(world);
    const t0 = new Date();
    const request = (instanceId: string) => ({
      targets: { kind: 'instances' as const, instanceIds: [instanceId] },
      reason: 'sweep of corrupt locks',
      durationSeconds: 30,
      source: 'manual' as const,
    });
    const sound = await startCapture(request(topo.nat.instanceId), {
      ...world.deps,
      now: () => t0,
    });
    const damaged = await startCapture(request(topo.sensor.instanceId), {
      ...world.deps,
      now: () => t0,
    });
    expect([...sound.started, ...damaged.started]).toHaveLength(2);
    // The second lock loses its expiresAt: a corrupt lock, held until its write + the cap. Its
    // captureId is only a hint: the sweep closes that capture's host because the capture's own
    // manifest shows it open past the manifest's deadline, never on the lock's word, and the
    // lock itself stays held.
    const key = lockKey(topo.sensor.instanceId);
    const { expiresAt: _dropped, ...rest } = (await readLease(worldStore, key))!.lease!;
    await put(worldStore, key, JSON.stringify(rest));

    const { logger, errors } = loggerRecordingErrors(world.deps.logger);
    const late = new Date(t0.getTime() + (30 + 901) * 1000);
    const swept = await sweepTimedOutCaptures({ ...world.deps, logger, now: () => late });

    expect(swept).toHaveLength(2);
    expect(swept).toEqual(
      expect.arrayContaining([
        { captureId: sound.captureId, instanceId: topo.nat.instanceId },
        {
          captureId: damaged.captureId,
          instanceId: topo.sensor.instanceId,
          lockCorrupt: 'expiresAt is missing',
        },
      ]),
    );
    expect((await manifestOf(world, sound.captureId)).hosts[topo.nat.instanceId]!.status).toBe(
      'timed-out',
    );
    expect((await readLease(worldStore, key))?.lease?.state).toBe('held');
    expect((await manifestOf(world, damaged.captureId)).hosts[topo.sensor.instanceId]!.status).toBe(
      'timed-out',
    );
    expect(errors).toContainEqual({
      message: 'corrupt host lock treated as held',
      extra: { key, problem: 'expiresAt is missing', until: expect.any(String) },
    });
  }, 60_000);
});
