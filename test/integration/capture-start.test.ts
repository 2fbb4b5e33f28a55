import { RunInstancesCommand } from '@aws-sdk/client-ec2';
import { GetObjectCommand, ListObjectVersionsCommand } from '@aws-sdk/client-s3';
import { ListCommandsCommand } from '@aws-sdk/client-ssm';
import { beforeAll, describe, expect, it } from 'vitest';
import { captureIdFor } from '../../shared/capture/ids.ts';
import type { CaptureRequestInput } from '../../shared/capture/request.ts';
import { type CaptureDeps, startCapture } from '../../shared/capture/start-capture.ts';
import {
  applyHostResult,
  sweepTimedOutCaptures,
  trackCommandStatus,
} from '../../shared/capture/track-capture.ts';
import { InvalidFilterError } from '../../shared/errors.ts';
import {
  type CaptureManifest,
  manifestKey,
  manifestVersions,
} from '../../shared/evidence/manifest.ts';
import { getJson } from '../../shared/evidence/store.ts';
import {
  type CaptureWorld,
  makeCaptureWorld,
  makeTopology,
  type Topology,
} from '../fixtures/capture/world.ts';
import {
  type HostUpload,
  hostReport,
  manifestOf,
  uploadLikeTheHost,
  worldEvidenceStore,
} from '../support/capture-evidence.ts';
import { ssmRecordingSendCommands } from '../support/ssm-send-recorder.ts';

const reason = 'IR-77 port-0 traffic from the payroll subnet';

/** A capture request for one explicit instance, with this file's reason; `extra` adds the rest. */
function onInstance(
  instanceId: string,
  extra: Partial<CaptureRequestInput> = {},
): CaptureRequestInput {
  return { targets: { kind: 'instances', instanceIds: [instanceId] }, reason, ...extra };
}

async function manifestHistory(world: CaptureWorld, captureId: string): Promise<CaptureManifest[]> {
  const store = worldEvidenceStore(world);
  const versions = await manifestVersions(store, captureId);
  const out: CaptureManifest[] = [];
  for (const v of versions) {
    const body = await world.clients.s3.send(
      new GetObjectCommand({
        Bucket: store.bucket,
        Key: manifestKey(captureId),
        VersionId: v.versionId,
      }),
    );
    out.push(JSON.parse(await body.Body!.transformToString()));
  }
  return out;
}

/** The host's report line, with the look-back step's report. */
function reportLine(captureId: string, instanceId: string, file: HostUpload, size: number) {
  return `${JSON.stringify(hostReport(captureId, instanceId, file, size, { lookback: LOOKBACK }))}\n`;
}

/** The look-back step's report as the capture document prints it (docs/lookback.md). */
const LOOKBACK = {
  status: 'ok',
  requestedSeconds: 600,
  windowStart: 1795422600,
  windowEnd: 1795423200,
  ringDirectory: '/var/lib/tapline/ring',
  ring: 'running',
  rotated: true,
  fileCount: 0,
  bytes: 0,
  silentFiles: 10,
  coverageStart: 1795422590.5,
  coverageEnd: 1795423200.25,
  complete: true,
  gaps: [],
  errors: [],
};

