import { z } from 'zod';
import { MalformedEventError } from '../errors.ts';

/**
 * The body of one SQS message from the evidence bucket's notification: either S3's
 * `s3:TestEvent` (sent once when the notification is configured) or an S3 event notification
 * with `Records`. Keys arrive URL-encoded (`+` for space, `%xx`), and are decoded here.
 */

/** One object the processor is asked to look at, with its key decoded. */
export interface PcapObjectRef {
  bucket: string;
  key: string;
  versionId?: string | undefined;
  size?: number | undefined;
  eventName?: string | undefined;
  eventTime?: string | undefined;
}

export interface SkippedObject {
  bucket: string;
  key: string;
  eventName: string;
  reason: 'outside-pcaps-prefix' | 'not-object-created';
}

export type ParsedS3Message =
  | { kind: 'test-event'; bucket: string | undefined }
  | { kind: 'objects'; objects: PcapObjectRef[]; skipped: SkippedObject[] };

export const PCAP_PREFIX = 'pcaps/';

const testEventSchema = z.object({
  Event: z.literal('s3:TestEvent'),
  Bucket: z.string().optional(),
  Service: z.string().optional(),
});

const recordSchema = z.object({
  eventSource: z.literal('aws:s3'),
  eventName: z.string().min(1).max(128),
  eventTime: z.string().max(64).optional(),
  s3: z.object({
    bucket: z.object({ name: z.string().min(3).max(63) }),
    object: z.object({
      key: z.string().min(1).max(4096),
      size: z.number().int().min(0).optional(),
      versionId: z.string().min(1).max(1024).optional(),
    }),
  }),
});

const notificationSchema = z.object({ Records: z.array(recordSchema).min(1).max(100) });

/**
 * Decodes an S3 event key: `+` is a space, `%xx` an escaped byte sequence (UTF-8).
 * A malformed escape is a MalformedEventError, never a silently different key.
 */
export function decodeS3Key(encoded: string): string {
  try {
    return decodeURIComponent(encoded.replace(/\+/g, ' '));
  } catch (cause) {
    throw new MalformedEventError(
      'S3 event object key is not valid URL encoding',
      { key: encoded.slice(0, 256) },
      cause,
    );
  }
}

/** Parses one SQS message body; anything that is not a TestEvent or S3 records is refused. */
export function parseS3Message(body: string): ParsedS3Message {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (cause) {
    throw new MalformedEventError(
      'SQS message body is not JSON',
      { bodyStart: body.slice(0, 120) },
      cause,
    );
  }
  const test = testEventSchema.safeParse(json);
  if (test.success) return { kind: 'test-event', bucket: test.data.Bucket };

  const parsed = notificationSchema.safeParse(json);
  if (!parsed.success) {
    throw new MalformedEventError('SQS message body is not an S3 event notification', {
      problems: parsed.error.issues.slice(0, 5).map((i) => `${i.path.join('.')}: ${i.message}`),
    });
  }
  const objects: PcapObjectRef[] = [];
  const skipped: SkippedObject[] = [];
  for (const record of parsed.data.Records) {
    const bucket = record.s3.bucket.name;
    const key = decodeS3Key(record.s3.object.key);
    if (!record.eventName.startsWith('ObjectCreated:')) {
      skipped.push({ bucket, key, eventName: record.eventName, reason: 'not-object-created' });
    } else if (!key.startsWith(PCAP_PREFIX)) {
      skipped.push({ bucket, key, eventName: record.eventName, reason: 'outside-pcaps-prefix' });
    } else {
      objects.push({
        bucket,
        key,
        versionId: record.s3.object.versionId,
        size: record.s3.object.size,
        eventName: record.eventName,
        eventTime: record.eventTime,
      });
    }
  }
  return { kind: 'objects', objects, skipped };
}
