import { constants, gunzipSync, gzipSync } from 'node:zlib';
import { parquetMetadata } from 'hyparquet';
import { describe, expect, it } from 'vitest';
import { detectBatch, type FlowBatch } from '../../shared/detection/detect.ts';
import { CorruptFlowLogError, FlowLogFormatError } from '../../shared/errors.ts';
import { CUT_BY_DAMAGE, FlowScanner } from '../../shared/flowlogs/scanner.ts';
import { scanParquetBuffer } from '../../shared/flowlogs/sources/parquet.ts';
import { scanStream } from '../../shared/flowlogs/sources/s3.ts';
import { defaultRules } from '../../shared/rules/config.ts';
import { flowLogFixture, LAB_REAL_FINGERPRINTS } from '../support/flowlog-inputs.ts';
import { flowLogParquet } from '../support/flowlog-parquet.ts';

// A flow-log object cut short (a truncated upload) or with an unreadable Parquet row group loses
// only what comes after the damage: the records before it are exactly what was written, and so
// are their findings. Altered gzip bytes are different: zlib may inflate altered records for a
// long way before the CRC gives it away, so nothing read from such a stream is trusted.

const lab = flowLogFixture('lab-real-v5.log');

/** The lab records (every finding in the first 156 lines), then `n` benign replies. */
function labThenReplies(n: number): string {
  const replies: string[] = [];
  for (let i = 0; i < n; i++) {
    // server → client replies (SYN-ACK flags): no rule fires on them
    replies.push(
      `5 123456789012 eni-0202000000000001a i-0202000000000001a 10.9.0.1 10.9.0.2 443 ${1024 + (i % 60000)} 6 ${1 + (i % 9)} ${40 + i} 1795424300 1795424301 ACCEPT OK 18 ingress -`,
    );
  }
  return `${lab.trimEnd()}\n${replies.join('\n')}\n`;
}

function batchOf(feed: FlowBatch['feed']): FlowBatch {
  return { source: 'damaged-test', header: 'auto', feed };
}

async function* pieces(bytes: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

const deps = { rules: defaultRules(), clock: () => new Date('2026-11-23T09:10:00Z') };

describe('damaged flow-log input', () => {
  it('a last line cut by the damage is counted as malformed, not read as a shorter record', () => {
    const line =
      '5 123456789012 eni-0202000000000001a i-0202000000000001a 10.9.0.1 10.9.0.2 443 5000 6 1 4000 1795424300 1795424301 ACCEPT OK 18 ingress -';
    const header = lab.slice(0, lab.indexOf('\n') + 1);
    const cut = line.slice(0, line.indexOf(' 4000') + 3); // "… 6 1 40": bytes would read 40
    const damaged = new FlowScanner({ observe() {} }, { header: 'auto' });
    damaged.push(Buffer.from(`${header}${line}\n${cut}`));
    const stats = damaged.endDamaged();
    expect(stats.records).toBe(1);
    expect(stats.malformedByReason).toEqual({ [CUT_BY_DAMAGE]: 1 });
    expect(stats.malformedSample[0]!.text).toBe(cut);
    // at a real end of input the same tail is a line like any other
    const whole = new FlowScanner({ observe() {} }, { header: 'auto' });
    whole.push(Buffer.from(`${header}${line}\n${line}`));
    expect(whole.end().records).toBe(2);
  });

  it('a truncated gzip object keeps the findings of the records before the cut, marked', async () => {
    const text = labThenReplies(60_000);
    const gz = gzipSync(text);
    const cut = gz.subarray(0, Math.floor(gz.length * 0.7));
    const { findings, report } = await detectBatch(
      batchOf(async (scanner) => {
        await scanStream(pieces(cut, 64 * 1024), scanner);
      }),
      deps,
    );
    expect(report.damaged).toBe(true);
    expect(report.error).toMatchObject({ name: 'CorruptFlowLogError', code: 'FLOW_LOG_CORRUPT' });
    // exactly the complete lines of the decodable prefix were read, and the cut one counted
    const prefix = gunzipSync(cut, { finishFlush: constants.Z_SYNC_FLUSH });
    const complete = prefix.subarray(0, prefix.lastIndexOf(0x0a) + 1);
    const completeLines = complete.toString('latin1').split('\n').length - 1;
    const cutLine = prefix.length > complete.length ? 1 : 0;
    expect(report.stats.lines).toBe(completeLines + cutLine);
    expect(findings.map((f) => f.fingerprint).sort()).toEqual(LAB_REAL_FINGERPRINTS);
    for (const f of findings) {
      expect(f.sourceDamaged).toMatch(/gzip stream cut short after \d+ lines/);
      expect(f.capture.request.reason).toMatch(/source damaged part-way/);
    }
    // most of what came before the cut was read, and nothing after it
    const total = text.split('\n').length - 2;
    expect(report.stats.records).toBeGreaterThan(total * 0.5);
    expect(report.stats.records).toBeLessThan(total);
    expect(report.stats.malformed).toBeLessThanOrEqual(1);
    expect(Object.keys(report.stats.malformedByReason)).toEqual(
      report.stats.malformed === 1 ? [CUT_BY_DAMAGE] : [],
    );
  });

  it('altered gzip bytes make the whole stream suspect: no findings, a corrupt batch', async () => {
    // A flipped bit inside the lab records: zlib keeps inflating well-formed but altered
    // records (other addresses) and notices only at the end, when the CRC does not match.
    const gz = gzipSync(labThenReplies(60_000));
    const altered = Buffer.from(gz);
    altered[289] ^= 1;
    const scanner = new FlowScanner({ observe() {} }, { header: 'auto' });
    const error = await scanStream(pieces(altered, 1 << 20), scanner).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CorruptFlowLogError);
    expect((error as CorruptFlowLogError).details).toMatchObject({
      zlibCode: 'Z_DATA_ERROR',
      prefixIntact: false,
    });
    expect((error as Error).message).toMatch(/cannot be trusted/);
    await expect(
      detectBatch(
        batchOf(async (s) => {
          await scanStream(pieces(altered, 1 << 20), s);
        }),
        deps,
      ),
    ).rejects.toMatchObject({ code: 'FLOW_LOG_CORRUPT', details: { prefixIntact: false } });
  });

  it('a failing source is not damage: detectBatch throws and the batch can be retried', async () => {
    const gz = gzipSync(labThenReplies(20_000));
    const failing = batchOf(async (scanner) => {
      async function* resetting(): AsyncGenerator<Buffer> {
        yield gz.subarray(0, gz.length >> 1);
        throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
      }
      await scanStream(resetting(), scanner);
    });
    await expect(detectBatch(failing, deps)).rejects.toMatchObject({ code: 'ECONNRESET' });
  });
});

