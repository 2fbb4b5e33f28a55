import { gzipSync } from 'node:zlib';
import { parquetWriteBuffer } from 'hyparquet-writer';

/** Flow-log fields AWS writes as 32-bit integers in Parquet delivery. */
export const PARQUET_INT32_FIELDS = [
  'version',
  'srcport',
  'dstport',
  'protocol',
  'tcp-flags',
  'traffic-path',
] as const;

/** Flow-log fields AWS writes as 64-bit integers in Parquet delivery. */
export const PARQUET_INT64_FIELDS = ['packets', 'bytes', 'start', 'end'] as const;

/**
 * A text flow log (header line, then records) as a Parquet file with GZIP pages, the way
 * S3 delivery writes it: AWS's column names (underscores for dashes), `-` as null, the numeric
 * fields as integers. `int32Fields` are written as INT32 (default: as AWS does), every other
 * numeric field as INT64; the rest are strings.
 */
export function flowLogParquet(
  text: string,
  options: { int32Fields?: readonly string[]; rowGroupSize?: number } = {},
): Buffer {
  const int32 = new Set<string>(options.int32Fields ?? PARQUET_INT32_FIELDS);
  const numeric = new Set<string>([...PARQUET_INT32_FIELDS, ...PARQUET_INT64_FIELDS]);
  const [header, ...records] = text.trim().split('\n');
  const rows = records.map((r) => r.split(' '));
  const columnData = header!.split(' ').map((f, i) => {
    const type: 'INT32' | 'INT64' | 'STRING' = int32.has(f)
      ? 'INT32'
      : numeric.has(f)
        ? 'INT64'
        : 'STRING';
    const value = { INT32: Number, INT64: BigInt, STRING: String }[type];
    return {
      name: f.replaceAll('-', '_'),
      type,
      data: rows.map((r) => (r[i] === '-' ? null : value(r[i]!))),
    };
  });
  return Buffer.from(
    parquetWriteBuffer({
      columnData,
      codec: 'GZIP',
      compressors: { GZIP: (input: Uint8Array) => new Uint8Array(gzipSync(input)) },
      ...(options.rowGroupSize === undefined ? {} : { rowGroupSize: options.rowGroupSize }),
    }),
  );
}
