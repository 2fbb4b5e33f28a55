import { PutObjectCommand } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { versionsOfKey } from '../../shared/aws/object-versions.ts';
import { createVersionedBucket, motoClients, uniqueName } from '../support/aws.ts';

const { s3 } = motoClients();
const bucket = uniqueName('versions');
/** Version IDs written per key, oldest first. */
const written = new Map<string, string[]>();

async function put(key: string, times: number) {
  for (let i = 0; i < times; i++) {
    const out = await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: `${i}` }));
    written.set(key, [...(written.get(key) ?? []), out.VersionId!]);
  }
}

beforeAll(async () => {
  await createVersionedBucket(s3, bucket);
  // `locks/i-1.json` is a prefix of the keys after it: they must never count as its versions
  await put('locks/i-1.json', 5);
  await put('locks/i-1.json.bak', 3);
  await put('locks/i-1.json2', 2);
});

describe('versionsOfKey', () => {
  it("lists exactly the key's versions, newest first, not the longer keys its prefix matches", async () => {
    const versions = await versionsOfKey(s3, bucket, 'locks/i-1.json');
    expect(versions.map((v) => v.versionId)).toEqual([...written.get('locks/i-1.json')!].reverse());
    expect(versions.every((v) => v.size === 1 && v.lastModified instanceof Date)).toBe(true);
  });

  it('stops at max, paging through small pages', async () => {
    const newest = [...written.get('locks/i-1.json')!].reverse();
    expect((await versionsOfKey(s3, bucket, 'locks/i-1.json', 2)).map((v) => v.versionId)).toEqual(
      newest.slice(0, 2),
    );
    expect((await versionsOfKey(s3, bucket, 'locks/i-1.json', 4)).map((v) => v.versionId)).toEqual(
      newest.slice(0, 4),
    );
  });

  it('gives nothing for a key that does not exist, even when longer keys start with it', async () => {
    expect(await versionsOfKey(s3, bucket, 'locks/i-1.js')).toEqual([]);
    expect(await versionsOfKey(s3, bucket, 'locks/none.json')).toEqual([]);
  });
});
