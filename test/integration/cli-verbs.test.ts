import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { type CliContext, cliContext } from '../../bin/cli-context.ts';
import {
  type Invoker,
  startCaptureViaFunction,
  waitForCapture,
} from '../../bin/commands/capture.ts';
import { fetchCapture, renderFetch } from '../../bin/commands/fetch.ts';
import { listCaptures, parseSince, renderList } from '../../bin/commands/list.ts';
import { planCapture, renderPlan } from '../../bin/commands/plan.ts';
import { captureStatus, renderStatus } from '../../bin/commands/status.ts';
import { makeHandler } from '../../functions/start-capture.ts';
import { newCaptureId } from '../../shared/capture/ids.ts';
import { applyHostResult } from '../../shared/capture/track-capture.ts';
import { lambdaContext } from '../../shared/lab/lab-aws.ts';
import {
  type CaptureWorld,
  makeCaptureWorld,
  makeTopology,
  type Topology,
} from '../fixtures/capture/world.ts';
import { motoEndpoint } from '../support/aws.ts';

const binPath = new URL('../../bin/tapline', import.meta.url).pathname;
const pcapPath = new URL('../fixtures/processing/port-zero.pcap', import.meta.url);

/** The Lambda-invoke stand-in: the CLI's payload goes through the real start-capture handler. */
function handlerInvoker(world: CaptureWorld, calls: string[]): Invoker {
  const handler = makeHandler(() => world.deps);
  return async (functionName, payload) => {
    calls.push(functionName);
    return handler(
      payload as never,
      lambdaContext('tapline-test-startCapture', {
        awsRequestId: 'cli-test',
        getRemainingTimeInMillis: () => 60_000,
      }),
    );
  };
}

/** What the capture document does on the host: upload with its hash as metadata and checksum. */
async function hostUpload(
  world: CaptureWorld,
  key: string,
  body: Buffer,
  claimed?: Buffer,
): Promise<void> {
  const digest = createHash('sha256')
    .update(claimed ?? body)
    .digest();
  await world.clients.s3.send(
    new PutObjectCommand({
      Bucket: world.config.EVIDENCE_BUCKET,
      Key: key,
      Body: body,
      ServerSideEncryption: 'aws:kms',
      SSEKMSKeyId: world.keyArn,
      // A tamperer can copy the metadata, and omit a checksum S3 would check against the bytes.
      ...(claimed
        ? {}
        : { ChecksumAlgorithm: 'SHA256', ChecksumSHA256: digest.toString('base64') }),
      Metadata: {
        sha256: digest.toString('hex'),
        'time-start': '1700000000',
        'time-end': '1700000060',
      },
    }),
  );
}

function hostReport(
  captureId: string,
  instanceId: string,
  files: { key: string; body: Buffer }[],
): string {
  return JSON.stringify({
    tapline: 'capture-result',
    version: 1,
    captureId,
    instanceId,
    status: 'success',
    interface: 'eth0',
    started: 1700000000,
    ended: 1700000060,
    files: files.map((f) => {
      const digest = createHash('sha256').update(f.body).digest();
      return {
        key: f.key,
        size: f.body.length,
        sha256: digest.toString('hex'),
        s3ChecksumSha256: digest.toString('base64'),
        lookback: false,
        start: 1700000000,
        end: 1700000060,
      };
    }),
    fileCount: files.length,
    bytes: files.reduce((n, f) => n + f.body.length, 0),
    packetsCaptured: 7,
    packetsReceivedByFilter: 7,
    packetsDroppedByKernel: 0,
    unsent: [],
    errors: [],
  });
}

