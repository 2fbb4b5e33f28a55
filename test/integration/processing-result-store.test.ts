import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { CreateKeyCommand } from '@aws-sdk/client-kms';
import {
  CreateBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  PutBucketVersioningCommand,
} from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../shared/observability.ts';
import {
  PART_BYTES,
  putResultBytes,
  putResultJsonLines,
  type ResultStore,
} from '../../shared/processing/result-store.ts';
import { motoClients, uniqueName } from '../support/aws.ts';

const clients = motoClients();
let store: ResultStore;

async function body(key: string): Promise<Buffer> {
  const out = await clients.s3.send(new GetObjectCommand({ Bucket: store.bucket, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

async function versions(key: string): Promise<number> {
  const out = await clients.s3.send(
    new ListObjectVersionsCommand({ Bucket: store.bucket, Prefix: key }),
  );
  return (out.Versions ?? []).filter((v) => v.Key === key).length;
}

beforeAll(async () => {
  const bucket = uniqueName('results-store');
  await clients.s3.send(new CreateBucketCommand({ Bucket: bucket }));
  await clients.s3.send(
    new PutBucketVersioningCommand({
      Bucket: bucket,
      VersioningConfiguration: { Status: 'Enabled' },
    }),
  );
  const key = await clients.kms.send(new CreateKeyCommand({ Description: 'evidence (test)' }));
  store = { s3: clients.s3, bucket, kmsKeyArn: key.KeyMetadata!.Arn!, logger: silentLogger };
});

describe('result objects are written once per key', () => {
  it('creates with SSE-KMS, reuses an identical object and replaces a different one', async () => {
    const key = `results/${uniqueName('t')}/summary.json`;
    const first = await putResultBytes(store, key, Buffer.from('{"a":1}\n'), 'application/json');
    expect(first.outcome).toBe('created');
    const head = await clients.s3.send(new HeadObjectCommand({ Bucket: store.bucket, Key: key }));
    expect(head.ServerSideEncryption).toBe('aws:kms');
    expect(head.SSEKMSKeyId).toContain(store.kmsKeyArn.split('/').pop());

    const again = await putResultBytes(store, key, Buffer.from('{"a":1}\n'), 'application/json');
    expect(again).toMatchObject({ outcome: 'existing', versionId: first.versionId });
    expect(await versions(key)).toBe(1);

    const changed = await putResultBytes(store, key, Buffer.from('{"a":2}\n'), 'application/json');
    expect(changed.outcome).toBe('replaced');
    expect(changed.versionId).not.toBe(first.versionId);
    expect((await body(key)).toString()).toBe('{"a":2}\n');
    expect(await versions(key)).toBe(2);
  });

  it('streams JSON lines through gzip, one object per line', async () => {
    const key = `results/${uniqueName('t')}/dns.jsonl.gz`;
    const rows = Array.from({ length: 1000 }, (_, i) => ({ i, qname: `host-${i}.example` }));
    const out = await putResultJsonLines(store, key, rows);
    expect(out).toMatchObject({ outcome: 'created', records: 1000 });
    const lines = gunzipSync(await body(key))
      .toString()
      .trimEnd()
      .split('\n');
    expect(lines.map((l) => JSON.parse(l))).toEqual(rows);
  });

  it('writes an empty table as a valid empty gzip file', async () => {
    const key = `results/${uniqueName('t')}/tls.jsonl.gz`;
    const out = await putResultJsonLines(store, key, []);
    expect(out.records).toBe(0);
    expect(gunzipSync(await body(key)).length).toBe(0);
  });

  it('goes multipart past one part, with a composite checksum a re-run recognises', async () => {
    const key = `results/${uniqueName('t')}/conversations.jsonl.gz`;
    // Incompressible rows so the gzip output really exceeds one part.
    const seed = randomBytes(PART_BYTES + 2 * 1024 * 1024).toString('base64');
    const rows = () =>
      (function* () {
        for (let i = 0; i < seed.length; i += 4096) yield { i, noise: seed.slice(i, i + 4096) };
      })();
    const first = await putResultJsonLines(store, key, rows());
    expect(first.outcome).toBe('created');
    expect(first.checksumSha256).toMatch(/-2$/);
    const second = await putResultJsonLines(store, key, rows());
    expect(second).toMatchObject({ outcome: 'existing', versionId: first.versionId });
    const lines = gunzipSync(await body(key))
      .toString()
      .trimEnd()
      .split('\n');
    expect(lines.length).toBe(Math.ceil(seed.length / 4096));
    expect(await versions(key)).toBe(1);
  });

  it('replaces a different multipart object by completing the same upload unconditionally', async () => {
    const key = `results/${uniqueName('t')}/http.jsonl.gz`;
    const noise = (n: number) => randomBytes(n).toString('base64');
    const rows = (text: string) => [{ text }];
    const first = await putResultJsonLines(store, key, rows(noise(PART_BYTES + 1024 * 1024)));
    const second = await putResultJsonLines(store, key, rows(noise(PART_BYTES + 1024 * 1024)));
    expect(first.outcome).toBe('created');
    expect(second.outcome).toBe('replaced');
    expect(second.versionId).not.toBe(first.versionId);
    expect(await versions(key)).toBe(2);
    const stored = JSON.parse(gunzipSync(await body(key)).toString());
    expect(stored.text.length).toBeGreaterThan(PART_BYTES);
  });
});
