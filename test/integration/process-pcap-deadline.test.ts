/**
 * A pcap whose download stalls (a connection that stops sending; the SDK clients have no
 * socket timeout) or that takes longer than the invocation has left must fail its own SQS
 * record, with a typed error that says why, before Lambda's timeout: a timeout fails the whole
 * batch (no partial response), so one bad file would take the others' results down with it.
 */
import { Readable } from 'node:stream';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { TaplineError } from '../../shared/errors.ts';
import { processPcapObject } from '../../shared/processing/index.ts';
import {
  coreDeps,
  corpusFile,
  getJson,
  lambdaContext,
  sqsEvent,
} from '../fixtures/processing/stack.ts';
import { uploadPcapForProcessing } from '../support/pcap-results.ts';
import { processingStackBeforeAll } from '../support/processing-stack.ts';
import { interceptedS3 } from '../support/s3-interception.ts';

const stack = processingStackBeforeAll();

/** An S3 client whose GetObject of `key` sends its first bytes, then nothing, forever. */
function stallingDownloadOf(key: string) {
  return interceptedS3(stack.clients.s3, async (name, input, send) => {
    if (name !== 'GetObjectCommand' || input.Key !== key) return send();
    const real = await send();
    const bytes = Buffer.from(await real.Body.transformToByteArray());
    const body = new Readable({ read() {} });
    body.push(bytes.subarray(0, 200));
    return { ...real, Body: body };
  });
}

/** The S3 event message S3 sends for an upload (with its version, as real S3 does). */
function s3Message(id: string, key: string, versionId: string, size: number) {
  return {
    MessageId: id,
    ReceiptHandle: id,
    Body: JSON.stringify({
      Records: [
        {
          eventSource: 'aws:s3',
          eventName: 'ObjectCreated:Put',
          eventTime: new Date().toISOString(),
          s3: { bucket: { name: stack.bucket }, object: { key, size, versionId } },
        },
      ],
    }),
  };
}

/** Settles with the promise's outcome, or 'hung' after `ms`. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | 'hung'> {
  return Promise.race([promise, new Promise<'hung'>((r) => setTimeout(() => r('hung'), ms))]);
}

describe('a pcap that cannot be read in the time left', () => {
  it('fails with a typed error at the deadline instead of hanging', async () => {
    const up = await uploadPcapForProcessing(
      stack,
      'stalled.pcap',
      await corpusFile('tls_handshake.pcap'),
    );
    const deps = {
      ...coreDeps(stack, { s3: stallingDownloadOf(up.key) }),
      deadline: Date.now() + 800,
    };

    const outcome = await within(
      processPcapObject(up, deps).then(
        () => 'processed',
        (error: unknown) => error,
      ),
      15_000,
    );

    expect(outcome).toBeInstanceOf(TaplineError);
    expect((outcome as TaplineError).code).toBe('PROCESSING_DEADLINE');
    expect((outcome as TaplineError).message).toContain(up.key);
  });

  it('fails only the stalled record of a batch, before the invocation runs out', async () => {
    const good = await uploadPcapForProcessing(
      stack,
      'good.pcap',
      await corpusFile('dns_packets.pcap'),
    );
    const stalled = await uploadPcapForProcessing(
      stack,
      'stalled.pcap',
      await corpusFile('tls_handshake.pcap'),
    );
    // Process the handler of functions/process-pcap.ts with the stack's deps.
    process.env.POWERTOOLS_METRICS_DISABLED = 'true';
    const { makeHandler } = await import('../../functions/process-pcap.ts');
    const handler = makeHandler(
      async () => coreDeps(stack, { s3: stallingDownloadOf(stalled.key) }),
      // the good record has until 8 s (20 s left minus the 12 s reserve) on a busy CI runner;
      // the stalled one is failed there, well before the invocation would end
      { minRemainingMs: 1_000, reserveMs: 12_000 },
    );
    const endsAt = Date.now() + 20_000;
    const context = { ...lambdaContext(), getRemainingTimeInMillis: () => endsAt - Date.now() };
    const event: SQSEvent = sqsEvent(stack, [
      s3Message('good', good.key, good.versionId, good.bytes.length),
      s3Message('stalled', stalled.key, stalled.versionId, stalled.bytes.length),
    ]);

    const response = await within(handler(event, context), 30_000);

    expect(response).not.toBe('hung');
    expect(Date.now()).toBeLessThan(endsAt);
    expect((response as SQSBatchResponse).batchItemFailures).toEqual([
      { itemIdentifier: 'stalled' },
    ]);
    expect((await getJson(stack, good.layout.completion)).integrity.verdict).toBe('verified');
  });
});
