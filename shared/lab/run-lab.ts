import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { DeleteMessageCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { ListCommandsCommand } from '@aws-sdk/client-ssm';
import type { Context, SQSEvent } from 'aws-lambda';
import { startMoto } from '../../scripts/lib/moto-server.ts';
import { type AwsClients, makeAwsClients } from '../aws/clients.ts';
import { captureDepsFromEnv } from '../capture/deps.ts';
import { applyHostResult } from '../capture/track-capture.ts';
import { type CaptureManifest, readManifest } from '../evidence/manifest.ts';
import { encodeSubscriptionData } from '../flowlogs/sources/cloudwatch.ts';
import { silentLogger } from '../observability.ts';
import { parsePcapKey, resultLayout } from '../processing/layout.ts';
import { nfdumpFlowsFromPcap, toFlowLogLines } from './flows-from-pcap.ts';
import { type LabStack, lambdaContext, provisionLabStack } from './lab-aws.ts';
import {
  buildLabNetwork,
  LAB_ADDRESSES,
  type LabNetwork,
  normalTraffic,
  suspiciousTraffic,
} from './lab-network.ts';
import type { NetnsHost } from './netns.ts';
import { captureDocumentResource, packagedTemplate } from './packaged-template.ts';
import {
  type DocumentRun,
  runCommandDocument,
  type SsmCommandDocument,
  startLoopbackBridge,
} from './ssm-agent.ts';

const run = promisify(execFile);

/**
 * The whole pipeline on one Linux box, with the real handlers and real packets:
 *
 *  1. a standby ring starts on the NAT (look-back), then normal traffic plus TCP/UDP probes to
 *     port 0 and a short SYN scan cross it from the workload;
 *  2. flow records made from a real capture of that traffic (softflowd/nfcapd/nfdump) reach
 *     detect-flow-anomalies as a CloudWatch Logs subscription event;
 *  3. the port-zero finding resolves, through the private subnet's route table, to the NAT
 *     instance, and the capture core sends the SSM command (recorded in moto);
 *  4. the lab agent plays SSM on the NAT: it runs the packaged capture document's script with the
 *     command's SSM_* parameters — real tcpdump, look-back files first — while the probes repeat,
 *     uploading to moto S3 with the AWS CLI;
 *  5. the S3 events reach the queue, process-pcap processes each file, and track-capture's core
 *     closes the manifest from the host's report;
 *  6. a report, and exit 0 only when every step held.
 */

export interface LabStep {
  name: string;
  ok: boolean;
  detail: string;
  ms: number;
}

export interface LabReport {
  ok: boolean;
  steps: LabStep[];
  finding?: { rule: string; fingerprint: string; severity: string } | undefined;
  captureId?: string | undefined;
  host?: { instanceId: string; why: string } | undefined;
  files: {
    key: string;
    sha256: string;
    verified: boolean;
    lookback: boolean;
    start?: number | undefined;
    end?: number | undefined;
    integrity?: string | undefined;
    portZeroPackets?: number | undefined;
    resultsAt?: string | undefined;
  }[];
  conversations: {
    protocol: string;
    a: string;
    b: string;
    packets: number;
    portZero: boolean;
    lookback: boolean;
  }[];
  probesBeforeDetection: number;
}

export interface LabOptions {
  log?: (line: string) => void;
  /** Forward capture length in seconds (the port-zero rule's capture duration in the lab). */
  captureSeconds?: number;
  signal?: AbortSignal;
}

const REQUIRED_TOOLS = [
  'tcpdump',
  'tshark',
  'hping3',
  'nmap',
  'curl',
  'softflowd',
  'nfcapd',
  'nfdump',
  'ip',
];

export class LabStepError extends Error {
  constructor(step: string, message: string) {
    super(`${step}: ${message}`);
    this.name = 'LabStepError';
  }
}

async function preflight(): Promise<void> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new LabStepError(
      'preflight',
      'the lab needs root (network namespaces, tcpdump): run it with sudo or as root',
    );
  }
  const missing: string[] = [];
  for (const tool of REQUIRED_TOOLS) {
    await run('sh', ['-c', `command -v ${tool}`]).catch(() => missing.push(tool));
  }
  await run('/usr/bin/aws', ['--version']).catch(() =>
    missing.push('/usr/bin/aws (Debian awscli, v2)'),
  );
  await run('/usr/bin/python3', ['-c', 'import moto.server']).catch(() =>
    run('python3', ['-c', 'import moto.server']).catch(() =>
      missing.push('moto (pip install "moto[server]")'),
    ),
  );
  if (missing.length > 0) {
    throw new LabStepError(
      'preflight',
      `missing ${missing.join(', ')}; on Debian/Ubuntu: apt-get install -y tcpdump tshark hping3 nmap curl softflowd nfdump awscli iproute2`,
    );
  }
}

