import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import {
  CreateBucketCommand,
  PutBucketNotificationConfigurationCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { CreateTopicCommand } from '@aws-sdk/client-sns';
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
} from '@aws-sdk/client-sqs';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeHandler } from '../../functions/detect-flow-anomalies.ts';
import type { CaptureRequest } from '../../shared/capture/request.ts';
import type { DetectDeps } from '../../shared/detection/detect.ts';
import { FlowScanner } from '../../shared/flowlogs/scanner.ts';
import { scanS3Object } from '../../shared/flowlogs/sources/s3.ts';
import { lambdaContext } from '../../shared/lab/lab-aws.ts';
import { silentLogger } from '../../shared/observability.ts';
import { defaultRules } from '../../shared/rules/config.ts';
import { motoClients, uniqueName } from '../support/aws.ts';
import { flowLogFixture, LAB_REAL_FINGERPRINTS } from '../support/flowlog-inputs.ts';
import { flowLogParquet } from '../support/flowlog-parquet.ts';

const eventTemplate = (name: string) =>
  JSON.parse(readFileSync(new URL(`../../events/s3-flowlogs/${name}`, import.meta.url), 'utf8'));

/** The field names of the default (version 2) format, as S3 delivery's header line. */
const V2_HEADER =
  'version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status';

const context = lambdaContext('tapline-test-detectFlowAnomalies', {
  awsRequestId: 'test-request',
});

/** An S3 client that records every GetObject (key and Range) it sends. */
function recordingClients() {
  const clients = motoClients();
  const gets: Array<{ key: string; range?: string }> = [];
  clients.s3.middlewareStack.add(
    (next, ctx) => async (args) => {
      if (ctx.commandName === 'GetObjectCommand') {
        const input = args.input as { Key: string; Range?: string };
        gets.push({ key: input.Key, ...(input.Range ? { range: input.Range } : {}) });
      }
      return next(args);
    },
    { step: 'initialize', name: 'recordGets' },
  );
  return { clients, gets };
}