describe('damaged Parquet flow logs', () => {
  /** The lab records in row groups of 40 rows, with the second group's first page damaged. */
  function damagedSecondGroup(): { bytes: ArrayBuffer; firstGroupRows: number } {
    const file = flowLogParquet(lab, { rowGroupSize: 40 });
    const metadata = parquetMetadata(
      file.buffer.slice(file.byteOffset, file.byteOffset + file.length) as ArrayBuffer,
    );
    expect(metadata.row_groups.length).toBeGreaterThan(2);
    for (const column of metadata.row_groups[1]!.columns) {
      const at = Number(column.meta_data!.data_page_offset);
      const size = Number(column.meta_data!.total_compressed_size);
      // keep the page header readable (its first bytes), wreck the compressed page body
      for (let k = Math.floor(size / 2); k < size; k++) file[at + k] = 0xa5;
    }
    const copy = new Uint8Array(file.length);
    copy.set(file);
    return { bytes: copy.buffer, firstGroupRows: Number(metadata.row_groups[0]!.num_rows) };
  }

  it('a damaged row group is a CorruptFlowLogError; the rows before it were read', async () => {
    const { bytes, firstGroupRows } = damagedSecondGroup();
    const scanner = new FlowScanner({ observe() {} }, { header: 'none' });
    const error = await scanParquetBuffer(bytes, scanner).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CorruptFlowLogError);
    expect((error as CorruptFlowLogError).details).toMatchObject({ rowGroup: 1, rows: 40 });
    expect(scanner.stats.records).toBe(firstGroupRows);
  });

  it('detectBatch keeps the findings of the rows before a damaged row group', async () => {
    const { bytes } = damagedSecondGroup();
    const { findings, report } = await detectBatch(
      { source: 'p', header: 'none', feed: (scanner) => scanParquetBuffer(bytes, scanner) },
      deps,
    );
    expect(report.damaged).toBe(true);
    expect(findings.length).toBeGreaterThan(0);
    for (const f of findings) {
      expect(f.sourceDamaged).toMatch(/cannot read Parquet row group 1 \(damaged or unsupported\)/);
    }
  });

  it("the source's own failures pass through untyped (worth a retry), footer or row group", async () => {
    const file = flowLogParquet(lab, { rowGroupSize: 40 });
    const whole = new Uint8Array(file).buffer;
    const reset = () => Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    let slices = 0;
    const failingAfter = (n: number) => ({
      byteLength: whole.byteLength,
      async slice(start: number, end?: number) {
        if (++slices > n) throw reset();
        return whole.slice(start, end);
      },
    });
    for (const n of [0, 3]) {
      slices = 0;
      const scanner = new FlowScanner({ observe() {} }, { header: 'none' });
      const error = await scanParquetBuffer(failingAfter(n), scanner).catch((e: unknown) => e);
      expect(error).not.toBeInstanceOf(CorruptFlowLogError);
      expect(error).not.toBeInstanceOf(FlowLogFormatError);
      expect(error).toMatchObject({ code: 'ECONNRESET' });
    }
    // and bytes that are not Parquet at all stay a format error
    const notParquet = new TextEncoder().encode('PAR1 but not really PAR1').buffer;
    await expect(
      scanParquetBuffer(notParquet, new FlowScanner({ observe() {} }, { header: 'none' })),
    ).rejects.toBeInstanceOf(FlowLogFormatError);
  });
});
