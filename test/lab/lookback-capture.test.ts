import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseHostReport } from '../../shared/capture/host-report.ts';
import { newCaptureId } from '../../shared/capture/ids.ts';
import { type NetnsHost, Topology } from '../../shared/lab/netns.ts';
import {
  type LoopbackBridge,
  runCommandDocument,
  type SsmCommandDocument,
  startLoopbackBridge,
} from '../../shared/lab/ssm-agent.ts';
import { packagedStandbyDocument } from '../../shared/standby/document.ts';
import { runStandby } from '../../shared/standby/lab-harness.ts';
import { parseLookbackReport } from '../../shared/standby/reports.ts';
import { motoClients, motoEndpoint } from '../support/aws.ts';
import {
  LAB_AWS_ENV,
  type LabEvidence,
  labCanRun,
  labCaptureParameters,
  labEvidence,
  tsharkFieldsOfObject,
} from '../support/lab.ts';
import { packagedCaptureDocument } from '../support/template.ts';

const TOOLS = ['tcpdump', 'tshark', 'hping3', '/usr/bin/aws', 'ip'];
const canRun = labCanRun('look-back capture lab test', TOOLS);

const HOST = '10.204.3.1';
const PEER = '10.204.3.2';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The capture document itself with LookbackSeconds: the standby ring runs on the host, probes to
 * port 0 go out, and a few seconds later the capture document runs (as the SSM agent would) with
 * LookbackSeconds. Its final report must carry the look-back files (lookback:true, their time
 * ranges) next to the forward capture's, and its "lookback" object must say what happened.
 */
