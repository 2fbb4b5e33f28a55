import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseHostReport } from '../../shared/capture/host-report.ts';
import { newCaptureId } from '../../shared/capture/ids.ts';
import { startCapture } from '../../shared/capture/start-capture.ts';
import { applyHostResult } from '../../shared/capture/track-capture.ts';
import { readManifest } from '../../shared/evidence/manifest.ts';
import { type NetnsHost, requireRoot, Topology } from '../../shared/lab/netns.ts';
import {
  type LoopbackBridge,
  runCommandDocument,
  SsmAgent,
  type SsmCommandDocument,
  startCommandDocument,
  startLoopbackBridge,
} from '../../shared/lab/ssm-agent.ts';
import { makeCaptureWorld, makeTopology } from '../fixtures/capture/world.ts';
import { motoClients, motoEndpoint } from '../support/aws.ts';
import {
  LAB_AWS_ENV,
  type LabEvidence,
  labCanRun,
  labCaptureParameters,
  labEvidence,
} from '../support/lab.ts';
import { packagedCaptureDocument } from '../support/template.ts';

const run = promisify(execFile);
const TOOLS = ['tcpdump', 'tshark', 'hping3', '/usr/bin/aws', 'ip'];
const canRun = labCanRun('lab test', TOOLS);

/**
 * workload (10.201.1.2) ── nat (10.201.1.1 | 10.201.2.1) ── inet (10.201.2.2)
 * The capture document runs in the nat namespace (the host that routes the traffic), on the
 * interface of its default route, with the AWS CLI reaching moto through a loopback bridge.
 */
