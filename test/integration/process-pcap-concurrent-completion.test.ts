/**
 * Two deliveries of one S3 event run at the same time; between the two, track-capture rewrites
 * the capture manifest (it does so on every state change, typically just as the host's uploads
 * land). The second delivery's summary then differs from the first one's. Once the first
 * delivery's completion record exists, its result set is final: the second must not replace a
 * result object the completion record vouches for (Athena reads the latest version, which would
 * then disagree with the completion record, and the file would have two result versions).
 */
import { describe, expect, it } from 'vitest';
import { processPcapObject } from '../../shared/processing/index.ts';
import {
  coreDeps,
  corpusFile,
  getJson,
  INSTANCE,
  putCaptureManifest,
} from '../fixtures/processing/stack.ts';
import { captureResultVersions, uploadPcapForProcessing } from '../support/pcap-results.ts';
import { processingStackBeforeAll } from '../support/processing-stack.ts';
import { interceptedS3 } from '../support/s3-interception.ts';

const stack = processingStackBeforeAll();

describe('concurrent duplicate deliveries across a manifest update', () => {
  it('leave exactly one version of every result object, the one the completion record pins', async () => {
    const up = await uploadPcapForProcessing(
      stack,
      'manifest-race.pcap',
      await corpusFile('tls_handshake.pcap'),
    );
    // Delivery B starts (its duplicate check finds nothing yet), then stalls until A is done.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let headsOnCompletion = 0;
    const stalling = interceptedS3(stack.clients.s3, async (name, input, send) => {
      if (name === 'HeadObjectCommand' && input.Key === up.layout.completion) {
        headsOnCompletion += 1;
        if (headsOnCompletion === 1) {
          try {
            return await send();
          } finally {
            await gate;
          }
        }
      }
      return send();
    });
    const deliveryB = processPcapObject(up, coreDeps(stack, { s3: stalling }));
    while (headsOnCompletion === 0) await new Promise((r) => setTimeout(r, 10));

    const deliveryA = await processPcapObject(up, coreDeps(stack));
    expect(deliveryA.status).toBe('processed');
    // track-capture records the host's result in the meantime.
    await putCaptureManifest(stack, up.cap, {
      captureId: up.cap,
      state: 'complete',
      hosts: {
        [INSTANCE]: {
          status: 'success',
          files: [{ key: up.key, versionId: up.versionId, sha256: up.sha256 }],
          packetsCaptured: 900,
          packetsDroppedByKernel: 7,
          errors: [],
        },
      },
    });
    release();
    const b = await deliveryB;

    expect(b.status).toBe('completed-concurrently');
    const versions = await captureResultVersions(stack, up.cap);
    expect(versions.size).toBe(7); // completion record + 6 tables
    for (const [key, n] of versions) expect(n, key).toBe(1);
    const record = await getJson(stack, up.layout.completion);
    const summaryRow = await getJson(stack, up.layout.tables.summary);
    expect(summaryRow).toEqual(record.summary);
  });
});
