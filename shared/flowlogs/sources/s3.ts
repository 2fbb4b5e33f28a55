import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { z } from 'zod';
import { CorruptFlowLogError, MalformedEventError } from '../../errors.ts';
import { peekGzip } from '../../stream-head.ts';
import type { FlowScanner } from '../scanner.ts';
import { scanParquet } from './parquet.ts';

/**
 * S3-delivered flow logs: which objects an event names (classic S3 notifications and
 * EventBridge "Object Created" events), and streaming one object into the scanner
 * (GetObject body → gunzip → line splitter; never the whole object in memory). Parquet
 * objects are read with ranged GETs (see parquet.ts).
 */

export interface S3ObjectRef {
  bucket: string;
  /** URL-decoded key, as S3 APIs take it. */
  key: string;
  /** The key exactly as the event carried it (before decoding). */
  rawKey: string;
  versionId?: string;
  size?: number;
}

const s3NotificationSchema = z.object({
  Records: z
    .array(
      z.object({
        eventSource: z.literal('aws:s3'),
        eventName: z.string(),
        s3: z.object({
          bucket: z.object({ name: z.string().min(3) }),
          object: z.object({
            key: z.string().min(1),
            size: z.number().optional(),
            versionId: z.string().optional(),
          }),
        }),
      }),
    )
    .min(1),
});

const eventBridgeSchema = z.object({
  source: z.literal('aws.s3'),
  'detail-type': z.string(),
  detail: z.object({
    bucket: z.object({ name: z.string().min(3) }),
    object: z.object({
      key: z.string().min(1),
      size: z.number().optional(),
      'version-id': z.string().optional(),
    }),
  }),
});

/** S3 event keys are URL-encoded with "+" for spaces. */
export function decodeS3Key(key: string): string {
  try {
    return decodeURIComponent(key.replaceAll('+', ' '));
  } catch {
    throw new MalformedEventError('S3 object key is not valid URL encoding', {
      key: key.slice(0, 200),
    });
  }
}

export function isS3Event(event: unknown): boolean {
  if (typeof event !== 'object' || event === null) return false;
  const e = event as Record<string, unknown>;
  return (
    e.source === 'aws.s3' ||
    e.Event === 's3:TestEvent' ||
    (Array.isArray(e.Records) &&
      (e.Records[0] as { eventSource?: unknown })?.eventSource === 'aws:s3')
  );
}

/** The objects an S3 notification or EventBridge event names (test events name none). */
export function s3ObjectsFromEvent(event: unknown): S3ObjectRef[] {
  if ((event as { Event?: unknown })?.Event === 's3:TestEvent') return [];
  const eb = eventBridgeSchema.safeParse(event);
  if (eb.success) {
    if (eb.data['detail-type'] !== 'Object Created') return [];
    const o = eb.data.detail.object;
    return [
      {
        bucket: eb.data.detail.bucket.name,
        key: decodeS3Key(o.key),
        rawKey: o.key,
        ...(o['version-id'] ? { versionId: o['version-id'] } : {}),
        ...(o.size !== undefined ? { size: o.size } : {}),
      },
    ];
  }
  const n = s3NotificationSchema.safeParse(event);
  if (n.success) {
    return n.data.Records.filter((r) => r.eventName.startsWith('ObjectCreated')).map((r) => ({
      bucket: r.s3.bucket.name,
      key: decodeS3Key(r.s3.object.key),
      rawKey: r.s3.object.key,
      ...(r.s3.object.versionId ? { versionId: r.s3.object.versionId } : {}),
      ...(r.s3.object.size !== undefined ? { size: r.s3.object.size } : {}),
    }));
  }
  throw new MalformedEventError('Not an S3 notification or EventBridge S3 event', {
    keys: typeof event === 'object' && event !== null ? Object.keys(event).slice(0, 10) : [],
  });
}

export function isParquetKey(key: string): boolean {
  return /\.parquet(\.gz)?$/i.test(key);
}

/** Chunks as Buffers (what the scanner and zlib take); a Uint8Array is copied, as its source
 * may reuse it. */
async function* asBuffers(source: AsyncIterable<Buffer | Uint8Array>): AsyncGenerator<Buffer> {
  for await (const c of source) yield Buffer.isBuffer(c) ? c : Buffer.from(c);
}

/**
 * Compressed input is handed to zlib in pieces of at least this size. zlib returns a short
 * output chunk at the end of every input piece and waits for the main thread to give it the
 * next one; with S3's 16–64 KiB socket chunks that stall happens thousands of times per object.
 * Measured on the 2 M-record bench file: a 64 KiB feed 2.03 s, coalesced 1.68 s.
 */
export const GZIP_INPUT_PIECE = 8 << 20;

/** The chunks of a byte stream joined into pieces of at least `min` bytes (the last may be
 * shorter). */
export async function* coalesce(
  source: AsyncIterable<Buffer>,
  min: number,
): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of source) {
    if (size === 0 && chunk.length >= min) {
      yield chunk;
      continue;
    }
    parts.push(chunk);
    size += chunk.length;
    if (size >= min) {
      yield Buffer.concat(parts, size);
      parts = [];
      size = 0;
    }
  }
  if (size > 0) yield Buffer.concat(parts, size);
}