describe('startCapture against moto', () => {
  let world: CaptureWorld;
  let topo: Topology;

  beforeAll(async () => {
    world = await makeCaptureWorld({ COOLDOWN_SECONDS: '600', HOURLY_CAPTURE_BUDGET: '50' });
    topo = await makeTopology(world, 63);
  });

  it('resolves the workload ENI to the NAT, sends the document with the expected parameters and records it', async () => {
    const { ssm, sent: sentInstanceIds } = ssmRecordingSendCommands();
    const outcome = await startCapture(
      {
        targets: { kind: 'eni', eniId: topo.workload.eniId },
        durationSeconds: 120,
        snaplen: 'headers',
        filter: {
          kind: 'structured',
          hosts: ['10.63.1.0/24'],
          ports: [0],
          protocols: ['tcp', 'udp'],
        },
        reason,
        requestedBy: 'alice@example.com',
        ticket: 'IR-77',
      },
      { ...world.deps, clients: { ...world.deps.clients, ssm } },
    );
    expect(outcome.state).toBe('running');
    expect(outcome.refused).toEqual([]);
    expect(outcome.started).toEqual([expect.objectContaining({ instanceId: topo.nat.instanceId })]);
    expect(outcome.captureId).toMatch(/^cap-\d{8}T\d{6}Z-[0-9a-f]{8}$/);
    expect(outcome.ssmAvailabilityUnknown).toMatch(/DescribeInstanceInformation/);

    const listed = await world.clients.ssm.send(
      new ListCommandsCommand({ CommandId: outcome.started[0]!.commandId }),
    );
    const command = listed.Commands![0]!;
    expect(command.DocumentName).toBe(world.config.CAPTURE_DOCUMENT_NAME);
    // moto adds every EC2 instance of the account to a command sent without Targets, so the
    // read-back list only proves ours is in it; the request itself named exactly the NAT.
    expect(command.InstanceIds).toContain(topo.nat.instanceId);
    expect(sentInstanceIds).toEqual([[topo.nat.instanceId]]);
    expect(command.Comment).toContain(outcome.captureId);
    expect(command.Parameters).toEqual({
      CaptureId: [outcome.captureId],
      Bucket: [world.config.EVIDENCE_BUCKET],
      KmsKeyId: [world.keyArn],
      Region: ['us-east-1'],
      Interface: ['auto'],
      DurationSeconds: ['120'],
      Snaplen: ['128'],
      RotateSeconds: ['300'],
      RotateMegabytes: ['256'],
      FileCount: ['20'],
      MaxMegabytes: ['2048'],
      Filter: ['net 10.63.1.0/24 and (tcp or udp) and port 0'],
      MinFreeMegabytes: ['1024'],
      LookbackSeconds: ['0'],
    });

    const manifest = await manifestOf(world, outcome.captureId);
    expect(manifest).toMatchObject({
      version: 1,
      captureId: outcome.captureId,
      state: 'running',
      requestedBy: 'alice@example.com',
      invokedBy: 'arn:aws:sts::123456789012:assumed-role/responder/alice',
      reason,
      ticket: 'IR-77',
      ssm: {
        commandId: outcome.started[0]!.commandId,
        documentName: world.config.CAPTURE_DOCUMENT_NAME,
      },
    });
    expect(manifest.ssm.documentVersion).toBe('1');
    expect(manifest.targets[0]!.why).toContain('0.0.0.0/0');
    expect(manifest.hosts[topo.nat.instanceId]!.status).toBe('running');
  });

  it('lets exactly one of several concurrent requests for the same host win', async () => {
    const host = await makeTopology(world, 64);
    const outcomes = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        startCapture(onInstance(host.nat.instanceId, { reason: `race ${i}` }), world.deps),
      ),
    );
    const winners = outcomes.filter((o) => o.started.length === 1);
    expect(winners).toHaveLength(1);
    const losers = outcomes.filter((o) => o.started.length === 0);
    expect(losers).toHaveLength(4);
    for (const loser of losers) {
      expect(loser.refused).toEqual([
        expect.objectContaining({ instanceId: host.nat.instanceId, reason: 'host-busy' }),
      ]);
      expect(loser.refused[0]!.message).toContain(winners[0]!.captureId);
      expect((await manifestOf(world, loser.captureId)).state).toBe('refused');
    }
    const lock = await getJson<{ captureId: string; state: string }>(
      worldEvidenceStore(world),
      `locks/${host.nat.instanceId}.json`,
    );
    expect(lock?.value).toMatchObject({ captureId: winners[0]!.captureId, state: 'held' });
  });

  it('tracks the host result: verified files in the manifest, lock released, versions tell the story', async () => {
    const host = await makeTopology(world, 65);
    const started = await startCapture(
      onInstance(host.nat.instanceId, { durationSeconds: 60 }),
      world.deps,
    );
    const id = host.nat.instanceId;
    const bytes = Buffer.from('d4c3b2a1020004000000000000000000ffff000001000000', 'hex');
    const file = await uploadLikeTheHost(world, started.captureId, id, bytes);
    const tracked = await applyHostResult(
      {
        captureId: started.captureId,
        instanceId: id,
        commandId: started.started[0]!.commandId,
        ssmStatus: 'Success',
        stdout: `tapline: some progress\n${reportLine(started.captureId, id, file, bytes.length)}`,
      },
      world.deps,
    );
    expect(tracked).toMatchObject({ hostStatus: 'success', state: 'finished', lockReleased: true });
    const manifest = await manifestOf(world, started.captureId);
    expect(manifest.hosts[id]).toMatchObject({
      status: 'success',
      packetsCaptured: 42,
      packetsDroppedByKernel: 0,
      interface: 'ens5',
      bytes: bytes.length,
      files: [
        {
          key: file.key,
          versionId: file.versionId,
          size: bytes.length,
          sha256: file.sha256,
          s3ChecksumSha256: file.b64,
          lookback: false,
          start: 1795423200.000001,
          end: 1795423260.5,
          verified: true,
        },
      ],
      // The look-back report stays in the manifest, per host.
      lookback: LOOKBACK,
      errors: [],
    });
    // A duplicate delivery changes nothing.
    const again = await applyHostResult(
      { captureId: started.captureId, instanceId: id, ssmStatus: 'Success', stdout: '' },
      world.deps,
    );
    expect(again.hostStatus).toBe('success');

    const history = await manifestHistory(world, started.captureId);
    expect(history.map((m) => m.state)).toEqual(['pending', 'running', 'finished']);
    expect(history.at(-1)!.history.map((h) => h.event)).toEqual([
      'requested',
      'targets-resolved',
      'ssm-status-unknown',
      'guards-passed',
      'command-sent',
      'host-finished',
      'capture-finished',
    ]);
    // The host is free again.
    const next = await startCapture(onInstance(id, { reason: 'follow-up' }), world.deps);
    expect(next.started).toHaveLength(1);
  });

  it('flags a pcap whose bytes do not match the host hash', async () => {
    const host = await makeTopology(world, 66);
    const started = await startCapture(onInstance(host.nat.instanceId), world.deps);
    const id = host.nat.instanceId;
    const file = await uploadLikeTheHost(world, started.captureId, id, Buffer.from('real bytes'));
    const lie = { ...file, sha256: 'a'.repeat(64) };
    const tracked = await applyHostResult(
      {
        captureId: started.captureId,
        instanceId: id,
        ssmStatus: 'Success',
        stdout: reportLine(started.captureId, id, lie, 10),
      },
      world.deps,
    );
    expect(tracked.hostStatus).toBe('partial');
    const manifest = await manifestOf(world, started.captureId);
    expect(manifest.hosts[id]!.files[0]!.verified).toBe(false);
    expect(manifest.hosts[id]!.errors.join('\n')).toMatch(/integrity: .* host report a{64}/);
  });

  it('reads the status-change event through GetCommandInvocation (moto: no report → failed, said so)', async () => {
    const host = await makeTopology(world, 67);
    const started = await startCapture(onInstance(host.nat.instanceId), world.deps);
    const event = {
      'detail-type': 'EC2 Command Invocation Status-change Notification',
      source: 'aws.ssm',
      detail: {
        'command-id': started.started[0]!.commandId,
        'instance-id': host.nat.instanceId,
        'document-name': world.config.CAPTURE_DOCUMENT_NAME,
        status: 'Success',
      },
    };
    const tracked = await trackCommandStatus(event, world.deps);
    expect(tracked).toMatchObject({
      captureId: started.captureId,
      hostStatus: 'failed',
      lockReleased: true,
    });
    const manifest = await manifestOf(world, started.captureId);
    expect(manifest.hosts[host.nat.instanceId]!.errors.join('\n')).toMatch(/no usable report/);
    const ignored = await trackCommandStatus(
      { ...event, detail: { ...event.detail, 'document-name': 'AWS-RunShellScript' } },
      world.deps,
    );
    expect(ignored.ignored).toMatch(/not the Tapline capture document/);
  });

  it('marks a host that never reports as timed out after its deadline and frees it', async () => {
    const host = await makeTopology(world, 68);
    const t0 = new Date();
    const started = await startCapture(onInstance(host.nat.instanceId, { durationSeconds: 30 }), {
      ...world.deps,
      now: () => t0,
    });
    const early = await sweepTimedOutCaptures({
      ...world.deps,
      now: () => new Date(t0.getTime() + 60_000),
    });
    expect(early.map((c) => c.captureId)).not.toContain(started.captureId);
    const late = new Date(t0.getTime() + (30 + 901) * 1000);
    const swept = await sweepTimedOutCaptures({ ...world.deps, now: () => late });
    expect(swept).toContainEqual({ captureId: started.captureId, instanceId: host.nat.instanceId });
    const manifest = await manifestOf(world, started.captureId);
    expect(manifest.state).toBe('failed');
    expect(manifest.hosts[host.nat.instanceId]!.status).toBe('timed-out');
    const again = await startCapture(onInstance(host.nat.instanceId), world.deps);
    expect(again.started).toHaveLength(1);
  });
  it('sends one SendCommand per 50 instances', async () => {
    const big = await makeCaptureWorld({ HOURLY_CAPTURE_BUDGET: '100' });
    const topo = await makeTopology(big, 78);
    const tag = big.tags.capture;
    const at = tag.lastIndexOf('=');
    const run = await big.clients.ec2.send(
      new RunInstancesCommand({
        ImageId: 'ami-12c6146b',
        MinCount: 51,
        MaxCount: 51,
        SubnetId: topo.privateSubnetId,
        TagSpecifications: [
          { ResourceType: 'instance', Tags: [{ Key: tag.slice(0, at), Value: tag.slice(at + 1) }] },
        ],
      }),
    );
    expect(run.Instances).toHaveLength(51);
    const { ssm, sent } = ssmRecordingSendCommands();
    const outcome = await startCapture(
      { targets: { kind: 'tag' }, reason: 'fleet-wide capture' },
      { ...big.deps, clients: { ...big.deps.clients, ssm } },
    );
    expect(outcome.refused).toEqual([]);
    expect(outcome.started).toHaveLength(51);
    const batches = sent.map((ids) => ids.length);
    expect(batches.sort((a, b) => b - a)).toEqual([50, 1]);
    expect(new Set(outcome.started.map((s) => s.commandId)).size).toBe(2);
    const manifest = await manifestOf(big, outcome.captureId);
    expect(manifest.ssm.commandIds).toHaveLength(2);
    expect(Object.keys(manifest.hosts)).toHaveLength(51);
  });
});