/** The context a lab function's handler gets: `tapline-lab-<name>`, logging to the lab stream. */
function labContext(name: string): Context {
  return lambdaContext(`tapline-lab-${name}`, {
    awsRequestId: `lab-${Date.now()}`,
    logStreamName: 'lab',
  });
}

/** Starts tcpdump in a namespace and resolves once it is really listening. */
async function startTcpdump(
  host: NetnsHost,
  iface: string,
  file: string,
): Promise<() => Promise<void>> {
  const child = host.spawn(
    'tcpdump',
    ['--immediate-mode', '-i', iface, '-n', '-U', '-w', file, 'not arp'],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error('tcpdump did not start listening within 10 s')),
      10_000,
    );
    child.stderr?.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`tcpdump exited with ${code}`));
    });
  });
  return async () => {
    if (child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGINT');
    await exited;
  };
}

async function tsharkCount(file: string, filter: string): Promise<number> {
  const { stdout } = await run(
    'tshark',
    ['-r', file, '-Y', filter, '-T', 'fields', '-e', 'frame.number'],
    {
      maxBuffer: 16 << 20,
    },
  );
  return stdout.split('\n').filter((l) => l.trim() !== '').length;
}

export async function runLab(options: LabOptions = {}): Promise<LabReport> {
  const log = options.log ?? (() => undefined);
  const captureSeconds = options.captureSeconds ?? 12;
  const report: LabReport = {
    ok: false,
    steps: [],
    files: [],
    conversations: [],
    probesBeforeDetection: 0,
  };
  const cleanups: (() => Promise<unknown>)[] = [];
  const savedEnv = { ...process.env };
  let current = 'preflight';
  let started = Date.now();
  const step = (name: string) => {
    current = name;
    started = Date.now();
    log(`… ${name}`);
  };
  const done = (detail: string) => {
    report.steps.push({ name: current, ok: true, detail, ms: Date.now() - started });
    log(`✓ ${current}: ${detail}`);
  };
  const abort = () => {
    if (options.signal?.aborted) throw new LabStepError(current, 'interrupted');
  };

  try {
    await preflight();
    done('root, tcpdump, tshark, hping3, nmap, softflowd/nfdump, AWS CLI v2, moto');

    step('stack');
    // moto accepts any credentials; the lab never talks to AWS itself.
    const credentials = {
      AWS_ACCESS_KEY_ID: process.env.AWS_ACCESS_KEY_ID ?? 'lab',
      AWS_SECRET_ACCESS_KEY: process.env.AWS_SECRET_ACCESS_KEY ?? 'lab',
    };
    Object.assign(process.env, credentials);
    const moto = await startMoto();
    cleanups.push(() => moto.stop());
    const pkg = await packagedTemplate('lab');
    const clients: AwsClients = makeAwsClients({ region: 'us-east-1', endpoint: moto.endpoint });
    const stack: LabStack = await provisionLabStack(clients, pkg, {
      endpoint: moto.endpoint,
      region: 'us-east-1',
    });
    const work = await mkdtemp(join(tmpdir(), 'tapline-lab-'));
    // tcpdump drops privileges (-Z tcpdump) on the host: it must be able to reach its spool.
    await chmod(work, 0o755);
    cleanups.push(() => rm(work, { recursive: true, force: true }));
    Object.assign(process.env, stack.functionEnvironment, credentials, {
      POWERTOOLS_LOG_LEVEL: process.env.TAPLINE_LAB_LOG_LEVEL ?? 'SILENT',
      // The handlers' EMF metric lines would mix with the report on stdout.
      POWERTOOLS_METRICS_DISABLED: 'true',
      RULES_OVERRIDE: JSON.stringify({
        rules: {
          'port-zero': { capture: { durationSeconds: captureSeconds, lookbackMarginSeconds: 60 } },
        },
      }),
    });
    done(
      `moto on ${moto.endpoint}; bucket ${stack.bucket}, queue, key, topic, document ${stack.documentName} from the packaged template; VPC with NAT ${stack.natInstanceId}`,
    );
    abort();

    step('network');
    const network: LabNetwork = await buildLabNetwork('tllab');
    cleanups.push(() => network.destroy());
    done(
      `workload ${LAB_ADDRESSES.workload} → NAT ${LAB_ADDRESSES.natPrivate}/${LAB_ADDRESSES.natPublic} → internet ${LAB_ADDRESSES.internet}`,
    );
    abort();

    // The standby ring (look-back), when the packaged stack has the standby document.
    step('standby ring');
    const [, standbyResource] =
      Object.entries(pkg.template.Resources).find(([id]) => id === 'StandbyDocument') ?? [];
    const standby = standbyResource?.Properties?.Content as SsmCommandDocument | undefined;
    const ringDirectory = join(work.replace(/^\/tmp\/tapline-lab-/, '/tmp/tapline-lab-'), 'ring');
    const captureDocument = captureDocumentResource(pkg).Properties!.Content as SsmCommandDocument;
    const captureSupportsLookback = Boolean(captureDocument.parameters?.RingDirectory);
    if (standby && captureSupportsLookback) {
      const ring = await runCommandDocument({
        document: standby,
        parameters: {
          Action: 'start',
          RingDirectory: ringDirectory,
          Interface: 'auto',
          RotateSeconds: '2',
          RetentionMinutes: '5',
          CapMegabytes: '64',
          MinFreeMegabytes: '64',
        },
        host: network.nat,
        instanceId: stack.natInstanceId,
        region: 'us-east-1',
        timeoutMs: 60_000,
      });
      if (ring.exitCode !== 0)
        throw new LabStepError(
          'standby ring',
          `did not start: ${ring.stdout.slice(-400)} ${ring.stderr.slice(-400)}`,
        );
      cleanups.push(() =>
        runCommandDocument({
          document: standby,
          parameters: { Action: 'stop', RingDirectory: ringDirectory },
          host: network.nat,
          instanceId: stack.natInstanceId,
          region: 'us-east-1',
          timeoutMs: 30_000,
        }),
      );
      await new Promise((r) => setTimeout(r, 1500));
      done(`ring running on the NAT in ${ringDirectory} (2 s files)`);
    } else {
      done(
        'not available in this build (no standby document or no look-back in the capture document): forward capture only',
      );
    }

    step('traffic');
    const observed = join(work, 'observed.pcap');
    const stopObserver = await startTcpdump(
      network.nat,
      LAB_ADDRESSES.natCaptureInterface,
      observed,
    );
    await normalTraffic(network.workload);
    await suspiciousTraffic(network.workload);
    await new Promise((r) => setTimeout(r, 500));
    await stopObserver();
    report.probesBeforeDetection = await tsharkCount(
      observed,
      '(tcp.dstport == 0 || udp.dstport == 0)',
    );
    done(
      `HTTP, DNS, ${report.probesBeforeDetection} probes to port 0 and a SYN scan, seen on the NAT`,
    );
    abort();

    step('flow records');
    const { flows } = await nfdumpFlowsFromPcap(observed);
    const { v2 } = toFlowLogLines(flows, {
      account: '123456789012',
      eniId: stack.workloadEniId,
      instanceId: stack.workloadInstanceId,
      localAddresses: [LAB_ADDRESSES.workload],
    });
    const logGroup = '/tapline/lab/vpc-flow-logs';
    const event = {
      awslogs: {
        data: encodeSubscriptionData({
          messageType: 'DATA_MESSAGE',
          owner: '123456789012',
          logGroup,
          logStream: `${stack.workloadEniId}-all`,
          subscriptionFilters: ['tapline-lab'],
          logEvents: v2.map((message, i) => ({ id: String(i), timestamp: Date.now(), message })),
        }),
      },
    };
    done(
      `${flows.length} flows from softflowd/nfdump → ${v2.length} flow-log records (v2) for ${stack.workloadEniId}`,
    );

    step('detect-flow-anomalies');
    const detect = await import('../../functions/detect-flow-anomalies.ts');
    const detected = (await detect.handler(event, labContext('detectFlowAnomalies'))) as {
      findings: { rule: string; fingerprint: string; severity: string }[];
      captures: {
        fingerprint: string;
        status: string;
        outcome?: { captureId?: string; started?: { instanceId: string; why: string }[] };
      }[];
    };
    const portZeroFindings = detected.findings.filter((f) => f.rule === 'port-zero');
    if (portZeroFindings.length === 0) {
      throw new LabStepError(
        'detect-flow-anomalies',
        `no port-zero finding (got ${detected.findings.map((f) => f.rule).join(', ') || 'none'})`,
      );
    }
    // TCP and UDP probes are separate findings; one capture per host wins the NAT's lock and
    // the other is refused as host-busy, by design.
    const capture = detected.captures.find(
      (c) =>
        c.status === 'started' && portZeroFindings.some((f) => f.fingerprint === c.fingerprint),
    );
    const portZero =
      portZeroFindings.find((f) => f.fingerprint === capture?.fingerprint) ?? portZeroFindings[0]!;
    report.finding = portZero;
    const startedOn = capture?.outcome?.started?.[0];
    if (!capture?.outcome?.captureId || !startedOn) {
      throw new LabStepError(
        'detect-flow-anomalies',
        `no port-zero finding started a capture: ${JSON.stringify(detected.captures).slice(0, 600)}`,
      );
    }
    if (startedOn.instanceId !== stack.natInstanceId) {
      throw new LabStepError(
        'detect-flow-anomalies',
        `capture went to ${startedOn.instanceId}, not the NAT ${stack.natInstanceId}`,
      );
    }
    report.captureId = capture.outcome.captureId;
    report.host = startedOn;
    done(
      `findings: ${detected.findings.map((f) => f.rule).join(', ')}; capture ${report.captureId} on the NAT (${startedOn.why})`,
    );

    step('ssm command');
    const commands = await clients.ssm.send(
      new ListCommandsCommand({ InstanceId: stack.natInstanceId }),
    );
    const command = commands.Commands?.find(
      (c) => c.Parameters?.CaptureId?.[0] === report.captureId,
    );
    if (!command?.CommandId || !command.Parameters)
      throw new LabStepError('ssm command', 'SendCommand for the capture is not recorded in moto');
    if (command.DocumentName !== stack.documentName)
      throw new LabStepError(
        'ssm command',
        `document ${command.DocumentName}, expected ${stack.documentName}`,
      );
    const lookbackSeconds = Number(command.Parameters.LookbackSeconds?.[0] ?? '0');
    done(
      `command ${command.CommandId} with ${stack.documentName}: filter "${command.Parameters.Filter?.[0] ?? ''}", ${command.Parameters.DurationSeconds?.[0]} s, look-back ${lookbackSeconds} s`,
    );

    step('capture on the NAT');
    const bridge = await startLoopbackBridge(network.nat, moto.port);
    cleanups.push(() => bridge.close());
    const hostWork = join(work, 'host');
    await mkdir(hostWork, { recursive: true });
    const hostParameters: Record<string, string[] | string> = {
      ...(command.Parameters as Record<string, string[]>),
      // Host-level settings the lab's host has and an EC2 host would not need: the S3 endpoint
      // (moto, through the loopback bridge) and a scratch work directory.
      EndpointUrl: bridge.url,
      WorkDir: hostWork,
    };
    if (captureSupportsLookback) hostParameters.RingDirectory = ringDirectory;
    const agent: Promise<DocumentRun> = runCommandDocument({
      document: captureDocument,
      parameters: hostParameters,
      host: network.nat,
      instanceId: stack.natInstanceId,
      region: 'us-east-1',
      env: credentials,
      timeoutMs: (captureSeconds + 120) * 1000,
    });
    // The scenario repeats while the capture runs (the host starts tcpdump when its checks
    // pass, so keep the probes coming until the document is done).
    let agentDone = false;
    void agent.finally(() => {
      agentDone = true;
    });
    let rounds = 0;
    while (!agentDone) {
      await new Promise((r) => setTimeout(r, 1500));
      if (agentDone) break;
      await suspiciousTraffic(network.workload).catch(() => undefined);
      await normalTraffic(network.workload).catch(() => undefined);
      rounds += 1;
    }
    const hostRun = await agent;
    if (hostRun.exitCode !== 0) {
      throw new LabStepError(
        'capture on the NAT',
        `the document exited ${hostRun.exitCode}: ${hostRun.stdout.slice(-600)} ${hostRun.stderr.slice(-800)}`,
      );
    }
    done(
      `document ran ${Math.round(hostRun.durationMs / 1000)} s on the NAT with real tcpdump while the scenario repeated ${rounds} times`,
    );

    step('track-capture');
    const deps = captureDepsFromEnv(silentLogger);
    await applyHostResult(
      {
        captureId: report.captureId,
        instanceId: stack.natInstanceId,
        commandId: command.CommandId,
        ssmStatus: 'Success',
        stdout: hostRun.stdout,
        stderrTail: hostRun.stderr.slice(-2000),
      },
      deps,
    );
    const store = { s3: clients.s3, bucket: stack.bucket, keyArn: stack.keyArn };
    const manifest = (await readManifest(store, report.captureId))?.manifest as CaptureManifest;
    const host = manifest?.hosts?.[stack.natInstanceId];
    if (!host || host.status !== 'success') {
      throw new LabStepError(
        'track-capture',
        `host status ${host?.status}: ${host?.errors?.join('; ')}`,
      );
    }
    const files = host.files ?? [];
    if (files.length === 0 || files.some((f) => f.verified === false)) {
      throw new LabStepError(
        'track-capture',
        `files not verified: ${JSON.stringify(files).slice(0, 600)}`,
      );
    }
    if (lookbackSeconds > 0 && captureSupportsLookback && !files.some((f) => f.lookback)) {
      throw new LabStepError('track-capture', 'a look-back capture uploaded no look-back file');
    }
    done(
      `manifest ${manifest.state}: ${files.length} files (${files.filter((f) => f.lookback).length} from the look-back ring), ${host.packetsCaptured ?? '?'} packets, ${host.packetsDroppedByKernel ?? '?'} dropped by the kernel`,
    );

    step('process-pcap');
    const processing = await import('../../functions/process-pcap.ts');
    const pending = new Set(files.map((f) => f.key));
    const deadline = Date.now() + 60_000;
    while (pending.size > 0 && Date.now() < deadline) {
      const got = await clients.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: stack.queueUrl,
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: 1,
          AttributeNames: ['All'],
        }),
      );
      const messages = got.Messages ?? [];
      if (messages.length === 0) continue;
      const sqsEvent: SQSEvent = {
        Records: messages.map((m) => ({
          messageId: m.MessageId!,
          receiptHandle: m.ReceiptHandle!,
          body: m.Body ?? '',
          attributes: (m.Attributes ?? {}) as never,
          messageAttributes: {},
          md5OfBody: m.MD5OfBody ?? '',
          eventSource: 'aws:sqs',
          eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:tapline-lab-processing',
          awsRegion: 'us-east-1',
        })),
      };
      const response = await processing.handler(sqsEvent, labContext('processPcap'));
      const failed = new Set(
        (response?.batchItemFailures ?? []).map(
          (f: { itemIdentifier: string }) => f.itemIdentifier,
        ),
      );
      for (const m of messages) {
        if (failed.has(m.MessageId!)) continue;
        await clients.sqs.send(
          new DeleteMessageCommand({ QueueUrl: stack.queueUrl, ReceiptHandle: m.ReceiptHandle! }),
        );
        for (const r of JSON.parse(m.Body ?? '{}').Records ?? []) {
          pending.delete(decodeURIComponent(String(r.s3?.object?.key ?? '').replaceAll('+', ' ')));
        }
      }
      if (failed.size > 0)
        throw new LabStepError('process-pcap', `${failed.size} record(s) failed processing`);
    }
    if (pending.size > 0)
      throw new LabStepError(
        'process-pcap',
        `no S3 event reached the queue for ${[...pending].join(', ')}`,
      );

    // Read back each file's results.
    let portZeroPackets = 0;
    for (const file of files) {
      const layout = resultLayout(parsePcapKey(file.key), file.versionId);
      const read = async (key: string) => {
        const out = await clients.s3.send(new GetObjectCommand({ Bucket: stack.bucket, Key: key }));
        return Buffer.from(await out.Body!.transformToByteArray());
      };
      // The completion record exists only once every table is written; the summary row is in the
      // summary table's object.
      await read(layout.completion);
      const summaryBytes = await read(layout.tables.summary);
      const summaryText = (
        summaryBytes[0] === 0x1f ? gunzipSync(summaryBytes) : summaryBytes
      ).toString('utf8');
      const summary = JSON.parse(summaryText.split('\n').find((l) => l.trim()) ?? '{}');
      const zero = Number(summary.port_zero_packets ?? 0);
      portZeroPackets += zero;
      report.files.push({
        key: file.key,
        sha256: file.sha256,
        verified: file.verified !== false,
        lookback: file.lookback,
        start: file.start,
        end: file.end,
        integrity: summary.integrity_verdict,
        portZeroPackets: zero,
        resultsAt: `s3://${stack.bucket}/${layout.home}`,
      });
      const rows = gunzipSync(await read(layout.tables.conversations))
        .toString('utf8')
        .split('\n')
        .filter(Boolean);
      for (const row of rows) {
        const c = JSON.parse(row);
        report.conversations.push({
          protocol: c.protocol,
          a: `${c.a_addr}${c.a_port === null || c.a_port === undefined ? '' : `:${c.a_port}`}`,
          b: `${c.b_addr}${c.b_port === null || c.b_port === undefined ? '' : `:${c.b_port}`}`,
          packets: c.packets,
          portZero: c.port_zero === true,
          lookback: file.lookback,
        });
      }
    }
    if (report.files.some((f) => f.integrity !== undefined && f.integrity !== 'verified')) {
      throw new LabStepError(
        'process-pcap',
        `integrity verdicts: ${report.files.map((f) => f.integrity).join(', ')}`,
      );
    }
    if (portZeroPackets === 0)
      throw new LabStepError('process-pcap', 'no port-0 packets in the processed captures');
    const lookbackZero = report.files
      .filter((f) => f.lookback)
      .reduce((n, f) => n + (f.portZeroPackets ?? 0), 0);
    if (captureSupportsLookback && lookbackSeconds > 0 && lookbackZero === 0) {
      throw new LabStepError(
        'process-pcap',
        'the look-back files hold none of the port-0 probes sent before the detector fired',
      );
    }
    done(
      `${files.length} files processed; ${portZeroPackets} port-0 packets (${lookbackZero} from before the detector fired)`,
    );
    report.ok = true;
  } catch (error) {
    const message =
      error instanceof LabStepError
        ? error.message
        : `${current}: ${(error as Error)?.stack ?? String(error)}`;
    report.steps.push({ name: current, ok: false, detail: message, ms: Date.now() - started });
    log(`✗ ${message}`);
    report.ok = false;
  } finally {
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch((error: unknown) =>
        log(`cleanup: ${(error as Error)?.message ?? String(error)}`),
      );
    }
    for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
    Object.assign(process.env, savedEnv);
  }
  return report;
}