/**
 * Frees the memory of a chunk the scanner is done with, when the chunk is the whole of its
 * ArrayBuffer (zlib's full 1 MiB output chunks; zlib allocates a new buffer after each full
 * one and never writes to it again, and a chunk a stream has emitted belongs to its reader).
 * V8 counts those buffers as external memory and runs a mark-compact for every ~64 MB of it
 * until they are collected: about 8 per 2 M-record batch, about 3 once freed here. The scanner
 * keeps nothing of a chunk after `push` (it copies a partial last line and evidence). Slices of
 * a larger buffer (zlib's short chunks share theirs with the next output) are left alone.
 */
export function releaseChunk(chunk: Buffer): boolean {
  const buffer = chunk.buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer };
  if (
    chunk.byteOffset !== 0 ||
    chunk.byteLength !== buffer.byteLength ||
    !(buffer instanceof ArrayBuffer) ||
    typeof buffer.transfer !== 'function'
  )
    return false;
  buffer.transfer(0);
  return true;
}

/** What scanStream saw: whether the stream was gzip, and its inflated chunks. */
export interface StreamScan {
  gzip: boolean;
  /** Inflated chunks handed to the scanner, and how many of them were freed right after. */
  chunks: number;
  released: number;
}

/**
 * Feeds a byte stream into the scanner, inflating it when it starts with the gzip magic
 * (flow-log objects are `.log.gz`; plain text is accepted too; concatenated gzip members are
 * read in full). Chunk by chunk with back-pressure: inflation runs on libuv's thread pool while
 * the previous chunk is scanned. A damaged stream rejects and the source is closed.
 */
export async function scanStream(
  body: AsyncIterable<Buffer | Uint8Array>,
  scanner: FlowScanner,
  pieceBytes = GZIP_INPUT_PIECE,
): Promise<StreamScan> {
  const result: StreamScan = { gzip: false, chunks: 0, released: 0 };
  const peeked = await peekGzip(body);
  if (peeked.empty) {
    await peeked.stream.return(undefined);
    return result;
  }
  result.gzip = peeked.gzip;
  const stream = asBuffers(peeked.stream);
  if (!result.gzip) {
    for await (const chunk of stream) scanner.push(chunk);
    return result;
  }
  try {
    await pipeline(
      Readable.from(coalesce(stream, pieceBytes), { objectMode: false }),
      createGunzip({ chunkSize: 1 << 20 }),
      async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) {
          scanner.push(chunk);
          result.chunks += 1;
          if (releaseChunk(chunk)) result.released += 1;
        }
      },
    );
  } catch (error) {
    // zlib's own errors mean the bytes are bad; anything else (the source failing) is passed
    // on as it is. Z_BUF_ERROR ("unexpected end of file"): the object was cut short, and what
    // was inflated before the cut is exactly what was written (prefixIntact). Z_DATA_ERROR:
    // the bytes were altered somewhere, and zlib often notices only at the end (the CRC), after
    // inflating altered but well-formed records: nothing read from the stream can be trusted.
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('Z_')) {
      const cut = code === 'Z_BUF_ERROR';
      const lines = scanner.stats.lines;
      throw new CorruptFlowLogError(
        cut
          ? `gzip stream cut short after ${lines} lines: ${(error as Error).message}`
          : `damaged gzip stream (${(error as Error).message}): its contents cannot be trusted`,
        { zlibCode: code, lines, prefixIntact: cut },
        error,
      );
    }
    throw error;
  }
  return result;
}

async function getBody(s3: S3Client, ref: S3ObjectRef, key: string): Promise<Readable> {
  const out = await s3.send(
    new GetObjectCommand({
      Bucket: ref.bucket,
      Key: key,
      ...(ref.versionId ? { VersionId: ref.versionId } : {}),
    }),
  );
  return out.Body as Readable;
}

/** Streams one S3 flow-log object (text/gzip or Parquet) into the scanner. */
export async function scanS3Object(
  s3: S3Client,
  ref: S3ObjectRef,
  scanner: FlowScanner,
): Promise<void> {
  if (isParquetKey(ref.key)) {
    const size =
      ref.size ??
      Number(
        (
          await s3.send(
            new HeadObjectCommand({
              Bucket: ref.bucket,
              Key: ref.key,
              // the size of the version the event named, which the ranged GETs read
              ...(ref.versionId ? { VersionId: ref.versionId } : {}),
            }),
          )
        ).ContentLength,
      );
    await scanParquet(s3, { ...ref, size }, scanner);
    return;
  }
  let body: Readable;
  try {
    body = await getBody(s3, ref, ref.key);
  } catch (error) {
    // an event producer that did not encode the key: try it exactly as given
    if ((error as { name?: string }).name === 'NoSuchKey' && ref.rawKey !== ref.key) {
      body = await getBody(s3, ref, ref.rawKey);
    } else {
      throw error;
    }
  }
  await scanStream(body, scanner);
}
