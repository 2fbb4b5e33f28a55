import { gunzipSync, gzipSync } from 'node:zlib';
import { z } from 'zod';
import { MalformedEventError } from '../../errors.ts';

/**
 * CloudWatch Logs subscription deliveries: `{ awslogs: { data } }` where data is base64 of gzip
 * of JSON `{ messageType, owner, logGroup, logStream, subscriptionFilters, logEvents }`.
 * CONTROL_MESSAGE deliveries (sent when a subscription is created) carry no records.
 */

/** Decompressed size limit: a delivery is at most ~1 MB compressed; JSON inflates ~10-20x. */
const MAX_INFLATED_BYTES = 64 * 1024 * 1024;

export const cloudWatchLogsEventSchema = z.object({
  awslogs: z.object({ data: z.string().min(1) }),
});

const logEventSchema = z.object({
  id: z.string().optional(),
  timestamp: z.number().optional(),
  message: z.string(),
});

export const subscriptionPayloadSchema = z.object({
  messageType: z.enum(['DATA_MESSAGE', 'CONTROL_MESSAGE']),
  owner: z.string().optional(),
  logGroup: z.string().optional(),
  logStream: z.string().optional(),
  subscriptionFilters: z.array(z.string()).optional(),
  logEvents: z.array(logEventSchema),
});

export type SubscriptionPayload = z.infer<typeof subscriptionPayloadSchema>;

export function isCloudWatchLogsEvent(event: unknown): event is { awslogs: { data: string } } {
  return cloudWatchLogsEventSchema.safeParse(event).success;
}

/** Decodes and validates one subscription delivery; MalformedEventError says what is wrong. */
export function decodeSubscriptionData(data: string): SubscriptionPayload {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(data)) {
    throw new MalformedEventError('awslogs.data is not base64', { length: data.length });
  }
  const compressed = Buffer.from(data, 'base64');
  let json: Buffer;
  try {
    json = gunzipSync(compressed, { maxOutputLength: MAX_INFLATED_BYTES });
  } catch (error) {
    throw new MalformedEventError(
      `awslogs.data is not gzip (or inflates past ${MAX_INFLATED_BYTES} bytes)`,
      { compressedBytes: compressed.length },
      error,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(json.toString('utf8'));
  } catch (error) {
    throw new MalformedEventError('awslogs.data does not hold JSON', { bytes: json.length }, error);
  }
  const result = subscriptionPayloadSchema.safeParse(parsed);
  if (!result.success) {
    throw new MalformedEventError(
      `CloudWatch Logs payload has the wrong shape: ${result.error.issues
        .slice(0, 5)
        .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
        .join('; ')}`,
    );
  }
  return result.data;
}

/** Builds a delivery the way CloudWatch Logs does (fixtures, the lab, tests). */
export function encodeSubscriptionData(payload: SubscriptionPayload): string {
  return gzipSync(Buffer.from(JSON.stringify(payload))).toString('base64');
}