describe('detect-flow-anomalies on S3-delivered flow logs (moto)', () => {
  const { clients, gets } = recordingClients();
  const bucket = uniqueName('tldet-flowlogs');
  const captures: CaptureRequest[] = [];
  let deps: DetectDeps;
  let handler: ReturnType<typeof makeHandler>;
  // the key as VPC Flow Logs names it, plus a character S3 events must URL-encode
  const key = `AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/11/23/123456789012_vpcflowlogs_us-east-1_fl-0a1b2c3d4e5f60718_20261123T0905Z_5f2a9c1e=x.log.gz`;

  /** An S3 notification record for the lab fixture object (its key URL-encoded, as S3 sends). */
  const labObjectRecord = () => {
    const record = eventTemplate('object-created-notification.json').Records[0];
    record.s3.bucket.name = bucket;
    record.s3.object.key = encodeURIComponent(key).replaceAll('%2F', '/');
    return record;
  };

  beforeAll(async () => {
    await clients.s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const topicArn = (await clients.sns.send(new CreateTopicCommand({ Name: uniqueName('tldet') })))
      .TopicArn!;
    deps = {
      rules: defaultRules(),
      s3: clients.s3,
      logger: silentLogger,
      notify: {
        eventBridge: clients.eventBridge,
        sns: clients.sns,
        eventBusName: 'default',
        topicArn,
        logger: silentLogger,
      },
      startCapture: async (request) => {
        captures.push(request);
        return { started: [{ instanceId: 'i-0202000000000001a' }], refused: [] };
      },
    };
    handler = makeHandler(async () => deps);
  });

  it('streams a gzip object named by a real S3 notification (moto → SQS) through the handler', async () => {
    const queueUrl = (
      await clients.sqs.send(new CreateQueueCommand({ QueueName: uniqueName('tldet') }))
    ).QueueUrl!;
    const queueArn = (
      await clients.sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }),
      )
    ).Attributes!.QueueArn!;
    await clients.s3.send(
      new PutBucketNotificationConfigurationCommand({
        Bucket: bucket,
        NotificationConfiguration: {
          QueueConfigurations: [{ QueueArn: queueArn, Events: ['s3:ObjectCreated:*'] }],
        },
      }),
    );
    // the S3 object format: a header line naming the fields, then records (custom v5 here)
    await clients.s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: gzipSync(flowLogFixture('lab-real-v5.log')),
      }),
    );
    const events: unknown[] = [];
    for (let i = 0; i < 10 && events.length === 0; i++) {
      const got = await clients.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: 1,
        }),
      );
      for (const m of got.Messages ?? []) {
        const body = JSON.parse(m.Body!);
        if (body.Records) events.push(body);
      }
    }
    expect(events).toHaveLength(1);
    const event = events[0] as { Records: Array<{ s3: { object: { key: string } } }> };
    expect(event.Records[0]!.s3.object.key).not.toBe(key); // moto URL-encodes "="

    captures.length = 0;
    gets.length = 0;
    const response = await handler(event, context);
    expect(response).toMatchObject({ batches: 1, records: 155, malformed: 0 });
    expect(response.findings.map((f) => f.fingerprint).sort()).toEqual(LAB_REAL_FINGERPRINTS);
    expect(gets).toEqual([{ key }]);
    expect(captures.map((c) => c.targets)).toContainEqual({
      kind: 'eni',
      eniId: 'eni-0202000000000001a',
      peerAddress: '10.202.1.2',
    });
    expect(response.captures.every((c) => c.status === 'started')).toBe(true);
  });

  it('reads the same object from an EventBridge "Object Created" event and publishes each finding', async () => {
    const event = eventTemplate('eventbridge-object-created.json');
    event.detail.bucket.name = bucket;
    event.detail.object.key = key;
    const report = await import('../../shared/detection/detect.ts').then((m) =>
      m.detectFlowAnomalies(event, deps),
    );
    expect(report.findings).toHaveLength(6);
    expect(report.published).toHaveLength(6);
    expect(report.published.every((p) => p.eventBridge === 'sent' && p.sns === 'sent')).toBe(true);
  });

  it('reads Parquet objects with ranged GETs only', async () => {
    const parquet = flowLogParquet(flowLogFixture('lab-real-v5.log'), { rowGroupSize: 64 });
    const parquetKey = key.replace('.log.gz', '.log.parquet');
    await clients.s3.send(new PutObjectCommand({ Bucket: bucket, Key: parquetKey, Body: parquet }));
    const event = eventTemplate('eventbridge-object-created-parquet.json');
    event.detail.bucket.name = bucket;
    event.detail.object.key = parquetKey;
    event.detail.object.size = parquet.length;

    gets.length = 0;
    const response = await handler(event, context);
    expect(response).toMatchObject({ records: 155, malformed: 0 });
    expect(response.findings).toHaveLength(6);
    expect(gets.length).toBeGreaterThan(1);
    expect(gets.every((g) => g.key === parquetKey && /^bytes=\d+-\d+$/.test(g.range ?? ''))).toBe(
      true,
    );
  });

  it('a Parquet version named without its size is sized by that version, not the latest', async () => {
    const versioned = uniqueName('tldet-versions');
    await clients.s3.send(new CreateBucketCommand({ Bucket: versioned }));
    await clients.s3.send(
      new PutBucketVersioningCommand({
        Bucket: versioned,
        VersioningConfiguration: { Status: 'Enabled' },
      }),
    );
    const parquetKey = 'AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/11/23/v.log.parquet';
    const first = await clients.s3.send(
      new PutObjectCommand({
        Bucket: versioned,
        Key: parquetKey,
        Body: flowLogParquet(flowLogFixture('lab-real-v5.log'), { rowGroupSize: 64 }),
      }),
    );
    // a later, smaller version of the same key (a different log)
    await clients.s3.send(
      new PutObjectCommand({
        Bucket: versioned,
        Key: parquetKey,
        Body: flowLogParquet(flowLogFixture('aws-doc-default.log').replace(/^/, `${V2_HEADER}\n`)),
      }),
    );
    const scanner = new FlowScanner({ observe() {} }, { header: 'none' });
    await scanS3Object(
      clients.s3,
      { bucket: versioned, key: parquetKey, rawKey: parquetKey, versionId: first.VersionId! },
      scanner,
    );
    expect(scanner.stats.records).toBe(155);
  });

  it('a missing object fails the invocation (retry) without losing the other objects', async () => {
    const ok = labObjectRecord();
    const missing = structuredClone(ok);
    missing.s3.object.key = 'AWSLogs/nope.log.gz';
    const report = await import('../../shared/detection/detect.ts').then((m) =>
      m.detectFlowAnomalies({ Records: [missing, ok] }, deps),
    );
    expect(report.retryable).toBe(1);
    expect(report.batches.map((b) => Boolean(b.error))).toEqual([true, false]);
    expect(report.findings).toHaveLength(6);
    await expect(handler({ Records: [missing] }, context)).rejects.toThrow(/retried/);
  });

  it('a damaged gzip object is reported as corrupt, not retried, keeps what it had, and the others still count', async () => {
    const ok = labObjectRecord();
    const damagedKey = 'AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/11/23/damaged.log.gz';
    const gz = gzipSync(flowLogFixture('lab-real-v5.log'));
    await clients.s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: damagedKey,
        Body: gz.subarray(0, gz.length >> 1),
      }),
    );
    const damaged = structuredClone(ok);
    damaged.s3.object.key = damagedKey;
    const report = await import('../../shared/detection/detect.ts').then((m) =>
      m.detectFlowAnomalies({ Records: [damaged, ok] }, deps),
    );
    expect(report.retryable).toBe(0);
    expect(report.batches[0]!.error).toMatchObject({
      name: 'CorruptFlowLogError',
      code: 'FLOW_LOG_CORRUPT',
    });
    expect(report.batches[0]!.damaged).toBe(true);
    expect(report.batches[1]!.error).toBeUndefined();
    // the damaged half's records were read up to the damage; their findings are kept, marked
    const fromDamaged = report.findings.filter((f) => f.source.endsWith('damaged.log.gz'));
    const fromOk = report.findings.filter((f) => !f.source.endsWith('damaged.log.gz'));
    expect(fromOk.map((f) => f.fingerprint).sort()).toEqual(LAB_REAL_FINGERPRINTS);
    expect(fromOk.every((f) => f.sourceDamaged === undefined)).toBe(true);
    expect(fromDamaged.length).toBeGreaterThan(0);
    expect(report.batches[0]!.findings).toBe(fromDamaged.length);
    for (const f of fromDamaged) {
      expect(LAB_REAL_FINGERPRINTS).toContain(f.fingerprint);
      expect(f.sourceDamaged).toMatch(/gzip stream cut short after \d+ lines/);
    }
    // the handler neither retries the damaged object nor hides it
    const response = await handler({ Records: [damaged, ok] }, context);
    expect(response.damaged).toEqual([`s3://${bucket}/${damagedKey}`]);
    // next to an object worth a retry, the retry names only that one
    const missing = structuredClone(ok);
    missing.s3.object.key = 'AWSLogs/nope-either.log.gz';
    const failure = await handler({ Records: [damaged, missing] }, context).catch((e) => e);
    expect(failure).toMatchObject({
      code: 'FLOW_LOG_BATCH_FAILED',
      details: { batches: [`s3://${bucket}/AWSLogs/nope-either.log.gz`] },
    });
  });

  it('an altered gzip object (CRC mismatch) is corrupt: no findings from it, not retried', async () => {
    const ok = labObjectRecord();
    const alteredKey = 'AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/11/23/altered.log.gz';
    const gz = gzipSync(flowLogFixture('lab-real-v5.log'));
    gz[289] ^= 1; // inflates to well-formed records with other addresses; the CRC tells
    await clients.s3.send(new PutObjectCommand({ Bucket: bucket, Key: alteredKey, Body: gz }));
    const altered = structuredClone(ok);
    altered.s3.object.key = alteredKey;
    const report = await import('../../shared/detection/detect.ts').then((m) =>
      m.detectFlowAnomalies({ Records: [altered, ok] }, deps),
    );
    expect(report.retryable).toBe(0);
    expect(report.batches[0]).toMatchObject({
      findings: 0,
      error: { code: 'FLOW_LOG_CORRUPT', message: expect.stringMatching(/cannot be trusted/) },
    });
    expect(report.batches[0]!.damaged).toBeUndefined();
    expect(report.findings.map((f) => f.fingerprint).sort()).toEqual(LAB_REAL_FINGERPRINTS);
    expect(report.findings.every((f) => !f.source.endsWith('altered.log.gz'))).toBe(true);
  });
});
