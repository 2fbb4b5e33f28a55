/**
 * What track-capture records from a host report (applyHostResult, moto): a report that arrives
 * after the sweep timed the host out is recorded, not dropped (the files are evidence; the
 * time-out stays in the history); a result of another command does not free the host; and a
 * host is never recorded as a plain success when files it reported are missing from the bucket
 * or were left unsent on the host; a report that does not validate says which fields are wrong.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type CaptureOutcome, startCapture } from '../../shared/capture/start-capture.ts';
import { applyHostResult, sweepTimedOutCaptures } from '../../shared/capture/track-capture.ts';
import { lockKey, readLease } from '../../shared/evidence/guards.ts';
import { makeCaptureWorld, makeTopology } from '../fixtures/capture/world.ts';
import {
  hostReport,
  manifestOf,
  uploadLikeTheHost,
  worldEvidenceStore,
} from '../support/capture-evidence.ts';
import {
  failedHostResult,
  hostCapture,
  overwrite,
  reportedHostResult,
  worldWithNatHost,
} from '../support/capture-host-world.ts';

const PCAP = Buffer.from('d4c3b2a1020004000000000000000000ffff000001000000', 'hex');

describe('track-capture records what the host reported (moto)', () => {
  it('a report that arrives after the sweep timed the host out is recorded, and the time-out kept', async () => {
    const { world, id } = await worldWithNatHost(242);
    const t0 = new Date();
    const started = await startCapture(hostCapture(id, 'IR-242 late report'), {
      ...world.deps,
      now: () => t0,
    });
    expect(started.started).toHaveLength(1);
    const swept = await sweepTimedOutCaptures({
      ...world.deps,
      now: () => new Date(t0.getTime() + 931_000),
    });
    expect(swept).toEqual([{ captureId: started.captureId, instanceId: id }]);
    expect((await manifestOf(world, started.captureId)).state).toBe('failed');

    // the host was slow (late delivery, slow uploads) but did its work and reports it
    const file = await uploadLikeTheHost(world, started.captureId, id, PCAP);
    const report = hostReport(started.captureId, id, file, PCAP.length);
    const input = reportedHostResult(started, id, report);
    const lateAt = { ...world.deps, now: () => new Date(t0.getTime() + 1_000_000) };
    const tracked = await applyHostResult(input, lateAt);

    expect(tracked).toMatchObject({ hostStatus: 'success', state: 'finished' });
    const manifest = await manifestOf(world, started.captureId);
    expect(manifest.state).toBe('finished');
    const host = manifest.hosts[id]!;
    expect(host).toMatchObject({
      status: 'success',
      ssmStatus: 'Success',
      packetsCaptured: 42,
      files: [{ key: file.key, versionId: file.versionId, verified: true }],
    });
    // the time-out is not rewritten away: it stays in the errors and the history
    expect(host.errors[0]).toMatch(/^no report from the host by its deadline/);
    const events = manifest.history.map((h) => h.event);
    expect(events.indexOf('host-timed-out')).toBeGreaterThan(-1);
    expect(events.lastIndexOf('host-finished')).toBeGreaterThan(events.indexOf('host-timed-out'));
    expect(manifest.history.find((h) => h.event === 'host-finished')).toMatchObject({
      instanceId: id,
      status: 'success',
      afterTimeOut: true,
    });
    expect(manifest.history.at(-1)).toMatchObject({ event: 'capture-finished', state: 'finished' });

    // a duplicate delivery of the same report changes nothing more
    const length = manifest.history.length;
    await applyHostResult(input, lateAt);
    expect((await manifestOf(world, started.captureId)).history).toHaveLength(length);
  }, 60_000);

  it('a redelivered result releases the lock when the first delivery stopped before releasing it', async () => {
    const { world, id } = await worldWithNatHost(252);
    const started = await startCapture(
      { targets: { kind: 'instances', instanceIds: [id] }, reason: 'IR-252 redelivery' },
      world.deps,
    );
    const store = worldEvidenceStore(world);
    const held = (await readLease(store, lockKey(id)))!.lease!;
    const input = failedHostResult(started, id);
    expect((await applyHostResult(input, world.deps)).lockReleased).toBe(true);
    // as if that delivery had stopped after the manifest write: the lock is still held
    await overwrite(world, lockKey(id), JSON.stringify(held));
    const history = (await manifestOf(world, started.captureId)).history.length;

    const again = await applyHostResult(input, world.deps);

    expect(again).toMatchObject({ hostStatus: 'failed', lockReleased: true });
    expect((await readLease(store, lockKey(id)))?.lease?.state).toBe('released');
    expect((await manifestOf(world, started.captureId)).history).toHaveLength(history);
  }, 60_000);

  it('a result of another command naming the capture neither frees the host nor changes its record', async () => {
    const { world, id } = await worldWithNatHost(244);
    const started = await startCapture(
      { targets: { kind: 'instances', instanceIds: [id] }, reason: 'IR-244 other command' },
      world.deps,
    );
    expect(started.started).toHaveLength(1);
    const before = await manifestOf(world, started.captureId);

    // e.g. a second run of the capture document whose comment names this capture
    const tracked = await applyHostResult(
      { ...failedHostResult(started, id), commandId: '00000000-0000-4000-8000-000000000000' },
      world.deps,
    );

    expect(tracked.ignored).toMatch(/is not the capture's command/);
    expect(tracked.lockReleased).toBeUndefined();
    const lock = await readLease(worldEvidenceStore(world), lockKey(id));
    expect(lock?.lease).toMatchObject({ state: 'held', captureId: started.captureId });
    expect(await manifestOf(world, started.captureId)).toEqual(before);
    // so a second capture cannot start on the host while the first one runs
    const second = await startCapture(
      { targets: { kind: 'instances', instanceIds: [id] }, reason: 'IR-244 second' },
      world.deps,
    );
    expect(second.refused.map((r) => r.reason)).toEqual(['host-busy']);
  }, 60_000);

  it('a "success" report whose files are not all in the bucket, or left unsent, is recorded as partial', async () => {
    const world = await makeCaptureWorld({ HOURLY_CAPTURE_BUDGET: '50' });
    const topo = await makeTopology(world, 243);
    const cases = [
      { id: topo.nat.instanceId, missing: 'reported, never uploaded' },
      { id: topo.sensor.instanceId, missing: 'left unsent on the host' },
    ] as const;
    for (const c of cases) {
      const started = await startCapture(
        { targets: { kind: 'instances', instanceIds: [c.id] }, reason: 'IR-243 missing file' },
        world.deps,
      );
      expect(started.started).toHaveLength(1);
      const file = await uploadLikeTheHost(world, started.captureId, c.id, PCAP);
      const hash = createHash('sha256').update('the second file').digest();
      const second = {
        key: `pcaps/${started.captureId}/${c.id}/00002-20261123T084100Z.pcap`,
        size: 4096,
        sha256: hash.toString('hex'),
      };
      const report = hostReport(started.captureId, c.id, file, PCAP.length);
      if (c.missing === 'reported, never uploaded') {
        (report.files as unknown[]).push({
          ...second,
          s3ChecksumSha256: hash.toString('base64'),
          lookback: false,
          start: 1795423260,
          end: 1795423320,
        });
      } else {
        report.unsent = [{ ...second, path: '/var/lib/tapline/unsent/00002.pcap' }];
      }
      const tracked = await applyHostResult(reportedHostResult(started, c.id, report), world.deps);
      expect(tracked.hostStatus, c.missing).toBe('partial');
      const manifest = await manifestOf(world, started.captureId);
      expect(manifest.state, c.missing).toBe('partial');
      expect(manifest.hosts[c.id]!.files, c.missing).toHaveLength(1);
      expect(manifest.hosts[c.id]!.errors.join('\n'), c.missing).toContain(second.key);
    }
  }, 60_000);

  it('an object under the host prefix that the host did not report is said, and an unsent file that did arrive is not called missing', async () => {
    const world = await makeCaptureWorld({ HOURLY_CAPTURE_BUDGET: '50' });
    const topo = await makeTopology(world, 251);
    const start = async (id: string) => {
      const started = await startCapture(
        { targets: { kind: 'instances', instanceIds: [id] }, reason: 'IR-251 extra objects' },
        world.deps,
      );
      expect(started.started).toHaveLength(1);
      return started;
    };
    const apply = (capture: CaptureOutcome, id: string, report: unknown) =>
      applyHostResult(reportedHostResult(capture, id, report), world.deps);

    // someone else put a pcap under the NAT's prefix; the host's own report does not list it
    const nat = topo.nat.instanceId;
    const a = await start(nat);
    const stray = await uploadLikeTheHost(world, a.captureId, nat, PCAP);
    const report = hostReport(a.captureId, nat, stray, PCAP.length, { files: [], fileCount: 0 });
    const strayTracked = await apply(a, nat, report);
    expect(strayTracked.hostStatus).toBe('partial');
    expect((await manifestOf(world, a.captureId)).hosts[nat]!.errors).toContain(
      `${stray.key} is in the bucket but not in the host's report`,
    );

    // the host gave up on an upload that S3 had in fact taken (its report says partial)
    const sensor = topo.sensor.instanceId;
    const b = await start(sensor);
    const arrived = await uploadLikeTheHost(world, b.captureId, sensor, PCAP);
    const gaveUp = hostReport(b.captureId, sensor, arrived, PCAP.length, {
      status: 'partial',
      files: [],
      fileCount: 0,
      unsent: [
        {
          key: arrived.key,
          path: '/var/lib/tapline/unsent/00001.pcap',
          size: PCAP.length,
          sha256: arrived.sha256,
        },
      ],
      errors: ['upload of the file failed after 5 attempts'],
    });
    const gaveUpTracked = await apply(b, sensor, gaveUp);
    expect(gaveUpTracked.hostStatus).toBe('partial');
    const errors = (await manifestOf(world, b.captureId)).hosts[sensor]!.errors;
    expect(errors.join('\n')).not.toContain('was not uploaded');
    expect(errors.join('\n')).not.toContain("not in the host's report");
    expect(errors.join('\n')).toContain(
      `${arrived.key} is in the bucket although the host kept it`,
    );
  }, 60_000);

  it('a report that does not validate is recorded with the fields that are wrong', async () => {
    const { world, id } = await worldWithNatHost(255);
    const started = await startCapture(
      { targets: { kind: 'instances', instanceIds: [id] }, reason: 'IR-255 bad report' },
      world.deps,
    );
    const file = await uploadLikeTheHost(world, started.captureId, id, PCAP);
    const report = hostReport(started.captureId, id, file, PCAP.length, {
      packetsCaptured: -1,
      status: 'done',
    });

    const tracked = await applyHostResult(reportedHostResult(started, id, report), world.deps);

    expect(tracked.hostStatus).toBe('failed');
    const errors = (await manifestOf(world, started.captureId)).hosts[id]!.errors.join('\n');
    expect(errors).toContain('no usable report from the host');
    expect(errors).toMatch(/status: /);
    expect(errors).toMatch(/packetsCaptured: /);
  }, 60_000);
});
