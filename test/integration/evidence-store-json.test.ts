/**
 * The one JSON read of the evidence store (store.ts readStoredJson) and its two readers against
 * the same objects in moto: getJson (manifests: corrupt content throws) and guards.ts readLease
 * (guards: corrupt content is a lease that is not a JSON object, never thrown). A missing
 * object is undefined for all three.
 */
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { readLease } from '../../shared/evidence/guards.ts';
import { type EvidenceStore, getJson, readStoredJson } from '../../shared/evidence/store.ts';
import { motoClients, versionedBucketWithKey } from '../support/aws.ts';

const { s3, kms } = motoClients();

describe('reading JSON from the evidence store (moto)', () => {
  let store: EvidenceStore;
  beforeAll(async () => {
    const { bucket, keyArn } = await versionedBucketWithKey('tl-json', undefined, { s3, kms });
    store = { s3, bucket, keyArn };
  });

  async function put(key: string, body: string) {
    const out = await s3.send(new PutObjectCommand({ Bucket: store.bucket, Key: key, Body: body }));
    const head = await s3.send(new HeadObjectCommand({ Bucket: store.bucket, Key: key }));
    return { etag: out.ETag!, versionId: out.VersionId!, lastModified: head.LastModified! };
  }

  it('a missing object is undefined for every reader', async () => {
    expect(await readStoredJson(store, 'locks/i-00000000000000404.json')).toBeUndefined();
    expect(await getJson(store, 'locks/i-00000000000000404.json')).toBeUndefined();
    expect(await readLease(store, 'locks/i-00000000000000404.json')).toBeUndefined();
  });

  it('a JSON object is read with its ETag, version and LastModified', async () => {
    const key = 'locks/i-0000000000000000a.json';
    const written = await put(key, '{"state":"held","captureId":"cap-20261123T120000Z-0000000a"}');
    const expected = { state: 'held', captureId: 'cap-20261123T120000Z-0000000a' };

    expect(await readStoredJson(store, key)).toEqual({ parsed: true, value: expected, ...written });
    expect(await getJson(store, key)).toEqual({
      value: expected,
      etag: written.etag,
      versionId: written.versionId,
    });
    expect(await readLease(store, key)).toEqual({
      lease: expected,
      etag: written.etag,
      lastModified: written.lastModified,
    });
  });

  it('a body that is not JSON is an outcome for the store and the guards, an error for getJson', async () => {
    const key = 'locks/i-0000000000000000b.json';
    const written = await put(key, '{"state":"held","expiresAt":');

    const read = await readStoredJson(store, key);
    expect(read).toMatchObject({ parsed: false, ...written });
    expect(read?.parsed === false && read.error).toBeInstanceOf(SyntaxError);
    await expect(getJson(store, key)).rejects.toThrow(SyntaxError);
    expect(await readLease(store, key)).toEqual({
      lease: undefined,
      etag: written.etag,
      lastModified: written.lastModified,
    });
  });

  it('JSON that is not an object is parsed for getJson and no lease for the guards', async () => {
    for (const [n, body] of ['null', '[1,2]', '"held"', '42'].entries()) {
      const key = `locks/i-000000000000001${n}.json`;
      await put(key, body);
      expect(await readStoredJson(store, key), body).toMatchObject({
        parsed: true,
        value: JSON.parse(body),
      });
      expect((await getJson(store, key))?.value, body).toEqual(JSON.parse(body));
      expect((await readLease(store, key))?.lease, body).toBeUndefined();
    }
  });
});
