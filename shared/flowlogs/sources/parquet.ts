import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  type AsyncBuffer,
  type Compressors,
  parquetMetadataAsync,
  parquetReadObjects,
  parquetSchema,
} from 'hyparquet';
import { CorruptFlowLogError, FlowLogFormatError } from '../../errors.ts';
import { normalizeFieldName, parseFlowLogFormat } from '../format.ts';
import type { FlowScanner } from '../scanner.ts';

/**
 * Parquet flow logs (S3 delivery with FileFormat parquet): read with hyparquet over an
 * AsyncBuffer backed by S3 ranged GETs, so only the footer and the column chunks are fetched,
 * never the whole object at once. AWS compresses the pages with GZIP; Node's zlib inflates them.
 * Rows are read one row group at a time and handed to the same scanner as text records.
 */

export const parquetCompressors: Compressors = {
  GZIP: (input: Uint8Array) => new Uint8Array(gunzipSync(input)),
};

/** An AsyncBuffer over one S3 object: every slice is one ranged GET. */
export function s3AsyncBuffer(
  s3: S3Client,
  ref: { bucket: string; key: string; versionId?: string; size: number },
): AsyncBuffer & { requests: number } {
  const buffer = {
    byteLength: ref.size,
    requests: 0,
    async slice(start: number, end?: number): Promise<ArrayBuffer> {
      const last = (end ?? ref.size) - 1;
      if (last < start) return new ArrayBuffer(0);
      buffer.requests += 1;
      const out = await s3.send(
        new GetObjectCommand({
          Bucket: ref.bucket,
          Key: ref.key,
          Range: `bytes=${start}-${last}`,
          ...(ref.versionId ? { VersionId: ref.versionId } : {}),
        }),
      );
      const bytes = await out.Body!.transformToByteArray();
      return bytes.buffer.slice(
        bytes.byteOffset,
        bytes.byteOffset + bytes.byteLength,
      ) as ArrayBuffer;
    },
  };
  return buffer;
}

function cell(v: unknown): string {
  if (v === null || v === undefined || v === '') return '-';
  if (typeof v === 'bigint' || typeof v === 'number') return String(v);
  const s = String(v);
  // a value with whitespace would shift every later field: keep records one token per field
  return /\s/.test(s) ? s.replace(/\s+/g, '_') : s;
}

/**
 * The AsyncBuffer with its own failures marked, so that a failing source (S3 unavailable, a
 * reset socket: worth a retry) can be told from bytes the decoder rejects (never worth one).
 */
function markingSourceErrors(file: AsyncBuffer): { file: AsyncBuffer; failed: WeakSet<object> } {
  const failed = new WeakSet<object>();
  const mark = (error: unknown) => {
    if (typeof error === 'object' && error !== null) failed.add(error);
    return error;
  };
  return {
    failed,
    file: {
      byteLength: file.byteLength,
      slice(start: number, end?: number) {
        try {
          const out = file.slice(start, end);
          return out instanceof Promise
            ? out.catch((error: unknown) => Promise.reject(mark(error)))
            : out;
        } catch (error) {
          throw mark(error);
        }
      },
    },
  };
}

/** Reads a Parquet flow log from any AsyncBuffer into the scanner. */
export async function scanParquetBuffer(source: AsyncBuffer, scanner: FlowScanner): Promise<void> {
  const { file, failed } = markingSourceErrors(source);
  const fromSource = (error: unknown) =>
    typeof error === 'object' && error !== null && failed.has(error);
  let metadata: Awaited<ReturnType<typeof parquetMetadataAsync>>;
  try {
    metadata = await parquetMetadataAsync(file);
  } catch (error) {
    if (fromSource(error)) throw error;
    throw new FlowLogFormatError(`Not a readable Parquet file: ${(error as Error).message}`);
  }
  const columns = parquetSchema(metadata).children.map((c) => c.element.name);
  const format = parseFlowLogFormat(columns.map(normalizeFieldName).join(' '));
  scanner.useFormat(format);
  let rowStart = 0;
  for (const [index, group] of metadata.row_groups.entries()) {
    const rowEnd = rowStart + Number(group.num_rows);
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({
        file,
        metadata,
        rowStart,
        rowEnd,
        compressors: parquetCompressors,
      });
    } catch (error) {
      if (fromSource(error)) throw error;
      // the rows of earlier groups were read from their own pages (and their findings stand);
      // this group's bytes are damaged, or use something the reader does not support
      throw new CorruptFlowLogError(
        `cannot read Parquet row group ${index} (damaged or unsupported) after ${rowStart} rows: ${(error as Error).message}`,
        { rowGroup: index, rows: rowStart, lines: scanner.stats.lines, prefixIntact: true },
        error,
      );
    }
    for (const row of rows) scanner.pushRecord(columns.map((c) => cell(row[c])).join(' '));
    rowStart = rowEnd;
  }
}

export async function scanParquet(
  s3: S3Client,
  ref: { bucket: string; key: string; versionId?: string; size: number },
  scanner: FlowScanner,
): Promise<void> {
  await scanParquetBuffer(s3AsyncBuffer(s3, ref), scanner);
}
