import { readFileSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { type CaptureRequest, parseCaptureRequest } from '../../shared/capture/request.ts';
import {
  batchesFromEvent,
  type DetectDeps,
  detectBatch,
  detectFlowAnomalies,
} from '../../shared/detection/detect.ts';
import { lookbackFor } from '../../shared/detection/finding.ts';
import { ConfigError, MalformedEventError } from '../../shared/errors.ts';
import {
  decodeSubscriptionData,
  encodeSubscriptionData,
  type SubscriptionPayload,
} from '../../shared/flowlogs/sources/cloudwatch.ts';
import { s3ObjectsFromEvent } from '../../shared/flowlogs/sources/s3.ts';
import { silentLogger } from '../../shared/observability.ts';
import { defaultRules, loadRules } from '../../shared/rules/config.ts';
import { flowLogFixture, LAB_REAL_FINGERPRINTS, textFlowBatch } from '../support/flowlog-inputs.ts';

const lines = (name: string) =>
  flowLogFixture(name)
    .split('\n')
    .filter((l) => l.trim() !== '');

function cwlEvent(
  messages: string[],
  messageType: SubscriptionPayload['messageType'] = 'DATA_MESSAGE',
) {
  const payload: SubscriptionPayload = {
    messageType,
    owner: '123456789012',
    logGroup: '/tapline/test/vpc-flow-logs',
    logStream: 'eni-0202000000000001a-all',
    subscriptionFilters: ['tapline'],
    logEvents: messages.map((message, i) => ({
      id: String(i),
      timestamp: 1_795_424_204_000,
      message,
    })),
  };
  return { awslogs: { data: encodeSubscriptionData(payload) } };
}

const now = () => new Date('2026-11-23T09:10:00Z');

/** The detector's deps for these tests: default rules, silent logger, the fixed clock. */
function detectDeps(overrides: Partial<DetectDeps> = {}): DetectDeps {
  return { rules: defaultRules(), logger: silentLogger, clock: now, ...overrides };
}

describe('CloudWatch Logs subscription payloads', () => {
  it('decodes base64(gzip(JSON)) and skips CONTROL_MESSAGE deliveries', () => {
    const event = cwlEvent(lines('aws-doc-default.log'));
    expect(decodeSubscriptionData(event.awslogs.data).logEvents).toHaveLength(6);
    expect(
      batchesFromEvent(
        cwlEvent(['CWL CONTROL MESSAGE: Checking health of destination'], 'CONTROL_MESSAGE'),
      ),
    ).toEqual([]);
  });

  it('refuses damaged payloads with MalformedEventError', () => {
    expect(() => decodeSubscriptionData('not base64!')).toThrow(MalformedEventError);
    expect(() => decodeSubscriptionData(Buffer.from('plain').toString('base64'))).toThrow(/gzip/);
    const notJson = encodeSubscriptionData({ messageType: 'DATA_MESSAGE', logEvents: [] }).slice(
      0,
      20,
    );
    expect(() => decodeSubscriptionData(notJson)).toThrow(MalformedEventError);
    expect(() => batchesFromEvent({ hello: 'world' })).toThrow(MalformedEventError);
  });

  it('turns real lab records (softflowd/nfdump from real packets) into the expected findings', async () => {
    const started: CaptureRequest[] = [];
    const report = await detectFlowAnomalies(
      cwlEvent(lines('lab-real-v2.log')),
      detectDeps({
        startCapture: async (request) => {
          started.push(request);
          return { started: [{ instanceId: 'i-0202000000000001a' }] };
        },
      }),
    );
    expect(report.batches[0]!.stats).toMatchObject({ records: 155, malformed: 0 });
    expect(report.findings.map((f) => f.fingerprint).sort()).toEqual(LAB_REAL_FINGERPRINTS);
    // ICMP (ping, unreachables, neighbour discovery) never fires port-zero
    expect(
      report.findings
        .filter((f) => f.rule === 'port-zero')
        .every((f) => f.protocol !== 1 && f.protocol !== 58),
    ).toBe(true);
    // port-zero auto-captures; scans and sweeps are suggestions
    expect(started.map((r) => r.fingerprint).sort()).toEqual(
      report.findings
        .filter((f) => f.rule === 'port-zero')
        .map((f) => f.fingerprint)
        .sort(),
    );
    expect(report.captures.every((c) => c.status === 'started')).toBe(true);
  });

  it('counts repeated cooldown refusals the capture core did not record', async () => {
    const report = await detectFlowAnomalies(
      cwlEvent(lines('lab-real-v2.log')),
      detectDeps({
        startCapture: async (request) => ({
          started: [],
          refused: [{ reason: 'cooldown' }],
          ...(request.fingerprint?.startsWith('port-zero:tcp') ? { recorded: false } : {}),
        }),
      }),
    );
    const portZero = report.captures.filter((c) => c.fingerprint.startsWith('port-zero:'));
    expect(portZero.every((c) => c.status === 'refused')).toBe(true);
    const quiet = report.captures.filter((c) => c.recorded === false);
    expect(quiet.map((c) => c.fingerprint).sort()).toEqual([
      'port-zero:tcp:10.202.1.1:10.202.1.2',
      'port-zero:tcp:fd00:202::1:fd00:202::2',
    ]);
    expect(report.refusalsNotRecorded).toBe(2);
  });

  it('handles a 1 MB subscription payload', async () => {
    const base = lines('lab-real-v2.log');
    const messages: string[] = [];
    let size = 0;
    for (let i = 0; size < 1_200_000; i++) {
      const line = base[i % base.length]!.replace(
        / (\d+) (\d+) ACCEPT OK$/,
        (_m, s: string, e: string) => ` ${Number(s) + (i % 50)} ${Number(e) + (i % 50)} ACCEPT OK`,
      );
      messages.push(line);
      size += line.length + 50;
    }
    const event = cwlEvent(messages);
    expect(JSON.stringify(decodeSubscriptionData(event.awslogs.data)).length).toBeGreaterThan(
      1_048_576,
    );
    const report = await detectFlowAnomalies(event, detectDeps());
    expect(report.batches[0]!.stats.records).toBe(messages.length);
    const zeroTcp = messages.filter((m) =>
      / 10\.202\.1\.[12] 10\.202\.1\.[12] (0 \d+|\d+ 0) 6 /.test(m),
    ).length;
    expect(zeroTcp).toBeGreaterThan(50);
    expect(
      report.findings.find((f) => f.fingerprint === 'port-zero:tcp:10.202.1.1:10.202.1.2')!.records,
    ).toBe(zeroTcp);
  });

  it('uses FLOW_LOG_FORMAT for CloudWatch records (custom v5 with tcp-flags)', async () => {
    const [header, ...records] = lines('lab-real-v5.log');
    const report = await detectFlowAnomalies(
      cwlEvent(records),
      detectDeps({
        flowLogFormat: header,
      }),
    );
    expect(report.batches[0]!.stats.malformed).toBe(0);
    const zero = report.findings.find(
      (f) => f.fingerprint === 'port-zero:tcp:10.202.1.1:10.202.1.2',
    )!;
    // instance-id stays in the evidence only: the capture goes through target resolution from
    // the interface that logged the records, as for v2 records.
    expect(zero.evidence[0]!['instance-id']).toBe('i-0202000000000001a');
    expect(zero.capture.where).not.toHaveProperty('instanceIds');
    expect(zero.capture.request.targets).toEqual({
      kind: 'eni',
      eniId: 'eni-0202000000000001a',
      peerAddress: '10.202.1.2',
    });
  });
});

describe('batch reports', () => {
  it('say which line parser read the batch; no problem when the WebAssembly path loads', async () => {
    const { report } = await detectBatch(
      textFlowBatch(flowLogFixture('aws-doc-default.log')),
      detectDeps(),
    );
    expect(report.parser).toBe('wasm');
    expect(report.parserProblem).toBeUndefined();
    expect(report.stats.records).toBeGreaterThan(0);
  });
});

describe('findings → capture requests', () => {
  it('every suggested request passes parseCaptureRequest as a detector request', async () => {
    const withoutHeaders = ['lab-real-v2.log', 'custom-v5.log', 'ipv6.log'].map((f) =>
      flowLogFixture(f)
        .split('\n')
        .filter((l) => !l.startsWith('version'))
        .join('\n'),
    );
    const { findings } = await detectBatch(textFlowBatch(...withoutHeaders), {
      rules: defaultRules(),
      clock: now,
    });
    expect(findings.length).toBeGreaterThan(5);
    for (const f of findings) {
      const request = parseCaptureRequest(f.capture.request);
      expect(request.source).toBe('detector');
      expect(request.fingerprint).toBe(f.fingerprint);
      expect(request.finding).toMatchObject({
        rule: f.rule,
        fingerprint: f.fingerprint,
        start: f.start,
        end: f.end,
      });
      expect(request.filter?.kind).toBe('structured');
      expect(request.lookbackSeconds).toBeGreaterThan(0);
    }
  });

  it('sizes the look-back from the finding start, the flow-log delay margin and the cap', () => {
    const rule = defaultRules().rules['port-zero'];
    const t = 1_795_424_204;
    expect(lookbackFor(rule, t, t + 420)).toBe(420 + rule.capture.lookbackMarginSeconds);
    expect(lookbackFor(rule, t, t + 100_000)).toBe(rule.capture.maxLookbackSeconds);
    expect(
      lookbackFor({ ...rule, capture: { ...rule.capture, lookbackSeconds: 60 } }, t, t + 999),
    ).toBe(60);
  });

  it('a capture core refusal is recorded, a crash does not stop the other findings', async () => {
    const startCapture = vi
      .fn()
      .mockResolvedValueOnce({ started: [], refused: [{ reason: 'cooldown' }] })
      .mockRejectedValueOnce(new Error('SSM down'))
      .mockResolvedValue({ started: [{ instanceId: 'i-1' }] });
    const report = await detectFlowAnomalies(
      cwlEvent(lines('lab-real-v2.log')),
      detectDeps({
        startCapture,
      }),
    );
    expect(report.captures.map((c) => c.status)).toEqual([
      'refused',
      'failed',
      'started',
      'started',
    ]);
  });
});

describe('S3 events', () => {
  it('reads classic notifications and EventBridge Object Created, URL-decoding keys', () => {
    const key = 'AWSLogs/123456789012/vpcflowlogs/us-east-1/2026/11/23/a+b%3Dc.log.gz';
    expect(
      s3ObjectsFromEvent({
        Records: [
          {
            eventSource: 'aws:s3',
            eventName: 'ObjectCreated:Put',
            s3: { bucket: { name: 'flow-bucket' }, object: { key, size: 10 } },
          },
        ],
      }),
    ).toEqual([
      { bucket: 'flow-bucket', key: key.replace('a+b%3Dc', 'a b=c'), rawKey: key, size: 10 },
    ]);
    expect(
      s3ObjectsFromEvent({
        source: 'aws.s3',
        'detail-type': 'Object Created',
        detail: {
          bucket: { name: 'flow-bucket' },
          object: { key: 'x/y.log.gz', 'version-id': 'v1' },
        },
      }),
    ).toEqual([
      { bucket: 'flow-bucket', key: 'x/y.log.gz', rawKey: 'x/y.log.gz', versionId: 'v1' },
    ]);
    expect(s3ObjectsFromEvent({ Event: 's3:TestEvent', Bucket: 'flow-bucket' })).toEqual([]);
    expect(() => s3ObjectsFromEvent({ Records: [{ eventSource: 'aws:s3' }] })).toThrow(
      MalformedEventError,
    );
  });
});

describe('sample events for serverless invoke local', () => {
  const event = (path: string) =>
    JSON.parse(readFileSync(new URL(`../../events/${path}`, import.meta.url), 'utf8'));

  it('events/cloudwatch-logs/port-zero.json is a real subscription delivery that fires port-zero', async () => {
    const report = await detectFlowAnomalies(event('cloudwatch-logs/port-zero.json'), detectDeps());
    expect(report.batches[0]!.stats.malformed).toBe(0);
    expect(report.findings.map((f) => f.rule)).toEqual([
      'port-zero',
      'port-zero',
      'port-zero',
      'port-zero',
    ]);
  });

  it('events/cloudwatch-logs/control-message.json starts nothing', async () => {
    const report = await detectFlowAnomalies(event('cloudwatch-logs/control-message.json'), {
      rules: defaultRules(),
      logger: silentLogger,
    });
    expect(report.batches).toEqual([]);
  });

  it('events/s3-flowlogs/* name one object each, keys decoded', () => {
    for (const name of [
      'object-created-notification',
      'eventbridge-object-created',
      'eventbridge-object-created-parquet',
    ]) {
      const refs = s3ObjectsFromEvent(event(`s3-flowlogs/${name}.json`));
      expect(refs).toHaveLength(1);
      expect(refs[0]!.bucket).toBe('tapline-dev-flow-logs');
      expect(refs[0]!.key).toMatch(
        /^AWSLogs\/123456789012\/vpcflowlogs\/us-east-1\/2026\/11\/23\//,
      );
    }
  });
});

describe('rules.notifyWindowSeconds (finding notification rate limit)', () => {
  it('defaults to 15 minutes, may be 0 (publish every finding), and is validated', () => {
    expect(defaultRules().notifyWindowSeconds).toBe(900);
    expect(loadRules({ notifyWindowSeconds: 0 }).notifyWindowSeconds).toBe(0);
    expect(loadRules('{"notifyWindowSeconds": 3600}').notifyWindowSeconds).toBe(3600);
    for (const bad of [-1, 1.5, '900', 604_801, null]) {
      expect(() => loadRules({ notifyWindowSeconds: bad })).toThrow(ConfigError);
    }
    expect(() => loadRules({ notifyWindowSecond: 60 })).toThrow(/notifyWindowSecond/);
  });
});
