/**
 * End to end on moto: a pcap uploaded like the host does it → S3 event in SQS (delivered by
 * moto) → the exported Lambda handler → results in the bucket and notifications on the topic.
 */

import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';
import type { SQSBatchResponse } from 'aws-lambda';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  captureId,
  corpusFile,
  createProcessingStack,
  deleteMessages,
  getJson,
  getJsonLines,
  hostMultipartUpload,
  hostUpload,
  INSTANCE,
  lambdaContext,
  messageFor,
  type ProcessingStack,
  published,
  putCaptureManifest,
  receiveUntil,
  repeatedPcap,
  sqsEvent,
  versionsUnder,
} from '../fixtures/processing/stack.ts';
import { motoClients, motoEndpoint } from '../support/aws.ts';

/** tshark -r tls_handshake.pcap -Y tls.handshake.type==1 -T fields -e tls.handshake.extensions_server_name */
const TLS_HANDSHAKE_SNI = ['bawmashbij', 'ssl.gstatic.com', 'www.gstatic.com'];

let stack: ProcessingStack;
let handler: (event: unknown, context: unknown) => Promise<SQSBatchResponse>;

beforeAll(async () => {
  stack = await createProcessingStack(motoClients());
  // The handler reads its configuration from the environment once, as in Lambda.
  Object.assign(process.env, {
    STAGE: 'test',
    AWS_REGION: 'us-east-1',
    TAPLINE_AWS_ENDPOINT: motoEndpoint(),
    EVIDENCE_BUCKET: stack.bucket,
    EVIDENCE_KEY_ID: stack.keyAlias,
    CAPTURE_DOCUMENT_NAME: 'TaplineCapture-test',
    NOTIFICATION_TOPIC: stack.topicName,
    CARVE_MODE: 'off',
    POWERTOOLS_METRICS_DISABLED: 'true',
  });
  ({ handler } = (await import('../../functions/process-pcap.ts')) as any);
});

/** Receives the S3 event for `key` (ignoring others), as Lambda's poller would. */
async function eventMessageFor(key: string, versionId?: string) {
  const messages = await receiveUntil(
    stack,
    stack.queueUrl,
    (m) => !!messageFor(m, key, versionId),
  );
  const message = messageFor(messages, key, versionId);
  expect(message, `S3 event for ${key}`).toBeDefined();
  return message!;
}

function completionKey(cap: string, file: string, versionId: string) {
  return `results/${cap}/${INSTANCE}/${file}/${versionId}/summary.json`;
}

/** The notifications published about `key`, once at least `min` (of any key) are out. */
async function publishedFor(key: string, min?: number) {
  return (await published(stack, min)).filter((e) => e.key === key);
}

/** Hands `messages` to the handler as one SQS batch; none of them may fail. */
async function handleCleanly(messages: Parameters<typeof sqsEvent>[1]) {
  expect((await handler(sqsEvent(stack, messages), lambdaContext())).batchItemFailures).toEqual([]);
}

/** Uploads `bytes` as the host does, as `file` of a new capture, and receives its S3 event. */
async function uploadAndReceive(
  file: string,
  bytes: Buffer,
  options?: Parameters<typeof hostUpload>[3],
) {
  const cap = captureId();
  const key = `pcaps/${cap}/${INSTANCE}/${file}`;
  const upload = await hostUpload(stack, key, bytes, options);
  const message = await eventMessageFor(key);
  return { cap, key, upload, message };
}

/**
 * Uploads `bytes` as the host does, as `file` of a new capture, hands its S3 event to the
 * handler (no failures) and reads the completion record the job wrote for that version.
 */
async function processUpload(
  file: string,
  bytes: Buffer,
  options?: Parameters<typeof hostUpload>[3],
) {
  const uploaded = await uploadAndReceive(file, bytes, options);
  await handleCleanly([uploaded.message]);
  const record = await getJson(stack, completionKey(uploaded.cap, file, uploaded.upload.versionId));
  return { ...uploaded, record };
}

