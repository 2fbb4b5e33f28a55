import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
} from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../shared/observability.ts';
import { ResultWriteError } from '../../shared/processing/errors.ts';
import {
  JsonLinesGzipWriter,
  PART_BYTES,
  putResultBytes,
  putResultJsonLines,
  type ResultStore,
} from '../../shared/processing/result-store.ts';
import { motoClients, uniqueName, versionedBucketWithKey, versionsOf } from '../support/aws.ts';
import { interceptedS3, RESULT_STORE_COMMANDS } from '../support/s3-interception.ts';

const clients = motoClients();
let store: ResultStore;

async function body(key: string): Promise<Buffer> {
  const out = await clients.s3.send(new GetObjectCommand({ Bucket: store.bucket, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

/** The lines of the stored gzip object `key`, without the final newline. */
async function gunzippedLines(key: string): Promise<string[]> {
  return gunzipSync(await body(key))
    .toString()
    .trimEnd()
    .split('\n');
}

/** A result key of its own under results/ for one test (`name`: the table file). */
const resultKey = (name: string) => `results/${uniqueName('t')}/${name}`;

const versions = (key: string) => versionsOf(clients.s3, store.bucket, key);

beforeAll(async () => {
  const { bucket, keyArn } = await versionedBucketWithKey(
    'results-store',
    'evidence (test)',
    clients,
  );
  store = { s3: clients.s3, bucket, kmsKeyArn: keyArn, logger: silentLogger };
});

describe('result objects are written once per key', () => {
  it('creates with SSE-KMS, reuses an identical object and replaces a different one', async () => {
    const key = resultKey('summary.json');
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
    const key = resultKey('dns.jsonl.gz');
    const rows = Array.from({ length: 1000 }, (_, i) => ({ i, qname: `host-${i}.example` }));
    const out = await putResultJsonLines(store, key, rows);
    expect(out).toMatchObject({ outcome: 'created', records: 1000 });
    const lines = await gunzippedLines(key);
    expect(lines.map((l) => JSON.parse(l))).toEqual(rows);
  });

  it('writes an empty table as a valid empty gzip file', async () => {
    const key = resultKey('tls.jsonl.gz');
    const out = await putResultJsonLines(store, key, []);
    expect(out.records).toBe(0);
    expect(gunzipSync(await body(key)).length).toBe(0);
  });

  it('goes multipart past one part, with a composite checksum a re-run recognises', async () => {
    const key = resultKey('conversations.jsonl.gz');
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
    const lines = await gunzippedLines(key);
    expect(lines.length).toBe(Math.ceil(seed.length / 4096));
    expect(await versions(key)).toBe(1);
  });

  it('replaces a different multipart object by completing the same upload unconditionally', async () => {
    const key = resultKey('http.jsonl.gz');
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

/**
 * A store whose S3 client forwards to moto, except that the first `misses` HEADs of `key`
 * answer without the checksum: what a reader sees of an object another writer is still
 * completing (moto makes the key visible before it records the checksum algorithm; a
 * checksum-less object left by another tool looks the same for good).
 */
function storeWithChecksumlessHeads(misses: number): ResultStore & { heads: () => number } {
  let heads = 0;
  const client = interceptedS3(
    clients.s3,
    async (name, _input, send) => {
      const out = await send();
      if (name !== 'HeadObjectCommand') return out;
      heads += 1;
      if (heads > misses) return out;
      const { ChecksumSHA256: _dropped, ChecksumType: _type, ...rest } = out;
      return rest;
    },
    RESULT_STORE_COMMANDS,
  );
  return { ...store, s3: client, heads: () => heads };
}

describe('concurrent duplicate writers', () => {
  it('gives 10 concurrent writers of identical content one version per object, round after round', async () => {
    const rows = Array.from({ length: 300 }, (_, i) => ({ i, a: `10.0.0.${i % 250}`, port: i }));
    for (let round = 0; round < 6; round++) {
      const prefix = `results/${uniqueName('race')}`;
      const outcomes = await Promise.all(
        Array.from({ length: 10 }, () =>
          Promise.all([
            putResultBytes(
              store,
              `${prefix}/summary.json`,
              Buffer.from('{"r":1}\n'),
              'application/json',
            ),
            putResultJsonLines(store, `${prefix}/conversations.jsonl.gz`, rows),
          ]),
        ),
      );
      for (const [index, key] of [
        `${prefix}/summary.json`,
        `${prefix}/conversations.jsonl.gz`,
      ].entries()) {
        const mine = outcomes.map((o) => o[index]!);
        expect(await versions(key), key).toBe(1);
        expect(
          mine.filter((o) => o.outcome === 'replaced'),
          key,
        ).toEqual([]);
        expect(new Set(mine.map((o) => o.versionId)).size, key).toBe(1);
      }
    }
  });

  it('does not replace an identical object whose checksum is not visible yet', async () => {
    const key = resultKey('dns.jsonl.gz');
    const rows = [{ qname: 'example.com' }];
    const first = await putResultJsonLines(store, key, rows);
    const racing = storeWithChecksumlessHeads(2);
    const second = await putResultJsonLines(racing, key, rows);
    expect(second).toMatchObject({ outcome: 'existing', versionId: first.versionId });
    expect(racing.heads()).toBe(3);
    expect(await versions(key)).toBe(1);
  });

  it('hashes the stored bytes when an object never shows a checksum: identical is reused, different replaced', async () => {
    const key = resultKey('summary.json');
    const first = await putResultBytes(store, key, Buffer.from('{"a":1}\n'), 'application/json');
    const same = await putResultBytes(
      storeWithChecksumlessHeads(1000),
      key,
      Buffer.from('{"a":1}\n'),
      'application/json',
    );
    expect(same).toMatchObject({ outcome: 'existing', versionId: first.versionId });
    expect(await versions(key)).toBe(1);
    const different = await putResultBytes(
      storeWithChecksumlessHeads(1000),
      key,
      Buffer.from('{"a":2}\n'),
      'application/json',
    );
    expect(different.outcome).toBe('replaced');
    expect(await versions(key)).toBe(2);
  });

  it('recognises an identical multipart object by hashing it when its checksum never shows', async () => {
    const key = resultKey('conversations.jsonl.gz');
    const seed = randomBytes(PART_BYTES + 1024 * 1024).toString('base64');
    const rows = () => [{ noise: seed }];
    const first = await putResultJsonLines(store, key, rows());
    expect(first.checksumSha256).toMatch(/-2$/);
    const second = await putResultJsonLines(storeWithChecksumlessHeads(1000), key, rows());
    expect(second).toMatchObject({ outcome: 'existing', versionId: first.versionId });
    expect(await versions(key)).toBe(1);
  });
});

/** A store whose S3 client forwards every command to moto, recording its name; `before`
 *  runs first (to hold or fail a command). */
function recordingStore(
  before: (name: string, input: any) => Promise<void> | void = () => undefined,
): ResultStore & { calls: string[] } {
  const calls: string[] = [];
  const client = interceptedS3(
    clients.s3,
    async (name, input, send) => {
      calls.push(name);
      await before(name, input);
      return send();
    },
    RESULT_STORE_COMMANDS,
  );
  return { ...store, s3: client, calls };
}

/** A recording store whose `failing`-th part upload throws `error`; `parts()` counts the
 *  part uploads tried so far. */
function storeFailingPart(
  failing: number,
  error: Error,
): ResultStore & { calls: string[]; parts: () => number } {
  let parts = 0;
  const recording = recordingStore((name) => {
    if (name === 'UploadPartCommand' && ++parts === failing) throw error;
  });
  return { ...recording, parts: () => parts };
}

/** Rows of base64 noise (gzip cannot shrink it below ~3/4) totalling about `chars`. */
function noiseRows(chars: number, seed = randomBytes(Math.ceil((chars * 3) / 4))) {
  const text = seed.toString('base64');
  const rows: { i: number; noise: string }[] = [];
  for (let i = 0; i * 4096 < text.length; i++)
    rows.push({ i, noise: text.slice(i * 4096, (i + 1) * 4096) });
  return rows;
}

function* chunked<T>(items: T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

async function pendingUploads(key: string): Promise<number> {
  const out = await clients.s3.send(
    new ListMultipartUploadsCommand({ Bucket: store.bucket, Prefix: key }),
  );
  return (out.Uploads ?? []).filter((u) => u.Key === key).length;
}

/** Neither an object nor a pending multipart upload at `key`: a failed write left nothing. */
async function expectNothingLeft(key: string): Promise<void> {
  expect(await pendingUploads(key)).toBe(0);
  expect(await versions(key)).toBe(0);
}

/** An error as the SDK throws it for a failed call (its name is the error code). */
const sdkError = (name: string, message: string) => Object.assign(new Error(message), { name });

describe('streaming JSON-lines writer', () => {
  it('uploads parts while rows are still coming; the object appears only at finish', async () => {
    const key = resultKey('conversations.jsonl.gz');
    const recording = recordingStore();
    const writer = new JsonLinesGzipWriter(recording, key);
    const rows = noiseRows(3.5 * PART_BYTES);
    for (const batch of chunked(rows, 100)) await writer.add(batch);
    expect(writer.records).toBe(rows.length);
    // at least two full parts are out before the last row has even been compressed
    expect(recording.calls.filter((c) => c === 'UploadPartCommand').length).toBeGreaterThanOrEqual(
      2,
    );
    expect(recording.calls).not.toContain('CompleteMultipartUploadCommand');
    expect(await versions(key)).toBe(0);

    const out = await writer.finish();
    expect(out).toMatchObject({ outcome: 'created', records: rows.length });
    expect(out.checksumSha256).toMatch(/-3$/);
    const head = await clients.s3.send(
      new HeadObjectCommand({ Bucket: store.bucket, Key: key, ChecksumMode: 'ENABLED' }),
    );
    expect(head.ServerSideEncryption).toBe('aws:kms');
    // S3 shows a composite checksum as `…-3`; moto leaves the part count off
    expect(head.ChecksumSHA256?.replace(/-\d+$/, '')).toBe(out.checksumSha256.replace(/-3$/, ''));
    const lines = await gunzippedLines(key);
    expect(lines.map((l) => JSON.parse(l))).toEqual(rows);
  });

  it('holds add() while a part upload is behind (backpressure), then completes', async () => {
    const key = resultKey('conversations.jsonl.gz');
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    let partStarted!: () => void;
    const started = new Promise<void>((r) => {
      partStarted = r;
    });
    const slow = recordingStore(async (name) => {
      if (name !== 'UploadPartCommand') return;
      partStarted();
      await held;
    });
    const writer = new JsonLinesGzipWriter(slow, key);
    let added = false;
    const adding = writer.add(noiseRows(2.5 * PART_BYTES)).then(() => {
      added = true;
    });
    await started;
    await new Promise((r) => setTimeout(r, 200));
    expect(added).toBe(false);
    release();
    await adding;
    const out = await writer.finish();
    expect(out.outcome).toBe('created');
    expect(await versions(key)).toBe(1);
  });

  it('gives the same bytes and composite checksum however the rows are batched', async () => {
    const key = resultKey('conversations.jsonl.gz');
    const rows = noiseRows(1.5 * PART_BYTES);
    const whole = await putResultJsonLines(store, key, rows);
    const writer = new JsonLinesGzipWriter(store, key);
    for (const batch of chunked(rows, 7)) await writer.add(batch);
    const batched = await writer.finish();
    expect(batched).toMatchObject({
      outcome: 'existing',
      versionId: whole.versionId,
      checksumSha256: whole.checksumSha256,
    });
    expect(await versions(key)).toBe(1);
    expect(await pendingUploads(key)).toBe(0);
  });

  it('abort drops the parts already uploaded: no object, no pending upload', async () => {
    const key = resultKey('conversations.jsonl.gz');
    const recording = recordingStore();
    const writer = new JsonLinesGzipWriter(recording, key);
    await writer.add(noiseRows(2 * PART_BYTES));
    expect(recording.calls).toContain('UploadPartCommand');
    expect(await pendingUploads(key)).toBe(1);
    await writer.abort();
    expect(recording.calls).toContain('AbortMultipartUploadCommand');
    await expectNothingLeft(key);
    await expect(writer.add([{ late: true }])).rejects.toBeInstanceOf(ResultWriteError);
    await expect(writer.finish()).rejects.toBeInstanceOf(ResultWriteError);
  });

  it('fails with ResultWriteError when a part upload fails, and aborts the upload', async () => {
    const key = resultKey('conversations.jsonl.gz');
    const failing = storeFailingPart(2, sdkError('NetworkingError', 'connection reset'));
    const writer = new JsonLinesGzipWriter(failing, key);
    const failed = (async () => {
      await writer.add(noiseRows(3 * PART_BYTES));
      return writer.finish();
    })();
    await expect(failed).rejects.toBeInstanceOf(ResultWriteError);
    await writer.abort();
    expect(failing.calls).toContain('AbortMultipartUploadCommand');
    await expectNothingLeft(key);
  });

  it('a part that failed between two add() calls fails the next add, it does not hang', async () => {
    const key = resultKey('conversations.jsonl.gz');
    const failing = storeFailingPart(1, sdkError('InternalError', 'we encountered an error'));
    const writer = new JsonLinesGzipWriter(failing, key);
    await writer.add(noiseRows(1.5 * PART_BYTES)).catch(() => undefined);
    // the failed upload tears the gzip pipeline down while no add() is waiting
    for (let i = 0; i < 200 && failing.parts() < 1; i++) await sleep(10);
    await sleep(200);
    const next = writer.add([{ after: 'the failure' }]);
    const hung = sleep(5_000, 'still waiting after 5 s');
    await expect(Promise.race([next, hung])).rejects.toBeInstanceOf(ResultWriteError);
    await writer.abort();
    await expectNothingLeft(key);
  });

  it('cleans up after itself when the last, short part fails during finish', async () => {
    const key = resultKey('conversations.jsonl.gz');
    const failing = storeFailingPart(2, sdkError('SlowDown', 'slow down'));
    const writer = new JsonLinesGzipWriter(failing, key);
    await writer.add(noiseRows(1.5 * PART_BYTES));
    expect(failing.parts()).toBe(1); // the first, full part is out; the short rest waits for finish
    const failed = writer.finish();
    await expect(failed).rejects.toBeInstanceOf(ResultWriteError);
    await expect(failed).rejects.toThrow(/SlowDown/);
    // no abort() from the caller: finish dropped the upload itself
    expect(failing.calls).toContain('AbortMultipartUploadCommand');
    await expectNothingLeft(key);
  });
});
