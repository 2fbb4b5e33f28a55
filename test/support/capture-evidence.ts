/**
 * The evidence a capture leaves in a capture world's bucket, as the tests write and read it:
 * pcaps uploaded exactly as the host script uploads them, and the capture manifest.
 */
import { createHash } from 'node:crypto';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { type CaptureManifest, readManifest } from '../../shared/evidence/manifest.ts';
import type { EvidenceStore } from '../../shared/evidence/store.ts';
import type { CaptureWorld } from '../fixtures/capture/world.ts';

/** The world's evidence bucket and key, as the evidence readers take them. */
export function worldEvidenceStore(world: CaptureWorld): EvidenceStore {
  return { s3: world.clients.s3, bucket: world.config.EVIDENCE_BUCKET, keyArn: world.keyArn };
}

/** The capture's current manifest; throws when there is none. */
export async function manifestOf(world: CaptureWorld, captureId: string): Promise<CaptureManifest> {
  const got = await readManifest(worldEvidenceStore(world), captureId);
  if (!got) throw new Error(`no manifest for ${captureId}`);
  return got.manifest;
}

/** A pcap object as the host script uploads it: what it returns is what the host reports. */
export interface HostUpload {
  key: string;
  versionId: string;
  /** Lowercase hex SHA-256 of the bytes (the `sha256` metadata). */
  sha256: string;
  /** The same hash in base64 (the S3 SHA-256 checksum). */
  b64: string;
  /** The capture window the metadata states (`time-start`, `time-end`), in epoch seconds. */
  start: number;
  end: number;
}

/**
 * Uploads `bytes` as `pcaps/<captureId>/<instanceId>/00001-20261123T084000Z.pcap` exactly as the
 * host script does: SHA-256 metadata and S3 checksum, SSE-KMS with the world's key, capture and
 * instance IDs and the capture window (`time-start`/`time-end`, epoch seconds as text).
 */
export async function uploadLikeTheHost(
  world: CaptureWorld,
  captureId: string,
  instanceId: string,
  bytes: Buffer,
  window: { start: string; end: string } = { start: '1795423200.000001', end: '1795423260.5' },
): Promise<HostUpload> {
  const sha = createHash('sha256').update(bytes).digest();
  const key = `pcaps/${captureId}/${instanceId}/00001-20261123T084000Z.pcap`;
  const out = await world.clients.s3.send(
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
        'capture-id': captureId,
        'instance-id': instanceId,
        'time-start': window.start,
        'time-end': window.end,
        lookback: 'false',
      },
    }),
  );
  return {
    key,
    versionId: out.VersionId!,
    sha256: sha.toString('hex'),
    b64: sha.toString('base64'),
    start: Number(window.start),
    end: Number(window.end),
  };
}

/**
 * The capture-result report a host prints after a successful capture of one file (`size`
 * bytes, 42 packets, none dropped) on ens5; `extra` adds or replaces fields (`tools`,
 * `lookback`, …).
 */
export function hostReport(
  captureId: string,
  instanceId: string,
  file: HostUpload,
  size: number,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    tapline: 'capture-result',
    version: 1,
    captureId,
    instanceId,
    status: 'success',
    interface: 'ens5',
    started: 1795423200,
    ended: 1795423261,
    files: [
      {
        key: file.key,
        versionId: file.versionId,
        size,
        sha256: file.sha256,
        s3ChecksumSha256: file.b64,
        lookback: false,
        start: file.start,
        end: file.end,
      },
    ],
    fileCount: 1,
    bytes: size,
    packetsCaptured: 42,
    packetsReceivedByFilter: 42,
    packetsDroppedByKernel: 0,
    unsent: [],
    errors: [],
    ...extra,
  };
}