describe.runIf(canRun)('capture document with look-back, for real', () => {
  const topology = new Topology('tlring');
  const s3 = motoClients().s3;
  const instanceId = 'i-0d1e2f3a4b5c60718';
  const root = `/tmp/tapline-lbcap-${randomBytes(4).toString('hex')}`;
  const ring = `${root}/ring`;
  const awsEnv = LAB_AWS_ENV;
  let host: NetnsHost;
  let peer: NetnsHost;
  let bridge: LoopbackBridge;
  let capture: SsmCommandDocument;
  let standby: SsmCommandDocument;
  let bucket: string;
  let workDir: string;
  let evidence: LabEvidence;

  const ringParameters = (overrides: Record<string, string>) => ({
    RingDirectory: ring,
    Interface: 'cap0',
    RotateSeconds: '2',
    RetentionMinutes: '1',
    ExpectedMbps: '1',
    CapMegabytes: '8',
    MinFreeMegabytes: '1',
    ...overrides,
  });

  function runCapture(
    captureId: string,
    overrides: Record<string, string> = {},
    onStderr?: (text: string) => void,
  ) {
    return runCommandDocument({
      ...(onStderr ? { onStderr } : {}),
      document: capture,
      parameters: labCaptureParameters(evidence, bridge.url, captureId, {
        Interface: 'cap0',
        DurationSeconds: '4',
        Filter: '(tcp or udp) and port 0',
        RingDirectory: ring,
        ...overrides,
      }),
      host,
      instanceId,
      region: 'us-east-1',
      env: awsEnv,
      timeoutMs: 120_000,
    });
  }

  async function probe() {
    await peer
      .exec('hping3', ['-S', '-p', '0', '-c', '2', '-i', 'u100000', HOST], { timeoutMs: 20_000 })
      .catch(() => undefined);
    await peer
      .exec('hping3', ['--udp', '-p', '0', '-c', '2', '-i', 'u100000', HOST], {
        timeoutMs: 20_000,
      })
      .catch(() => undefined);
  }

  beforeAll(async () => {
    capture = (await packagedCaptureDocument()) as SsmCommandDocument;
    standby = await packagedStandbyDocument();
    host = await topology.addHost('lch');
    peer = await topology.addHost('lcp');
    await topology.link({
      a: { ns: host.name, ifname: 'cap0', address: `${HOST}/24` },
      b: { ns: peer.name, ifname: 'eth0', address: `${PEER}/24` },
    });
    bridge = await startLoopbackBridge(host, Number(new URL(motoEndpoint()).port));
    evidence = await labEvidence('tlring-lbc');
    ({ bucket, workDir } = evidence);
  });

  afterAll(async () => {
    if (standby && host) {
      await runStandby({
        document: standby,
        host,
        instanceId,
        parameters: ringParameters({ Action: 'stop', KeepFiles: 'false' }),
      }).catch(() => undefined);
    }
    await bridge?.close();
    await topology.destroy();
    await rm(root, { recursive: true, force: true });
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it('captures forward only and says so when the host keeps no ring', {
    timeout: 120_000,
  }, async () => {
    const captureId = newCaptureId();
    const result = await runCapture(captureId, { LookbackSeconds: '30' });
    expect(result.exitCode, result.stderr).toBe(0);
    const report = parseHostReport(result.stdout);
    expect(report.status).toBe('success');
    expect(report.errors).toEqual([]);
    const lookback = parseLookbackReport(JSON.parse(result.finalLine!).lookback);
    expect(lookback.status).toBe('no-ring');
    expect(lookback.ring).toBe('absent');
    expect(report.files.every((f) => !f.lookback)).toBe(true);
  });

  it('uploads the ring files with the probes sent before the request, then captures forward', {
    timeout: 150_000,
  }, async () => {
    const started = await runStandby({
      document: standby,
      host,
      instanceId,
      parameters: ringParameters({ Action: 'start' }),
    });
    expect(started.report.status, started.run.stderr).toBe('started');
    await sleep(1000);
    const probesFrom = Date.now() / 1000;
    await probe();
    const probesTo = Date.now() / 1000;
    await sleep(3000);

    const captureId = newCaptureId();
    // Probes during the forward capture land in the forward files, not the look-back ones.
    // They go out once the document says its tcpdump listens (a fixed sleep lost them to a
    // slow start on a loaded CI machine: look-back rotation and uploads come first).
    let stderr = '';
    let listening: () => void = () => {};
    const listens = new Promise<void>((resolve) => {
      listening = resolve;
    });
    const running = runCapture(captureId, { LookbackSeconds: '6' }, (text) => {
      stderr += text;
      if (stderr.includes('tapline: tcpdump listening on')) listening();
    });
    await Promise.race([listens, running]);
    expect(stderr, 'the capture ended before its tcpdump listened').toContain(
      'tapline: tcpdump listening on',
    );
    await probe();
    const result = await running;
    expect(result.exitCode, result.stderr).toBe(0);
    const report = parseHostReport(result.stdout);
    expect(report.status, report.errors.join('; ')).toBe('success');
    const lookback = parseLookbackReport(JSON.parse(result.finalLine!).lookback);
    expect(lookback.status, lookback.errors.join('; ')).toBe('ok');
    expect(lookback.rotated).toBe(true);
    expect(lookback.ring).toBe('running');
    expect(lookback.windowEnd! - lookback.windowStart!).toBeCloseTo(6, 5);
    expect(lookback.coverageStart!).toBeLessThanOrEqual(probesFrom);
    expect(lookback.coverageEnd!).toBeGreaterThanOrEqual(probesTo);

    const back = report.files.filter((f) => f.lookback);
    const forward = report.files.filter((f) => !f.lookback);
    expect(back.length).toBe(lookback.fileCount);
    expect(forward.length).toBeGreaterThanOrEqual(1);
    expect(report.fileCount).toBe(report.files.length);
    expect(report.bytes).toBe(report.files.reduce((n, f) => n + f.size, 0));

    const dir = await mkdtemp(join(tmpdir(), 'tlring-lbc-'));
    try {
      const probeTimes = async (files: typeof report.files) => {
        const times: number[] = [];
        for (const file of files) {
          const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: file.key }));
          expect(head.Metadata?.lookback).toBe(String(file.lookback));
          expect(head.ServerSideEncryption).toBe('aws:kms');
          expect(Number(head.Metadata?.['time-start'])).toBe(file.start);
          expect(Number(head.Metadata?.['time-end'])).toBe(file.end);
          const frames = await tsharkFieldsOfObject(
            s3,
            { bucket, key: file.key, dir },
            `ip.src == ${PEER} && !icmp && (tcp.dstport == 0 || udp.dstport == 0)`,
            ['frame.time_epoch'],
          );
          for (const [t] of frames) {
            const time = Number(t);
            expect(time).toBeGreaterThanOrEqual(file.start);
            expect(time).toBeLessThanOrEqual(file.end);
            times.push(time);
          }
        }
        return times;
      };
      const before = await probeTimes(back);
      // The four probes sent before the request are in the look-back files.
      expect(before.filter((t) => t >= probesFrom - 1 && t <= probesTo + 1).length).toBe(4);
      const after = await probeTimes(forward);
      expect(after.length).toBe(4);
      expect(Math.min(...after)).toBeGreaterThan(probesTo);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    // The ring ran on through the capture.
    const status = await runStandby({
      document: standby,
      host,
      instanceId,
      parameters: ringParameters({ Action: 'status' }),
    });
    expect(status.report.running).toBe(true);
    expect(status.report.rotations).toBe(1);
  });
});