describe('process-pcap on moto, end to end', () => {
  it('ignores the s3:TestEvent moto sends when the notification is configured', async () => {
    const messages = await receiveUntil(stack, stack.queueUrl, (m) =>
      m.some((x) => x.Body?.includes('s3:TestEvent')),
    );
    const test = messages.filter((m) => m.Body?.includes('s3:TestEvent'));
    expect(test).toHaveLength(1);
    const response = await handler(sqsEvent(stack, test), lambdaContext());
    expect(response.batchItemFailures).toEqual([]);
    expect((await versionsUnder(stack, 'results/')).size).toBe(0);
    await deleteMessages(stack, stack.queueUrl, messages);
  });

  it('turns an uploaded pcap into verified results, keyed by its version, and publishes it', async () => {
    const file = 'ring 000+dns.pcap';
    const { cap, key, upload, message } = await uploadAndReceive(
      file,
      await corpusFile('dns_packets.pcap'),
    );
    expect(message.Body).toContain('ring+000%2Bdns.pcap');

    await handleCleanly([message]);

    const record = await getJson(stack, completionKey(cap, file, upload.versionId));
    expect(record).toMatchObject({
      status: 'complete',
      source: { bucket: stack.bucket, key, versionId: upload.versionId, size: upload.bytes.length },
      integrity: {
        verdict: 'verified',
        sha256: upload.sha256,
        host: { status: 'match' },
        s3: { status: 'match', kind: 'FULL_OBJECT' },
        manifest: { status: 'not-listed' },
      },
    });
    expect(record.summary).toMatchObject({
      capture_id: cap,
      instance_id: INSTANCE,
      file,
      version_id: upload.versionId,
      format: 'pcap',
      link_types: [1],
      packets: 464,
      decode_status: 'ok',
      integrity_verdict: 'verified',
      manifest_status: 'read',
      kernel_drops: null,
      host_time_start: 1795423200.25,
      lookback: false,
    });
    const day = `${cap.slice(4, 8)}-${cap.slice(8, 10)}-${cap.slice(10, 12)}`;
    const partition = `dt=${day}/capture=${cap}/instance=${INSTANCE}/file=${file}/version=${upload.versionId}/`;
    expect(record.tables.dns.key).toBe(`results/tables/dns/${partition}dns.jsonl.gz`);
    for (const table of Object.values<any>(record.tables)) {
      const head = await stack.clients.s3.send(
        new HeadObjectCommand({ Bucket: stack.bucket, Key: table.key, VersionId: table.versionId }),
      );
      // SSE-KMS with the evidence key, resolved from its alias (EVIDENCE_KEY_ID).
      expect(head.ServerSideEncryption).toBe('aws:kms');
      expect(head.SSEKMSKeyId).toBe(stack.keyArn);
    }
    const summaryLine = await getJson(stack, record.tables.summary.key);
    expect(summaryLine).toEqual(record.summary);
    const dns = await getJsonLines(stack, record.tables.dns.key);
    expect(dns.length).toBe(record.summary.dns_records);
    expect(dns.length).toBeGreaterThan(400);
    expect(dns[0]).toMatchObject({ capture_id: cap, file, transport: 'udp' });
    const conversations = await getJsonLines(stack, record.tables.conversations.key);
    expect(conversations.length).toBe(record.summary.conversations);
    expect(conversations.reduce((n, c) => n + c.packets, 0)).toBe(464);
    for (const c of conversations) expect(c.community_id).toMatch(/^1:[A-Za-z0-9+/]{27}=$/);

    const events = await published(stack);
    const processed = events.find((e) => e.type === 'Pcap Processed' && e.key === key);
    expect(processed).toMatchObject({
      integrity: 'verified',
      packets: 464,
      versionId: upload.versionId,
    });
    expect(events.some((e) => e.type === 'Pcap Integrity Failed')).toBe(false);
    await deleteMessages(stack, stack.queueUrl, [message]);
  });

  it("verifies a multipart upload against S3's COMPOSITE checksum, part by part", async () => {
    const cap = captureId();
    const key = `pcaps/${cap}/${INSTANCE}/multipart.pcap`;
    const bytes = repeatedPcap(await corpusFile('http_650_responses.pcap'), 11 * 1024 * 1024);
    const upload = await hostMultipartUpload(stack, key, bytes);
    const message = await eventMessageFor(key);
    await handleCleanly([message]);
    const record = await getJson(stack, completionKey(cap, 'multipart.pcap', upload.versionId));
    expect(record.integrity).toMatchObject({
      verdict: 'verified',
      sha256: upload.sha256,
      bytesRead: bytes.length,
      host: { status: 'match' },
      s3: { status: 'match', kind: 'COMPOSITE', parts: 3 },
    });
    expect(record.summary.lookback).toBe(true);
    await published(stack);
    await deleteMessages(stack, stack.queueUrl, [message]);
  });

  it('yields exactly one result set when the same record is delivered 1 to 5 times', async () => {
    const file = 'tls.pcap';
    const { cap, key, upload, message } = await uploadAndReceive(
      file,
      await corpusFile('tls_handshake.pcap'),
    );
    const prefix = `results/${cap}/`;
    // 1st delivery: a batch with the record twice; then three separate re-deliveries.
    const again = { ...message, MessageId: `${message.MessageId}-redelivered` };
    await handleCleanly([message, again]);
    for (let i = 0; i < 3; i++) await handleCleanly([message]);
    const home = await versionsUnder(stack, prefix);
    expect([...home.values()]).toEqual([1]);
    const tables = await versionsUnder(stack, 'results/tables/');
    const ours = [...tables.entries()].filter(([k]) => k.includes(`capture=${cap}/`));
    expect(ours.map(([k]) => k.split('/')[2]).sort()).toEqual([
      'conversations',
      'dns',
      'http',
      'port_zero',
      'summary',
      'tls',
    ]);
    for (const [k, n] of ours) expect(n, k).toBe(1);
    const record = await getJson(stack, completionKey(cap, file, upload.versionId));
    const tls = await getJsonLines(stack, record.tables.tls.key);
    expect(tls.map((t) => t.sni)).toEqual(TLS_HANDSHAKE_SNI);
    const events = await publishedFor(key);
    expect(events.filter((e) => e.type === 'Pcap Processed')).toHaveLength(1);
    await deleteMessages(stack, stack.queueUrl, [message]);
  });

  it('marks and announces a pcap whose host hash does not match its bytes, and still processes it', async () => {
    const { key, upload, message, record } = await processUpload(
      'tampered.pcap',
      await corpusFile('tls_handshake.pcap'),
      { hostHash: 'f'.repeat(64) },
    );
    expect(record.integrity).toMatchObject({
      verdict: 'mismatch',
      host: { status: 'mismatch', expected: 'f'.repeat(64) },
      s3: { status: 'match' },
    });
    expect(record.summary.packets).toBe(44);
    const events = await publishedFor(key, 2);
    expect(events.find((e) => e.type === 'Pcap Integrity Failed')).toMatchObject({
      verdict: 'mismatch',
      sha256: upload.sha256,
      versionId: upload.versionId,
    });
    expect(events.find((e) => e.type === 'Pcap Processed')).toMatchObject({
      integrity: 'mismatch',
    });
    await deleteMessages(stack, stack.queueUrl, [message]);
  });

  it('catches bytes overwritten as a new version that carries the old hash and checksum', async () => {
    const {
      cap,
      key,
      upload: original,
      message: first,
    } = await uploadAndReceive('overwritten.pcap', await corpusFile('tls_handshake.pcap'));
    await handleCleanly([first]);
    await deleteMessages(stack, stack.queueUrl, [first]);
    const forged = await corpusFile('dns_packets.pcap');
    const out = await stack.clients.s3.send(
      new PutObjectCommand({
        Bucket: stack.bucket,
        Key: key,
        Body: forged,
        // moto stores a checksum without verifying it, as a forged upload would claim one.
        ChecksumAlgorithm: 'SHA256',
        ChecksumSHA256: Buffer.from(original.sha256, 'hex').toString('base64'),
        Metadata: { sha256: original.sha256 },
      }),
    );
    // moto's events carry no versionId (real S3's do): the job then reads the latest version.
    const second = await eventMessageFor(key);
    await handleCleanly([second]);
    const before = await getJson(stack, completionKey(cap, 'overwritten.pcap', original.versionId));
    expect(before.integrity.verdict).toBe('verified');
    const after = await getJson(stack, completionKey(cap, 'overwritten.pcap', out.VersionId!));
    expect(after.integrity).toMatchObject({
      verdict: 'mismatch',
      host: { status: 'mismatch', expected: original.sha256 },
      s3: { status: 'mismatch' },
    });
    expect(after.summary.packets).toBe(464);
    const events = await publishedFor(key, 3);
    expect(
      events.some((e) => e.type === 'Pcap Integrity Failed' && e.versionId === out.VersionId),
    ).toBe(true);
    expect(
      events.some((e) => e.type === 'Pcap Integrity Failed' && e.versionId === original.versionId),
    ).toBe(false);
    await deleteMessages(stack, stack.queueUrl, [second]);
  });

  it('records a pcap without any hash as unverified, and says so loudly', async () => {
    const { key, message, record } = await processUpload(
      'nohash.pcap',
      await corpusFile('dns_packets.pcap'),
      { hostHash: null, checksum: null },
    );
    expect(record.integrity).toMatchObject({
      verdict: 'unverified',
      host: { status: 'missing' },
      s3: { status: 'missing' },
    });
    const events = await publishedFor(key, 2);
    expect(events.find((e) => e.type === 'Pcap Integrity Failed')).toMatchObject({
      verdict: 'unverified',
    });
    await deleteMessages(stack, stack.queueUrl, [message]);
  });

  it('does not vouch for a pcap with intact hashes that no capture sent a command for', async () => {
    // Any capture host may write under pcaps/: one that names a capture ID nobody started, or
    // another instance's capture, sets hashes that agree with its own bytes.
    const stray = await processUpload('stray.pcap', await corpusFile('dns_packets.pcap'), {
      sentTo: false,
    });
    expect(stray.record.integrity).toMatchObject({
      verdict: 'unverified',
      host: { status: 'match' },
      s3: { status: 'match' },
      provenance: { status: 'no-manifest' },
    });
    expect(stray.record.integrity.problems.join('\n')).toMatch(/has no manifest/);
    const events = await publishedFor(stray.key, 2);
    expect(events.find((e) => e.type === 'Pcap Integrity Failed')).toMatchObject({
      verdict: 'unverified',
      problems: [expect.stringMatching(/did not make this file/)],
    });
    await deleteMessages(stack, stack.queueUrl, [stray.message]);

    // A capture that exists, but was sent to other hosts (and refused on this one).
    for (const [hosts, status] of [
      [{ 'i-0ffffffffffffffff': { status: 'running', files: [] } }, 'not-a-target'],
      [{ [INSTANCE]: { status: 'refused', files: [] } }, 'not-sent'],
    ] as const) {
      const cap = captureId();
      const key = `pcaps/${cap}/${INSTANCE}/other.pcap`;
      await putCaptureManifest(stack, cap, { captureId: cap, hosts });
      const upload = await hostUpload(stack, key, await corpusFile('dns_packets.pcap'));
      const message = await eventMessageFor(key);
      await handleCleanly([message]);
      const record = await getJson(stack, completionKey(cap, 'other.pcap', upload.versionId));
      expect(record.integrity).toMatchObject({ verdict: 'unverified', provenance: { status } });
      await publishedFor(key, 2);
      await deleteMessages(stack, stack.queueUrl, [message]);
    }
  });

  it('records an object that is not a capture as unreadable: hashed, marked, not retried', async () => {
    const { key, upload, message, record } = await processUpload(
      'garbage.pcap',
      Buffer.from('MZ\x90\x00 definitely not a pcap'.repeat(100)),
    );
    expect(record.summary).toMatchObject({ decode_status: 'unreadable', packets: 0, format: null });
    expect(record.summary.decode_error).toMatch(/^PCAP_CORRUPT: /);
    expect(record.integrity).toMatchObject({ verdict: 'verified', sha256: upload.sha256 });
    const events = await publishedFor(key);
    expect(events.find((e) => e.type === 'Pcap Processed')).toMatchObject({
      decodeStatus: 'unreadable',
    });
    await deleteMessages(stack, stack.queueUrl, [message]);
  });

  it('fails only the malformed record of a batch', async () => {
    const {
      cap,
      upload,
      message: good,
    } = await uploadAndReceive('good.pcap', await corpusFile('tls_handshake.pcap'));
    const bad = { ...good, MessageId: 'not-an-s3-event', Body: '{"hello": "world"}' };
    const body = JSON.parse(good.Body!);
    body.Records[0].s3.object.key = `pcaps/${cap}/not-an-instance/x.pcap`;
    const badKey = { ...good, MessageId: 'unexpected-key', Body: JSON.stringify(body) };
    const response = await handler(sqsEvent(stack, [bad, good, badKey]), lambdaContext());
    expect(response.batchItemFailures.map((f) => f.itemIdentifier).sort()).toEqual([
      'not-an-s3-event',
      'unexpected-key',
    ]);
    const record = await getJson(stack, completionKey(cap, 'good.pcap', upload.versionId));
    expect(record.integrity.verdict).toBe('verified');
    await published(stack);
    await deleteMessages(stack, stack.queueUrl, [good]);
  });

  it('reads kernel drops and the host record from the capture manifest', async () => {
    const cap = captureId();
    const key = `pcaps/${cap}/${INSTANCE}/listed.pcap`;
    const bytes = await corpusFile('tls_handshake.pcap');
    const upload = await hostUpload(stack, key, bytes);
    await putCaptureManifest(stack, cap, {
      captureId: cap,
      state: 'running',
      hosts: {
        [INSTANCE]: {
          status: 'uploading',
          files: [{ key, versionId: upload.versionId, sha256: upload.sha256, size: bytes.length }],
          packetsCaptured: 1000,
          packetsDroppedByKernel: 17,
          errors: [],
        },
      },
    });
    const message = await eventMessageFor(key);
    await handleCleanly([message]);
    const record = await getJson(stack, completionKey(cap, 'listed.pcap', upload.versionId));
    expect(record.summary).toMatchObject({
      manifest_status: 'read',
      kernel_drops: 17,
      host_packets_captured: 1000,
      integrity_verdict: 'verified',
    });
    expect(record.integrity.manifest).toEqual({ status: 'match', expected: upload.sha256 });
    await published(stack);
    await deleteMessages(stack, stack.queueUrl, [message]);
  });

  it('defers a record when the invocation is nearly out of time, instead of timing out the batch', async () => {
    const body = JSON.stringify({
      Service: 'Amazon S3',
      Event: 's3:TestEvent',
      Bucket: stack.bucket,
    });
    const message = { MessageId: 'late', ReceiptHandle: 'h', Body: body };
    const context = { ...lambdaContext(), getRemainingTimeInMillis: () => 10_000 };
    const response = await handler(sqsEvent(stack, [message]), context);
    expect(response.batchItemFailures).toEqual([{ itemIdentifier: 'late' }]);
  });

  it('lets SQS dead-letter a record that keeps failing, after maxReceiveCount receives', async () => {
    const { sqs } = stack.clients;
    const dlq = await sqs.send(new CreateQueueCommand({ QueueName: `${stack.bucket}-dlq` }));
    const dlqArn = (
      await sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: dlq.QueueUrl!, AttributeNames: ['QueueArn'] }),
      )
    ).Attributes!.QueueArn!;
    const queue = await sqs.send(
      new CreateQueueCommand({
        QueueName: `${stack.bucket}-redrive`,
        Attributes: {
          VisibilityTimeout: '1',
          RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: 2 }),
        },
      }),
    );
    await sqs.send(
      new SendMessageCommand({ QueueUrl: queue.QueueUrl!, MessageBody: '{"not": "an S3 event"}' }),
    );
    await sqs.send(
      new SendMessageCommand({
        QueueUrl: queue.QueueUrl!,
        MessageBody: JSON.stringify({
          Service: 'Amazon S3',
          Event: 's3:TestEvent',
          Bucket: stack.bucket,
        }),
      }),
    );
    // What Lambda's SQS poller does: receive, invoke, delete what did not fail.
    const failures: string[] = [];
    for (let round = 0; round < 4; round++) {
      const got = await sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: queue.QueueUrl!,
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: 1,
        }),
      );
      const messages = got.Messages ?? [];
      if (messages.length > 0) {
        const response = await handler(sqsEvent(stack, messages), lambdaContext());
        const failed = new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
        failures.push(...failed);
        await deleteMessages(
          stack,
          queue.QueueUrl!,
          messages.filter((m) => !failed.has(m.MessageId!)),
        );
      }
      await new Promise((r) => setTimeout(r, 1100));
    }
    expect(failures.length).toBe(2);
    const dead = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: dlq.QueueUrl!,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
      }),
    );
    expect((dead.Messages ?? []).map((m) => m.Body)).toEqual(['{"not": "an S3 event"}']);
  });
});