describe('tapline CLI verbs against moto', () => {
  let world: CaptureWorld;
  let topo: Topology;
  let ctx: CliContext;
  const calls: string[] = [];
  let tamperedCaptureId = '';

  beforeAll(async () => {
    world = await makeCaptureWorld();
    topo = await makeTopology(world, 151);
    ctx = cliContext(
      {
        stage: 'test',
        region: 'us-east-1',
        endpoint: motoEndpoint(),
        bucket: world.config.EVIDENCE_BUCKET,
      },
      world.clients,
    );
  });

  it('plan resolves a private address to the NAT its route table uses, and sends nothing', async () => {
    const plan = await planCapture(ctx, {
      addr: topo.workload.privateIp,
      peer: '8.8.8.8',
      proto: ['tcp', 'udp'],
      port: ['0'],
      duration: '120',
      reason: 'dry run',
    });
    expect(plan.targets.map((t) => t.instanceId)).toEqual([topo.nat.instanceId]);
    expect(plan.targets[0]?.via).toBe('route');
    expect(plan.parameters.DurationSeconds).toEqual(['120']);
    expect(plan.bpf).toContain('port 0');
    expect(renderPlan(plan)).toContain('dry run: nothing was sent');
    await expect(listCaptures(ctx, 3600)).resolves.toEqual([]);
  });

  it('rejects a bad request before invoking anything, naming the flag', async () => {
    const before = calls.length;
    const badRequests = [
      { flags: { reason: 'x', filter: '-w /tmp/x' }, names: /filter/ },
      { flags: { duration: 'ten', reason: 'ok reason' }, names: /--duration/ },
    ];
    for (const { flags, names } of badRequests) {
      await expect(
        startCaptureViaFunction(
          ctx,
          { target: ['i-0123456789abcdef0'], ...flags },
          handlerInvoker(world, calls),
        ),
      ).rejects.toThrow(names);
    }
    expect(calls.length).toBe(before);
  });

  it('captures, follows, lists, shows and fetches with every hash verified; refuses a tampered file', async () => {
    // capture: through the start-capture handler, as Lambda Invoke would.
    const started = await startCaptureViaFunction(
      ctx,
      {
        target: [topo.nat.instanceId],
        duration: '60',
        reason: 'IR-7 port 0 from workload',
        requestedBy: 'alice',
      },
      handlerInvoker(world, calls),
    );
    expect(calls.at(-1)).toBe('tapline-test-startCapture');
    expect(started.ok).toBe(true);
    const captureId = started.captureId!;
    tamperedCaptureId = captureId;
    expect(started.started?.map((s) => s.instanceId)).toEqual([topo.nat.instanceId]);

    // the host uploads two files; the second is overwritten by a tamperer before tracking.
    const good = await readFile(pcapPath);
    const prefix = `pcaps/${captureId}/${topo.nat.instanceId}`;
    const files = [
      { key: `${prefix}/capture-000.pcap`, body: good },
      {
        key: `${prefix}/capture-001.pcap`,
        body: Buffer.concat([good.subarray(0, 24), good.subarray(24)]),
      },
    ];
    for (const f of files) await hostUpload(world, f.key, f.body);
    const tampered = Buffer.from(good);
    tampered[tampered.length - 1] ^= 0xff;
    await hostUpload(world, files[1]!.key, tampered, files[1]!.body);
    await applyHostResult(
      {
        captureId,
        instanceId: topo.nat.instanceId,
        ssmStatus: 'Success',
        stdout: hostReport(captureId, topo.nat.instanceId, files),
      },
      world.deps,
    );

    // --wait: the manifest is already terminal, so the follower returns it.
    const seen: string[] = [];
    const finished = await waitForCapture(ctx, captureId, {
      timeoutMs: 5000,
      intervalMs: 10,
      onUpdate: (m) => seen.push(m.state),
    });
    expect(seen.length).toBeGreaterThan(0);
    expect(finished.hosts[topo.nat.instanceId]?.files).toHaveLength(2);

    const manifest = await captureStatus(ctx, captureId);
    const text = renderStatus(manifest);
    expect(text).toContain(captureId);
    expect(text).toContain(topo.nat.instanceId);
    expect(text).toContain('IR-7 port 0 from workload');

    const listed = await listCaptures(ctx, parseSince('24h'));
    expect(listed.map((m) => m.captureId)).toContain(captureId);
    expect(renderList(listed)).not.toMatch(/\x1b\[/);

    const out = await mkdtemp(join(tmpdir(), 'tapline-fetch-'));
    const result = await fetchCapture(ctx, captureId, { outDir: out, progress: false });
    expect(result.ok).toBe(false);
    const [first, second] = result.files;
    expect(first?.problem).toBeUndefined();
    expect(first?.verified).toBe(true);
    expect(
      createHash('sha256')
        .update(await readFile(first!.path!))
        .digest('hex'),
    ).toBe(createHash('sha256').update(good).digest('hex'));
    expect(second?.verified).toBe(false);
    expect(second?.path).toBeUndefined();
    expect(second?.problem).toMatch(/differs from the manifest|no whole-object SHA-256/);
    expect(renderFetch(result)).toContain('REFUSED');
  });

  /** The binary's flags for the test stage on moto. */
  const stageArgs = () => [
    '--endpoint',
    motoEndpoint(),
    '--bucket',
    world.config.EVIDENCE_BUCKET,
    '--stage',
    'test',
  ];

  it('runs as a binary without a terminal: exit 1 naming the refused file, no escape codes', async () => {
    const out = await mkdtemp(join(tmpdir(), 'tapline-fetch-bin-'));
    const args = stageArgs();
    const fetched = spawnSync(
      process.execPath,
      [binPath, 'fetch', tamperedCaptureId, '--out', out, ...args],
      {
        encoding: 'utf8',
        env: { ...process.env, TAPLINE_AWS_ENDPOINT: '' },
      },
    );
    expect(fetched.status).toBe(1);
    expect(fetched.stderr).toContain('capture-001.pcap');
    expect(fetched.stdout).toContain('REFUSED');
    expect(`${fetched.stdout}${fetched.stderr}`).not.toMatch(/\x1b\[/);

    const status = spawnSync(
      process.execPath,
      [binPath, 'status', tamperedCaptureId, '--json', ...args],
      { encoding: 'utf8' },
    );
    expect(status.status).toBe(0);
    expect(JSON.parse(status.stdout).captureId).toBe(tamperedCaptureId);

    const usage = spawnSync(process.execPath, [binPath, 'status', 'nope', ...args], {
      encoding: 'utf8',
    });
    expect(usage.status).toBe(2);
  });

  it('lists a capture whose manifest is damaged as unreadable, shows the rest, and exits 1', async () => {
    const damaged = newCaptureId();
    await world.clients.s3.send(
      new PutObjectCommand({
        Bucket: world.config.EVIDENCE_BUCKET,
        Key: `captures/${damaged}/manifest.json`,
        Body: '{"captureId": "cut sh',
        ServerSideEncryption: 'aws:kms',
        SSEKMSKeyId: world.keyArn,
      }),
    );
    // JSON, but not what the list shows: no reason, a host that is not an object
    const shapeless = newCaptureId();
    await world.clients.s3.send(
      new PutObjectCommand({
        Bucket: world.config.EVIDENCE_BUCKET,
        Key: `captures/${shapeless}/manifest.json`,
        Body: JSON.stringify({
          captureId: shapeless,
          createdAt: new Date().toISOString(),
          state: 'unreadable',
          source: 'manual',
          hosts: { 'i-0a1b2c3d4e5f60718': null },
          history: [],
        }),
        ServerSideEncryption: 'aws:kms',
        SSEKMSKeyId: world.keyArn,
      }),
    );
    const listed = await listCaptures(ctx, parseSince('24h'));
    expect(listed.find((m) => m.captureId === damaged)).toEqual({
      captureId: damaged,
      state: 'unreadable',
      unreadable: true,
      error: expect.stringMatching(/manifest .* cannot be read: not JSON/),
    });
    expect(listed.find((m) => m.captureId === shapeless)).toMatchObject({
      unreadable: true,
      error: expect.stringMatching(/cannot be listed: its reason is not text/),
    });
    expect(listed.filter((m) => m.state !== 'unreadable').length).toBeGreaterThan(0);
    expect(renderList(listed)).toMatch(new RegExp(`${damaged}.*unreadable`));

    const list = spawnSync(process.execPath, [binPath, 'list', '--json', ...stageArgs()], {
      encoding: 'utf8',
      env: { ...process.env, TAPLINE_AWS_ENDPOINT: '' },
    });
    expect(list.status).toBe(1);
    expect(list.stderr).toContain('2 capture manifest(s) could not be read');
    const rows = JSON.parse(list.stdout) as { captureId: string; state: string }[];
    expect(rows.find((r) => r.captureId === damaged)?.state).toBe('unreadable');
    expect(rows.length).toBe(listed.length);
  });

  it('says which capture is missing and how to look elsewhere', async () => {
    await expect(captureStatus(ctx, 'cap-20260101T000000Z-deadbeef')).rejects.toThrow(
      /--stage, --region, --bucket/,
    );
    await expect(captureStatus(ctx, '../../etc/passwd')).rejects.toThrow(/not a capture ID/);
  });
});