describe.runIf(canRun)('capture document run for real', () => {
  const topology = new Topology('tlcap');
  const s3 = motoClients().s3;
  let nat: NetnsHost;
  let workload: NetnsHost;
  let bridge: LoopbackBridge;
  let document: SsmCommandDocument;
  let bucket: string;
  let keyArn: string;
  let workDir: string;
  let evidence: LabEvidence;
  const instanceId = 'i-0a1b2c3d4e5f60718';
  const awsEnv = LAB_AWS_ENV;

  beforeAll(async () => {
    requireRoot('the capture document lab test');
    document = (await packagedCaptureDocument()) as SsmCommandDocument;
    workload = await topology.addHost('ws');
    nat = await topology.addHost('nat');
    const inet = await topology.addHost('inet');
    await topology.link({
      a: { ns: workload.name, ifname: 'eth0', address: '10.201.1.2/24' },
      b: { ns: nat.name, ifname: 'lan0', address: '10.201.1.1/24' },
    });
    await topology.link({
      a: { ns: nat.name, ifname: 'wan0', address: '10.201.2.1/24' },
      b: { ns: inet.name, ifname: 'eth0', address: '10.201.2.2/24' },
    });
    await topology.route(workload.name, 'default', '10.201.1.1');
    await topology.route(nat.name, 'default', '10.201.2.2');
    await topology.route(inet.name, '10.201.1.0/24', '10.201.2.1');
    await topology.enableForwarding(nat.name);
    bridge = await startLoopbackBridge(nat, Number(new URL(motoEndpoint()).port));
    evidence = await labEvidence('tlcap-doc');
    ({ bucket, keyArn, workDir } = evidence);
  }, 240_000);

  afterAll(async () => {
    await bridge?.close();
    await topology.destroy();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  const parameters = (captureId: string, overrides: Record<string, string> = {}) =>
    labCaptureParameters(evidence, bridge.url, captureId, overrides);
  /** The capture document started on the NAT, as the agent would run it. */
  const startOnNat = (captureId: string, overrides: Record<string, string> = {}) =>
    startCommandDocument({
      document,
      parameters: parameters(captureId, overrides),
      host: nat,
      instanceId,
      region: 'us-east-1',
      env: awsEnv,
      timeoutMs: 120_000,
    });

  /** A capture on the NAT of a new capture ID, with `python` run on the workload once it listens. */
  async function captureWhileSending(overrides: Record<string, string>, python: string) {
    const running = startOnNat(newCaptureId(), overrides);
    await running.listening;
    await workload.exec('python3', ['-c', python]);
    const result = await running.done;
    return { result, report: parseHostReport(result.stdout) };
  }

  /** Pids whose environment holds `env` and whose command line contains `cmdline`. */
  async function processesWith(env: string, cmdline: string): Promise<number[]> {
    const found: number[] = [];
    for (const name of await readdir('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      const [environ, command] = await Promise.all([
        readFile(`/proc/${name}/environ`, 'utf8').catch(() => ''),
        readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => ''),
      ]);
      if (environ.split('\0').includes(env) && command.includes(cmdline)) found.push(Number(name));
    }
    return found;
  }

  it('captures port-0 traffic on the NAT, uploads hashed SSE-KMS pcaps and reports them', async () => {
    const captureId = newCaptureId();
    // Time rotation every 2 s (-G with -C): several closed files, each hashed and uploaded.
    const running = startOnNat(captureId, { RotateSeconds: '2', DurationSeconds: '10' });
    await running.listening;
    // Real traffic through the NAT: TCP SYNs and UDP datagrams to port 0, and pings.
    await workload
      .exec('hping3', ['-S', '-p', '0', '-c', '3', '-i', 'u100000', '10.201.2.2'], {
        timeoutMs: 20_000,
      })
      .catch(() => undefined);
    // Spread over more than one rotation period so -G closes at least one file mid-capture.
    await new Promise((r) => setTimeout(r, 2500));
    await workload
      .exec('hping3', ['--udp', '-p', '0', '-c', '3', '-i', 'u100000', '10.201.2.2'], {
        timeoutMs: 20_000,
      })
      .catch(() => undefined);
    await new Promise((r) => setTimeout(r, 2500));
    await workload.exec('ping', ['-c', '2', '-i', '0.2', '10.201.2.2']).catch(() => undefined);
    // Keep pinging until the document stops tcpdump, so packets are in flight at the SIGINT.
    let finished = false;
    const result = await Promise.race([
      running.done.then((r) => {
        finished = true;
        return r;
      }),
      (async () => {
        while (!finished) {
          await workload.exec('ping', ['-c', '1', '-W', '1', '10.201.2.2']).catch(() => undefined);
          await new Promise((r) => setTimeout(r, 100));
        }
        return running.done;
      })(),
    ]);
    const report = parseHostReport(result.stdout);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(report.status).toBe('success');
    expect(report.interface).toBe('wan0');
    // Debian's AWS CLI v2.9 at /usr/bin/aws did the uploads (the v1 earlier on PATH was skipped).
    expect(report.tools?.aws).toMatch(/^aws-cli\/2\./);
    expect(report.tools?.tcpdump).toMatch(/^tcpdump version 4\./);
    expect(report.errors).toEqual([]);
    expect(report.packetsCaptured).toBeGreaterThanOrEqual(6);
    expect(report.packetsDroppedByKernel).toBe(0);
    // Nothing the filter accepted was lost when SIGINT ended the capture (immediate mode).
    expect(report.packetsCaptured).toBe(report.packetsReceivedByFilter);
    expect(report.files.length).toBeGreaterThanOrEqual(2);
    // Every uploaded file is a complete pcap (at least the 24-byte header), none cut short.
    expect(report.files.every((f) => f.size >= 24)).toBe(true);
    expect(report.unsent).toEqual([]);

    const listed = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: `pcaps/${captureId}/${instanceId}/` }),
    );
    expect(listed.Contents?.map((o) => o.Key).sort()).toEqual(
      report.files.map((f) => f.key).sort(),
    );
    const dir = await mkdtemp(join(tmpdir(), 'tlcap-dl-'));
    try {
      const merged: string[] = [];
      for (const file of report.files) {
        const head = await s3.send(
          new HeadObjectCommand({ Bucket: bucket, Key: file.key, ChecksumMode: 'ENABLED' }),
        );
        expect(head.ServerSideEncryption).toBe('aws:kms');
        expect(head.SSEKMSKeyId).toBe(keyArn);
        expect(head.Metadata?.sha256).toBe(file.sha256);
        expect(head.Metadata?.['capture-id']).toBe(captureId);
        expect(head.Metadata?.['instance-id']).toBe(instanceId);
        expect(head.Metadata?.lookback).toBe('false');
        expect(Number(head.Metadata?.['time-end'])).toBeGreaterThanOrEqual(
          Number(head.Metadata?.['time-start']),
        );
        expect(head.VersionId).toBe(file.versionId);
        expect(Buffer.from(head.ChecksumSHA256!, 'base64').toString('hex')).toBe(file.sha256);
        const body = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: file.key }));
        const bytes = Buffer.from(await body.Body!.transformToByteArray());
        expect(createHash('sha256').update(bytes).digest('hex')).toBe(file.sha256);
        expect(bytes.length).toBe(file.size);
        const local = join(dir, file.key.split('/').at(-1)!);
        await writeFile(local, bytes);
        merged.push(local);
      }
      const fields = ['-T', 'fields', '-e', 'ip.proto', '-e', 'tcp.dstport', '-e', 'udp.dstport'];
      const lines: string[] = [];
      for (const file of merged) {
        const { stdout } = await run('tshark', [
          '-n',
          '-r',
          file,
          '-Y',
          'tcp.port == 0 || udp.port == 0',
          ...fields,
        ]);
        lines.push(...stdout.split('\n').filter(Boolean));
      }
      expect(lines.filter((l) => l.startsWith('6\t0')).length).toBeGreaterThanOrEqual(3);
      expect(
        lines.filter((l) => l.startsWith('17\t\t0')).length,
        `${lines.join('|')} ${JSON.stringify(report)}`,
      ).toBeGreaterThanOrEqual(3);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    // Nothing left behind on the host.
    expect(await readdir(join(workDir, 'spool'))).toEqual([]);
  });

  it('reports a capture of exactly one packet as 1 (tcpdump prints "1 packet captured")', async () => {
    const { result, report } = await captureWhileSending(
      { Filter: 'udp and dst port 40009', DurationSeconds: '5' },
      "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'one', ('10.201.2.2', 40009))",
    );
    expect(result.exitCode, result.stderr).toBe(0);
    expect(report.errors).toEqual([]);
    expect(report.status).toBe('success');
    expect(report.packetsCaptured).toBe(1);
    expect(report.packetsReceivedByFilter).toBe(1);
    expect(report.packetsDroppedByKernel).toBe(0);
  });

  it('stops at MaxMegabytes counted as tcpdump counts -C: 1,000,000 bytes to the MB', async () => {
    const started = Date.now();
    // 700 frames of 1,442 bytes: 1,020,624 bytes of pcap, past 1,000,000 but short of 1 MiB
    // (paced, so tcpdump's buffer drops none of them).
    const { report } = await captureWhileSending(
      { Filter: 'udp and dst port 40011', MaxMegabytes: '1', DurationSeconds: '40' },
      "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor i in range(700):\n    s.sendto(b'm' * 1400, ('10.201.2.2', 40011))\n    time.sleep(0.002)",
    );
    expect(report.errors.join('\n')).toMatch(
      /reached MaxMegabytes \(1 MB\); capture stopped early/,
    );
    expect(Date.now() - started).toBeLessThan(30_000);
    // the limit is checked every 2 s: a check may land while the last ~15 frames are on their way
    expect(report.packetsCaptured).toBeGreaterThanOrEqual(680);
    expect(report.packetsCaptured).toBeLessThanOrEqual(700);
    const written = report.files.reduce((sum, f) => sum + f.size, 0);
    expect(written).toBeGreaterThanOrEqual(1_000_000);
    expect(written).toBeLessThan(1_048_576);
  });

  it('keeps a file it cannot upload on disk and reports it', async () => {
    const captureId = newCaptureId();
    const result = await runCommandDocument({
      document,
      // A loopback port nothing listens on inside the namespace: every upload fails.
      parameters: parameters(captureId, {
        EndpointUrl: 'http://127.0.0.1:19',
        DurationSeconds: '3',
      }),
      host: nat,
      instanceId,
      region: 'us-east-1',
      env: awsEnv,
      timeoutMs: 120_000,
    });
    const report = parseHostReport(result.stdout);
    expect(result.exitCode).toBe(1);
    expect(report.status).toBe('partial');
    expect(report.files).toEqual([]);
    expect(report.unsent.length).toBeGreaterThanOrEqual(1);
    for (const file of report.unsent) {
      expect(file.path.startsWith(join(workDir, 'unsent', captureId))).toBe(true);
      const bytes = await readFile(file.path);
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(file.sha256);
      expect((await stat(file.path)).size).toBe(file.size);
    }
    expect(report.errors.join('\n')).toMatch(/upload of pcaps\/.* failed after 2 attempts/);
  });

  it('stops its tcpdump and reports when the agent interrupts it (SIGTERM)', async () => {
    const captureId = newCaptureId();
    const started = Date.now();
    const running = startOnNat(captureId, { DurationSeconds: '60' });
    await running.listening;
    const script = await processesWith(`SSM_CaptureId=${captureId}`, '_script-');
    // timeout and the tcpdump it runs.
    const capturing = await processesWith(`SSM_CaptureId=${captureId}`, `spool/${captureId}/`);
    expect(script).toHaveLength(1);
    expect(capturing).toHaveLength(2);
    process.kill(script[0]!, 'SIGTERM');
    const result = await running.done;
    const report = parseHostReport(result.stdout);
    expect(result.exitCode).toBe(1);
    expect(report.errors.join('\n')).toMatch(/interrupted by a signal/);
    // Well before its 60 s, with its tcpdump gone: it asked bash's job table, not a pid.
    expect(Date.now() - started).toBeLessThan(30_000);
    for (const pid of capturing) expect(existsSync(`/proc/${pid}`)).toBe(false);
  });

  it('refuses to start when free disk is below MinFreeMegabytes', async () => {
    const captureId = newCaptureId();
    const result = await runCommandDocument({
      document,
      parameters: parameters(captureId, { MinFreeMegabytes: '9999999' }),
      host: nat,
      instanceId,
      region: 'us-east-1',
      env: awsEnv,
    });
    const report = parseHostReport(result.stdout);
    expect(result.exitCode).toBe(3);
    expect(report.status).toBe('refused');
    expect(report.errors[0]).toMatch(/MB free .*MinFreeMegabytes is 9999999/);
    expect(report.packetsCaptured).toBeNull();
    expect(existsSync(join(workDir, 'spool', captureId))).toBe(false);
  });

  it('runs what startCapture sent through SSM and tracks the real report into the manifest', async () => {
    const world = await makeCaptureWorld();
    const topo = await makeTopology(world, 75);
    const deps = { ...world.deps, hostS3Endpoint: bridge.url, hostWorkDir: workDir };
    const outcome = await startCapture(
      {
        targets: { kind: 'eni', eniId: topo.workload.eniId },
        durationSeconds: 5,
        filter: { kind: 'structured', ports: [0], protocols: ['tcp', 'udp'] },
        reason: 'lab port-0 capture',
        requestedBy: 'lab',
      },
      deps,
    );
    expect(outcome.started.map((s) => s.instanceId)).toEqual([topo.nat.instanceId]);
    // The agent picks the command up from SSM and runs it with the parameters SSM recorded.
    let heard: () => void = () => {};
    const listening = new Promise<void>((resolve) => {
      heard = resolve;
    });
    const agent = new SsmAgent({
      ssm: world.clients.ssm,
      documentName: world.config.CAPTURE_DOCUMENT_NAME,
      document,
      hosts: { [topo.nat.instanceId]: nat },
      region: 'us-east-1',
      env: awsEnv,
      timeoutMs: 120_000,
      onStderr: (_, chunk) => {
        if (chunk.includes('tapline: tcpdump listening')) heard();
      },
    });
    const runs = agent.runPending();
    runs.finally(() => heard());
    await listening;
    await workload
      .exec('hping3', ['--udp', '-p', '0', '-c', '4', '-i', 'u100000', '10.201.2.2'], {
        timeoutMs: 20_000,
      })
      .catch(() => undefined);
    const invocations = await runs;
    expect(invocations.map((i) => [i.commandId, i.instanceId])).toEqual([
      [outcome.started[0]!.commandId, topo.nat.instanceId],
    ]);
    const [invocation] = invocations;
    expect(invocation!.run.exitCode, invocation!.run.stderr).toBe(0);
    expect(invocation!.parameters.CaptureId).toEqual([outcome.captureId]);
    expect(await agent.runPending()).toEqual([]);
    const tracked = await applyHostResult(
      {
        captureId: outcome.captureId,
        instanceId: topo.nat.instanceId,
        commandId: invocation!.commandId,
        ssmStatus: invocation!.ssmStatus,
        stdout: invocation!.run.stdout,
      },
      world.deps,
    );
    expect(tracked).toMatchObject({ hostStatus: 'success', state: 'finished', lockReleased: true });
    const stored = await readManifest(
      { s3: world.clients.s3, bucket: world.config.EVIDENCE_BUCKET, keyArn: world.keyArn },
      outcome.captureId,
    );
    const host = stored!.manifest.hosts[topo.nat.instanceId]!;
    expect(host.status).toBe('success');
    expect(host.interface).toBe('wan0');
    expect(host.tools?.aws).toMatch(/^aws-cli\/2\./);
    expect(host.packetsCaptured).toBeGreaterThanOrEqual(4);
    expect(host.packetsDroppedByKernel).toBe(0);
    expect(host.files.length).toBeGreaterThanOrEqual(1);
    expect(host.files.every((f) => f.verified === true)).toBe(true);
    expect(host.errors).toEqual([]);
    expect(stored!.manifest.targets[0]!.why).toContain('0.0.0.0/0');
  });
});
