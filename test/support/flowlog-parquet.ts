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
    const values = rows.map((r) => (r[i] === '-' ? null : r[i]!));
    const name = f.replaceAll('-', '_');
    if (int32.has(f))
      return {
        name,
        type: 'INT32' as const,
        data: values.map((v) => (v === null ? null : Number(v))),
      };
    if (numeric.has(f))
      return {
        name,
        type: 'INT64' as const,
        data: values.map((v) => (v === null ? null : BigInt(v))),
      };
    return { name, type: 'STRING' as const, data: values };
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
