import { ListObjectVersionsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { createVersionedBucket, motoClients, uniqueName } from '../support/aws.ts';

/**
 * The emulator keeps S3's promise that a conditional write is atomic (scripts/lib/
 * moto-server-atomic.py): of many concurrent `IfNoneMatch: '*'` PUTs of one key exactly one
 * succeeds and one version exists, round after round. Plain moto checks and stores in two steps
 * on a threaded server, and under load two writers could both win, which made Tapline's
 * idempotency tests fail for the emulator's sake, not Tapline's.
 */
describe('moto conditional writes (the emulator the tests run on)', () => {
  const { s3 } = motoClients();
  const bucket = uniqueName('tl-cond');

  beforeAll(async () => {
    await createVersionedBucket(s3, bucket);
  });

  it('lets exactly one of 24 concurrent IfNoneMatch PUTs win, in every round', async () => {
    for (let round = 0; round < 15; round++) {
      const key = `race/${round}.json`;
      const results = await Promise.allSettled(
        Array.from({ length: 24 }, (_, i) =>
          s3.send(
            new PutObjectCommand({
              Bucket: bucket,
              Key: key,
              Body: JSON.stringify({ writer: i, padding: 'x'.repeat(4096) }),
              IfNoneMatch: '*',
            }),
          ),
        ),
      );
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r) => r.status === 'rejected');
      expect(won, `round ${round}`).toHaveLength(1);
      for (const r of lost) {
        expect((r as PromiseRejectedResult).reason.$metadata?.httpStatusCode).toBe(412);
      }
      const versions = await s3.send(
        new ListObjectVersionsCommand({ Bucket: bucket, Prefix: key }),
      );
      expect(versions.Versions ?? [], `round ${round}`).toHaveLength(1);
    }
  });
});
