import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { motoClients, uniqueName } from '../support/aws.ts';

describe('the single endpoint setting', () => {
  it('reaches moto over HTTP for S3 round trips', async () => {
    const { s3 } = motoClients();
    const bucket = uniqueName('endpoint');
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'a/b.txt', Body: 'evidence' }));
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'a/b.txt' }));
    expect(await got.Body?.transformToString()).toBe('evidence');
  });
});
