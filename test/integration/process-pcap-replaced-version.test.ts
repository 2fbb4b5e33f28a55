/**
 * A pcap key that the capture manifest already records (key, version, host hash) receives a new
 * object version with different bytes, uploaded with metadata and checksum that agree with the
 * new bytes. Object Lock keeps the old version but cannot stop a new one: the manifest (the
 * custody log) is the only source that still knows what the host captured, so the new version
 * must fail integrity, not pass as `verified` because the manifest names another version.
 */
import { describe, expect, it } from 'vitest';
import { processPcapObject } from '../../shared/processing/index.ts';
import {
  captureId,
  coreDeps,
  corpusFile,
  getJson,
  hostUpload,
  INSTANCE,
  putCaptureManifest,
} from '../fixtures/processing/stack.ts';
import { processingStackBeforeAll } from '../support/processing-stack.ts';

const stack = processingStackBeforeAll();

/** The manifest as track-capture writes it once the host reported: the latest version listed. */
async function writeManifest(
  cap: string,
  file: { key: string; versionId: string; sha256: string },
) {
  await putCaptureManifest(stack, cap, {
    captureId: cap,
    state: 'complete',
    hosts: {
      [INSTANCE]: {
        status: 'success',
        files: [{ ...file, size: 1, lookback: false }],
        packetsCaptured: 10,
        packetsDroppedByKernel: 0,
        errors: [],
      },
    },
  });
}

/** Processes version `versionId` of `key`: its outcome and the completion record it wrote. */
async function processVersion(key: string, versionId: string) {
  const outcome = await processPcapObject(
    { bucket: stack.bucket, key, versionId },
    coreDeps(stack),
  );
  return { outcome, record: await getJson(stack, outcome.completionKey) };
}

describe('a pcap replaced after the manifest recorded it', () => {
  it('marks the replacing version as an integrity mismatch against the manifest', async () => {
    const cap = captureId();
    const key = `pcaps/${cap}/${INSTANCE}/00001-replaced.pcap`;
    const original = await hostUpload(stack, key, await corpusFile('tls_handshake.pcap'));
    await writeManifest(cap, original);
    // Different bytes, with a host hash and an S3 checksum that agree with them.
    const replacement = await hostUpload(stack, key, await corpusFile('dns_packets.pcap'));
    expect(replacement.versionId).not.toBe(original.versionId);

    const { outcome, record } = await processVersion(key, replacement.versionId);

    expect(outcome.integrity).toBe('mismatch');
    expect(record.integrity.host.status).toBe('match');
    expect(record.integrity.s3.status).toBe('match');
    expect(record.integrity.manifest).toMatchObject({
      status: 'mismatch',
      expected: original.sha256,
    });
    expect(record.summary.integrity_verdict).toBe('mismatch');
    expect(record.integrity.problems.join('\n')).toContain(original.versionId);
  });

  it('marks a replacing version even before the manifest lists the key (another host, mid-capture)', async () => {
    // Hosts share an upload role: a compromised host can add a version to another host's key
    // while the capture is still running, before track-capture writes the manifest.
    const cap = captureId();
    const key = `pcaps/${cap}/${INSTANCE}/00002-replaced-early.pcap`;
    const original = await hostUpload(stack, key, await corpusFile('tls_handshake.pcap'));
    const replacement = await hostUpload(stack, key, await corpusFile('dns_packets.pcap'));

    const { outcome, record } = await processVersion(key, replacement.versionId);

    expect(outcome.integrity).toBe('mismatch');
    expect(record.integrity.manifest.status).toBe('not-listed');
    expect(record.integrity.versions).toMatchObject({ status: 'different-content', others: 1 });
    expect(record.integrity.problems.join('\n')).toContain(original.versionId);
    expect(record.summary.integrity_verdict).toBe('mismatch');
  });

  it('accepts a second version with the very bytes the manifest records (a retried upload)', async () => {
    const cap = captureId();
    const key = `pcaps/${cap}/${INSTANCE}/00001-retried.pcap`;
    const bytes = await corpusFile('tls_handshake.pcap');
    const first = await hostUpload(stack, key, bytes);
    await writeManifest(cap, first);
    const second = await hostUpload(stack, key, bytes);

    const { outcome, record } = await processVersion(key, second.versionId);

    expect(outcome.integrity).toBe('verified');
    expect(record.integrity.manifest).toMatchObject({ status: 'match', expected: first.sha256 });
    expect(record.integrity.versions).toMatchObject({ status: 'same-content', others: 1 });
  });
});
