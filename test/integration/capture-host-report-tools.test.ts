/**
 * A host report whose `tools` field does not validate (another host script version, a wrong
 * type) still delivers the capture's status, counts and verified files to the manifest
 * (applyHostResult, moto); what of `tools` could be kept is kept, and what could not is in the
 * host's errors.
 */
import { createHash } from 'node:crypto';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { startCapture } from '../../shared/capture/start-capture.ts';
import { applyHostResult } from '../../shared/capture/track-capture.ts';
import { readManifest } from '../../shared/evidence/manifest.ts';
import { makeCaptureWorld, makeTopology } from '../fixtures/capture/world.ts';

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
    const sha = createHash('sha256').update(bytes).digest();
    const key = `pcaps/${started.captureId}/${id}/00001-20261123T084000Z.pcap`;
    const put = await world.clients.s3.send(
      new PutObjectCommand({
        Bucket: world.config.EVIDENCE_BUCKET,
        Key: key,
        Body: bytes,
        ChecksumAlgorithm: 'SHA256',
        ChecksumSHA256: sha.toString('base64'),
        ServerSideEncryption: 'aws:kms',
        SSEKMSKeyId: world.keyArn,
        Metadata: {
          sha256: sha.toString('hex'),
          'capture-id': started.captureId,
          'instance-id': id,
          'time-start': '1795423200',
          'time-end': '1795423260',
          lookback: 'false',
        },
      }),
    );
    const report = {
      tapline: 'capture-result',
      version: 1,
      captureId: started.captureId,
      instanceId: id,
      status: 'success',
      interface: 'ens5',
      // a script that reports the AWS CLI version as an object and a third tool
      tools: {
        aws: { name: 'aws-cli', version: '2.15.0' },
        tcpdump: 'tcpdump version 4.99.4',
        editcap: 'Editcap (Wireshark) 4.4.1',
      },
      started: 1795423200,
      ended: 1795423261,
      files: [
        {
          key,
          versionId: put.VersionId,
          size: bytes.length,
          sha256: sha.toString('hex'),
          s3ChecksumSha256: sha.toString('base64'),
          lookback: false,
          start: 1795423200,
          end: 1795423260,
        },
      ],
      fileCount: 1,
      bytes: bytes.length,
      packetsCaptured: 42,
      packetsReceivedByFilter: 42,
      packetsDroppedByKernel: 0,
      unsent: [],
      errors: [],
    };

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
    const manifest = (await readManifest(
      { s3: world.clients.s3, bucket: world.config.EVIDENCE_BUCKET, keyArn: world.keyArn },
      started.captureId,
    ))!.manifest;
    expect(manifest.hosts[id]).toMatchObject({
      status: 'success',
      interface: 'ens5',
      packetsCaptured: 42,
      packetsDroppedByKernel: 0,
      bytes: bytes.length,
      files: [{ key, versionId: put.VersionId, size: bytes.length, verified: true }],
      tools: { tcpdump: 'tcpdump version 4.99.4', editcap: 'Editcap (Wireshark) 4.4.1' },
      errors: ['host report: tools.aws: expected a version string, got object; dropped'],
    });
    expect(manifest.hosts[id]!.tools).not.toHaveProperty('aws');
  }, 60_000);
});