describe('capture guards against moto', () => {
  it('the kill switch refuses everything, records and says why', async () => {
    const world = await makeCaptureWorld({ CAPTURES_ENABLED: 'false' });
    const topo = await makeTopology(world, 69);
    const outcome = await startCapture(onInstance(topo.nat.instanceId), world.deps);
    expect(outcome).toMatchObject({ state: 'refused', started: [] });
    expect(outcome.refused).toEqual([expect.objectContaining({ reason: 'kill-switch' })]);
    expect((await manifestOf(world, outcome.captureId)).refused[0]!.reason).toBe('kill-switch');
  });

  it('refuses durations and sizes above the configured maxima', async () => {
    const world = await makeCaptureWorld({
      MAX_DURATION_SECONDS: '600',
      MAX_CAPTURE_MEGABYTES: '100',
    });
    const topo = await makeTopology(world, 70);
    const long = await startCapture(
      onInstance(topo.nat.instanceId, { durationSeconds: 601 }),
      world.deps,
    );
    expect(long.refused[0]).toMatchObject({ reason: 'duration-limit' });
    const big = await startCapture(
      onInstance(topo.nat.instanceId, { maxMegabytes: 101 }),
      world.deps,
    );
    expect(big.refused[0]).toMatchObject({ reason: 'bytes-limit' });
  });

  it('a cooldown lets one capture per fingerprint and host through per window', async () => {
    const world = await makeCaptureWorld({ COOLDOWN_SECONDS: '900' });
    const topo = await makeTopology(world, 71);
    const t0 = new Date();
    const deps: CaptureDeps = { ...world.deps, now: () => t0 };
    const req = {
      targets: { kind: 'instances' as const, instanceIds: [topo.nat.instanceId] },
      reason: 'detector: port-0',
      fingerprint: 'port0:10.71.1.5:203.0.113.9',
      durationSeconds: 60,
    };
    const first = await startCapture(req, deps);
    expect(first.started).toHaveLength(1);
    // The capture ends and releases its lock; the same fingerprint is still cooling down.
    await applyHostResult(
      {
        captureId: first.captureId,
        instanceId: topo.nat.instanceId,
        ssmStatus: 'Failed',
        stdout: '',
      },
      deps,
    );
    const second = await startCapture(req, {
      ...deps,
      now: () => new Date(t0.getTime() + 300_000),
    });
    expect(second.refused).toEqual([expect.objectContaining({ reason: 'cooldown' })]);
    expect(second.refused[0]!.message).toContain(first.captureId);
    const other = await startCapture(
      { ...req, fingerprint: 'scan:10.71.1.5' },
      { ...deps, now: () => new Date(t0.getTime() + 300_000) },
    );
    expect(other.started).toHaveLength(1);
  });

  it('the hourly budget refuses beyond its limit, concurrently too', async () => {
    const world = await makeCaptureWorld({ HOURLY_CAPTURE_BUDGET: '2' });
    const hosts = await Promise.all([
      makeTopology(world, 72),
      makeTopology(world, 73),
      makeTopology(world, 74),
    ]);
    const outcomes = await Promise.all(
      hosts.map((h) => startCapture(onInstance(h.nat.instanceId), world.deps)),
    );
    const started = outcomes.filter((o) => o.started.length > 0);
    const refused = outcomes.filter((o) => o.started.length === 0);
    expect(started).toHaveLength(2);
    expect(refused).toHaveLength(1);
    expect(refused[0]!.refused[0]).toMatchObject({ reason: 'budget' });
    // The refused host's lock was rolled back: it is not left busy.
    const lock = await getJson<{ state: string }>(
      worldEvidenceStore(world),
      `locks/${refused[0]!.refused[0]!.instanceId}.json`,
    );
    expect(lock?.value.state).toBe('released');
  });

  it('rejects an invalid filter with a typed error and starts nothing', async () => {
    const world = await makeCaptureWorld();
    const error = await startCapture(
      onInstance('i-0123456789abcdef0', {
        filter: { kind: 'bpf', expression: 'host 10.0.0.1 and port 0; reboot' },
      }),
      world.deps,
    ).catch((e) => e);
    expect(error).toBeInstanceOf(InvalidFilterError);
    expect(error.details).toMatchObject({ token: ';', position: 24 });
    const listed = await world.clients.s3.send(
      new ListObjectVersionsCommand({ Bucket: world.config.EVIDENCE_BUCKET }),
    );
    expect(listed.Versions ?? []).toEqual([]);
  });

  it('captures id format is stable', () => {
    expect(captureIdFor(new Date('2026-11-23T08:40:00.123Z'), '1a2b3c4d')).toBe(
      'cap-20261123T084000Z-1a2b3c4d',
    );
  });
});
