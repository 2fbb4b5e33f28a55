import { CreateKeyCommand } from '@aws-sdk/client-kms';
import {
  CreateBucketCommand,
  HeadObjectCommand,
  PutObjectLockConfigurationCommand,
} from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  acquireLease,
  cooldownKey,
  type Lease,
  lockKey,
  releaseLease,
  spendBudget,
} from '../../shared/evidence/guards.ts';
import { createManifest, manifestKey } from '../../shared/evidence/manifest.ts';
import type { EvidenceStore } from '../../shared/evidence/store.ts';
import { motoClients, uniqueName } from '../support/aws.ts';

/**
 * Guard objects (locks, cooldowns, budget slots, notice markers) are state, not evidence: in an
 * Object Lock bucket whose default retention is a year, they are written with a short explicit
 * GOVERNANCE retention (guardRetentionHours past their own expiry), so a flood of them does
 * not stay locked for a year. Evidence (the manifest here) keeps the bucket default.
 */
describe('guard object retention in an Object Lock bucket (moto)', () => {
  const { s3, kms } = motoClients();
  const bucket = uniqueName('tl-guard');
  let store: EvidenceStore;
  const now = new Date('2026-11-23T12:00:00Z');
  const lease = (captureId: string, minutes: number): Lease => ({
    kind: 'lock',
    state: 'held',
    captureId,
    instanceId: 'i-0a1b2c3d4e5f60718',
    createdAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + minutes * 60_000).toISOString(),
  });
  // moto's GetObjectRetention answer does not parse in the SDK; HeadObject carries the same
  const retention = async (key: string) => {
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return { Mode: head.ObjectLockMode, RetainUntilDate: head.ObjectLockRetainUntilDate };
  };

  beforeAll(async () => {
    await s3.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
    await s3.send(
      new PutObjectLockConfigurationCommand({
        Bucket: bucket,
        ObjectLockConfiguration: {
          ObjectLockEnabled: 'Enabled',
          Rule: { DefaultRetention: { Mode: 'COMPLIANCE', Days: 365 } },
        },
      }),
    );
    const keyArn = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!.Arn!;
    store = { s3, bucket, keyArn, guardRetentionHours: 24 };
  });

  it('locks and their release stay locked for 24 h past the lease expiry, in GOVERNANCE mode', async () => {
    const key = lockKey('i-0a1b2c3d4e5f60718');
    const got = await acquireLease(store, key, lease('cap-20261123T120000Z-0000aaaa', 30), now);
    expect(got.acquired).toBe(true);
    const held = await retention(key);
    expect(held?.Mode).toBe('GOVERNANCE');
    expect(held?.RetainUntilDate?.toISOString()).toBe('2026-11-24T12:30:00.000Z');

    expect(await releaseLease(store, key, 'cap-20261123T120000Z-0000aaaa', now, 'done')).toBe(true);
    expect((await retention(key))?.RetainUntilDate?.toISOString()).toBe('2026-11-24T12:30:00.000Z');
  });

  it('cooldowns and budget slots too; the manifest keeps the bucket default (evidence)', async () => {
    const cooldown = cooldownKey('port-zero:tcp:10.0.0.1:10.0.0.2', 'i-0a1b2c3d4e5f60718');
    await acquireLease(
      store,
      cooldown,
      { ...lease('cap-20261123T120000Z-0000bbbb', 15), kind: 'cooldown' },
      now,
    );
    expect((await retention(cooldown))?.RetainUntilDate?.toISOString()).toBe(
      '2026-11-24T12:15:00.000Z',
    );

    const slot = await spendBudget(
      store,
      5,
      { captureId: 'cap-x', instanceId: 'i-1', at: now.toISOString() },
      now,
    );
    expect(slot).toBeDefined();
    const slotKey = `budget/20261123T12/${String(slot).padStart(6, '0')}.json`;
    // a slot matters until its hour is over: 13:00 + 24 h
    expect((await retention(slotKey))?.RetainUntilDate?.toISOString()).toBe(
      '2026-11-24T13:00:00.000Z',
    );

    const captureId = 'cap-20261123T120000Z-0000cccc';
    await createManifest(store, {
      version: 1,
      captureId,
      state: 'requested',
      createdAt: now.toISOString(),
      updatedAt: now.toISOString(),
      request: {},
      requestedBy: 'test',
      reason: 'retention test',
      targets: [],
      hosts: {},
      history: [],
    } as never);
    const manifest = await retention(manifestKey(captureId));
    expect(manifest?.Mode).toBe('COMPLIANCE');
    const days = (manifest!.RetainUntilDate!.getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(364);
  });

  it('writes with the bucket default when guardRetentionHours is 0', async () => {
    const key = lockKey('i-0ffffffffffffffff');
    await acquireLease(
      { ...store, guardRetentionHours: 0 },
      key,
      lease('cap-20261123T120000Z-0000dddd', 30),
      now,
    );
    expect((await retention(key))?.Mode).toBe('COMPLIANCE');
  });
});
