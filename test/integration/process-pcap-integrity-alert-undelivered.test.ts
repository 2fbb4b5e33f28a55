/**
 * An integrity failure must be notified, loudly. publishEvent never throws (it reports which
 * channels failed); when the "Pcap Integrity Failed" alert reached neither EventBridge nor SNS,
 * the job must not write its completion record (which would make every re-delivery a no-op and
 * the alert lost for good): the record fails, SQS retries it (then the DLQ alarm fires), and
 * the retry sends the alert.
 */
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { TaplineError } from '../../shared/errors.ts';
import { processPcapObject } from '../../shared/processing/index.ts';
import {
  captureId,
  coreDeps,
  corpusFile,
  getJson,
  hostUpload,
  INSTANCE,
  published,
} from '../fixtures/processing/stack.ts';
import { uniqueName } from '../support/aws.ts';
import { processingStackBeforeAll } from '../support/processing-stack.ts';

const stack = processingStackBeforeAll();

async function completionExists(key: string): Promise<boolean> {
  try {
    await stack.clients.s3.send(new HeadObjectCommand({ Bucket: stack.bucket, Key: key }));
    return true;
  } catch {
    return false;
  }
}

describe('the integrity alert of a tampered pcap', () => {
  it('fails the record while the alert reaches no channel, and sends it on the retry', async () => {
    const cap = captureId();
    const key = `pcaps/${cap}/${INSTANCE}/00001-tampered.pcap`;
    const upload = await hostUpload(stack, key, await corpusFile('tls_handshake.pcap'), {
      hostHash: 'ab'.repeat(32),
    });
    const ref = { bucket: stack.bucket, key, versionId: upload.versionId };
    const healthy = coreDeps(stack);
    // Both channels down: a topic and a bus that do not exist.
    const outage = coreDeps(stack, {
      notify: {
        ...healthy.notify,
        topicArn: `arn:aws:sns:us-east-1:123456789012:${uniqueName('gone')}`,
        eventBusName: uniqueName('gone'),
      },
    });

    const failed = await processPcapObject(ref, outage).then(
      (outcome) => outcome,
      (error: unknown) => error,
    );

    expect(failed).toBeInstanceOf(TaplineError);
    expect(String((failed as Error).message)).toMatch(/integrity/i);
    const layoutKey = `results/${cap}/${INSTANCE}/00001-tampered.pcap/${upload.versionId}/summary.json`;
    expect(await completionExists(layoutKey)).toBe(false);

    const retry = await processPcapObject(ref, healthy);
    expect(retry.status).toBe('processed');
    expect(retry.integrity).toBe('mismatch');
    expect(retry.notifications?.integrityFailed).toEqual({ eventBridge: 'sent', sns: 'sent' });
    const events = await published(stack, 2);
    expect(events.map((e) => e.type)).toContain('Pcap Integrity Failed');
    const record = await getJson(stack, layoutKey);
    expect(record.integrity.verdict).toBe('mismatch');
  });
});
