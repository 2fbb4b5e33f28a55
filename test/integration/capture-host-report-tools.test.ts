/**
 * A host report whose `tools` field does not validate (another host script version, a wrong
 * type) still delivers the capture's status, counts and verified files to the manifest
 * (applyHostResult, moto); what of `tools` could be kept is kept, and what could not is in the
 * host's errors.
 */
import { describe, expect, it } from 'vitest';
import { startCapture } from '../../shared/capture/start-capture.ts';
import { applyHostResult } from '../../shared/capture/track-capture.ts';
import { makeCaptureWorld, makeTopology } from '../fixtures/capture/world.ts';
import { hostReport, manifestOf, uploadLikeTheHost } from '../support/capture-evidence.ts';

describe('a host report with malformed tools (moto)', () => {
  it('keeps status, counts and files in the manifest, and records what of tools was dropped', async () => {
    const world = await makeCaptureWorld();
    const topo = await makeTopology(world, 214);
    const id = topo.nat.instanceId;
    const started = await startCapture(
      { targets: { kind: 'instances', instanceIds: [id] }, reason: 'IR-91 tools leniency' },
      world.deps,
    );
    expect(started.started).toHaveLength(1);

    // the pcap as the host uploads it (metadata hash + S3 SHA-256 checksum + SSE-KMS)
    const bytes = Buffer.from('d4c3b2a1020004000000000000000000ffff000001000000', 'hex');
    const file = await uploadLikeTheHost(world, started.captureId, id, bytes, {
      start: '1795423200',
      end: '1795423260',
    });
    const report = hostReport(started.captureId, id, file, bytes.length, {
      // a script that reports the AWS CLI version as an object and a third tool
      tools: {
        aws: { name: 'aws-cli', version: '2.15.0' },
        tcpdump: 'tcpdump version 4.99.4',
        editcap: 'Editcap (Wireshark) 4.4.1',
      },
    });

    const tracked = await applyHostResult(
      {
        captureId: started.captureId,
        instanceId: id,
        commandId: started.started[0]!.commandId,
        ssmStatus: 'Success',
        stdout: `tapline: uploading\n${JSON.stringify(report)}\n`,
      },
      world.deps,
    );

    expect(tracked).toMatchObject({ hostStatus: 'success', state: 'finished', lockReleased: true });
    const manifest = await manifestOf(world, started.captureId);
    expect(manifest.hosts[id]).toMatchObject({
      status: 'success',
      interface: 'ens5',
      packetsCaptured: 42,
      packetsDroppedByKernel: 0,
      bytes: bytes.length,
      files: [{ key: file.key, versionId: file.versionId, size: bytes.length, verified: true }],
      tools: { tcpdump: 'tcpdump version 4.99.4', editcap: 'Editcap (Wireshark) 4.4.1' },
      errors: ['host report: tools.aws: expected a version string, got object; dropped'],
    });
    expect(manifest.hosts[id]!.tools).not.toHaveProperty('aws');
  }, 60_000);
});
