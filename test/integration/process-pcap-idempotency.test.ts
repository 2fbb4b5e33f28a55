/**
 * Idempotency under the failures SQS makes normal: concurrent duplicate deliveries, a crash
 * half-way through writing results, a crash just before the completion record, a partial
 * result left by an earlier (different) attempt, and a download cut short.
 * Faults are injected with aws-sdk-client-mock in front of a real moto client.
 */
import { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../shared/observability.ts';
import { ResultWriteError, SourceObjectError } from '../../shared/processing/errors.ts';
import { processPcapObject, processSqsRecord } from '../../shared/processing/index.ts';
import { putResultJsonLines } from '../../shared/processing/result-store.ts';
import {
  coreDeps,
  corpusFile,
  createProcessingStack,
  deleteMessages,
  getJson,
  messageFor,
  type ProcessingStack,
  published,
  receiveUntil,
} from '../fixtures/processing/stack.ts';
import { motoClients } from '../support/aws.ts';
import { captureResultVersions, uploadPcapForProcessing } from '../support/pcap-results.ts';
import { interceptedS3 } from '../support/s3-interception.ts';

let stack: ProcessingStack;

beforeAll(async () => {
  stack = await createProcessingStack(motoClients());
});

/** An S3 client that forwards to moto, except where `fault` says to fail. */
function faultyS3(
  fault: (name: string, input: any) => Error | undefined,
  replace: Record<string, (input: any, send: () => Promise<unknown>) => Promise<unknown>> = {},
): S3Client {
  return interceptedS3(stack.clients.s3, (name, input, send) => {
    const error = fault(name, input);
    if (error) throw error;
    const instead = replace[name];
    if (instead) return instead(input, send);
    return send();
  });
}

async function upload(name: string, corpus = 'tls_handshake.pcap') {
  return uploadPcapForProcessing(stack, name, await corpusFile(corpus));
}

const allVersions = (cap: string) => captureResultVersions(stack, cap);

describe('idempotent processing', () => {
  it('gives concurrent duplicate deliveries one result set', async () => {
    const { cap, key } = await upload('concurrent.pcap');
    const messages = await receiveUntil(stack, stack.queueUrl, (m) => !!messageFor(m, key));
    const message = messageFor(messages, key)!;
    const record = { messageId: message.MessageId!, body: message.Body! };
    const results = await Promise.all(
      Array.from({ length: 4 }, () => processSqsRecord(record, coreDeps(stack))),
    );
    const statuses = results.map((r) => r.outcomes[0]!.status).sort();
    expect(statuses.filter((s) => s === 'processed')).toHaveLength(1);
    for (const s of statuses)
      expect(['processed', 'already-processed', 'completed-concurrently']).toContain(s);
    const versions = await allVersions(cap);
    expect(versions.size).toBe(7); // completion record + 6 tables
    for (const [k, n] of versions) expect(n, k).toBe(1);
    await published(stack);
    await deleteMessages(stack, stack.queueUrl, messages);
  });

  it('recovers from a crash half-way through the result writes, reusing what was written', async () => {
    const up = await upload('crash-midway.pcap');
    const failing = faultyS3((name, input) =>
      name === 'PutObjectCommand' && input.Key === up.layout.tables.conversations
        ? Object.assign(new Error('connection reset'), { name: 'NetworkingError' })
        : undefined,
    );
    await expect(processPcapObject(up, coreDeps(stack, { s3: failing }))).rejects.toBeInstanceOf(
      ResultWriteError,
    );
    const partial = await allVersions(up.cap);
    expect(partial.has(up.layout.completion)).toBe(false);
    expect(partial.has(up.layout.tables.conversations)).toBe(false);
    expect(partial.size).toBeGreaterThan(0);

    const retry = await processPcapObject(up, coreDeps(stack));
    expect(retry.status).toBe('processed');
    const outcomes = Object.values(retry.tables!).map((t) => t.outcome);
    expect(outcomes).toContain('existing');
    expect(retry.tables!.conversations!.outcome).toBe('created');
    const versions = await allVersions(up.cap);
    expect(versions.size).toBe(7);
    for (const [k, n] of versions) expect(n, k).toBe(1);
    const record = await getJson(stack, up.layout.completion);
    expect(record.tables.conversations.records).toBe(record.summary.conversations);
    await published(stack);
  });

  it('recovers from a crash just before the completion record; a later re-delivery does nothing', async () => {
    const up = await upload('crash-before-commit.pcap');
    const failing = faultyS3((name, input) =>
      name === 'PutObjectCommand' && input.Key === up.layout.completion
        ? Object.assign(new Error('Lambda timed out'), { name: 'TimeoutError' })
        : undefined,
    );
    await expect(processPcapObject(up, coreDeps(stack, { s3: failing }))).rejects.toThrow();
    const retry = await processPcapObject(up, coreDeps(stack));
    expect(retry.status).toBe('processed');
    expect(Object.values(retry.tables!).map((t) => t.outcome)).toEqual(Array(6).fill('existing'));
    const again = await processPcapObject(up, coreDeps(stack));
    expect(again.status).toBe('already-processed');
    for (const [k, n] of await allVersions(up.cap)) expect(n, k).toBe(1);
    // Notifications are at least once: the crashed attempt had already published.
    const events = (await published(stack, 2)).filter((e) => e.key === up.key);
    expect(events.filter((e) => e.type === 'Pcap Processed').length).toBeGreaterThanOrEqual(1);
  });

  it('replaces a different partial result left by an earlier attempt and pins the new version', async () => {
    const up = await upload('stale-partial.pcap');
    const stale = await putResultJsonLines(
      { s3: stack.clients.s3, bucket: stack.bucket, kmsKeyArn: stack.keyArn, logger: silentLogger },
      up.layout.tables.tls,
      [{ sni: 'written by an older processor' }],
    );
    const outcome = await processPcapObject(up, coreDeps(stack));
    expect(outcome.tables!.tls).toMatchObject({ outcome: 'replaced' });
    expect(outcome.tables!.tls!.versionId).not.toBe(stale.versionId);
    const record = await getJson(stack, up.layout.completion);
    expect(record.tables.tls).toMatchObject({
      outcome: 'replaced',
      versionId: outcome.tables!.tls!.versionId,
    });
    await published(stack);
  });

  it('fails (to be retried) and writes nothing when the download is cut short', async () => {
    const up = await upload('cut-short.pcap');
    // only the pcap's download is cut (the manifest is read as stored)
    const cut = faultyS3(() => undefined, {
      GetObjectCommand: async (input, send) =>
        input.Key === up.key
          ? { Body: Readable.from([up.bytes.subarray(0, 1000)]), ContentLength: up.bytes.length }
          : send(),
    });
    await expect(processPcapObject(up, coreDeps(stack, { s3: cut }))).rejects.toBeInstanceOf(
      SourceObjectError,
    );
    expect((await allVersions(up.cap)).size).toBe(0);
  });
});
