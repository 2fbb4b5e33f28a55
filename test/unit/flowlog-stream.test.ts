import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CorruptFlowLogError } from '../../shared/errors.ts';
import { FlowScanner } from '../../shared/flowlogs/scanner.ts';
import { coalesce, releaseChunk, scanStream } from '../../shared/flowlogs/sources/s3.ts';
import { defaultRules } from '../../shared/rules/config.ts';
import { RuleEngine } from '../../shared/rules/engine.ts';
import { flowLogFixtures } from '../support/flowlog-inputs.ts';

// scanStream is the S3 object / CLI path: socket-sized chunks → pieces for zlib → scanner.

async function* chunked(bytes: Buffer, sizes: number[]): AsyncGenerator<Buffer> {
  let at = 0;
  for (let i = 0; at < bytes.length; i++) {
    const n = Math.max(1, sizes.length > 0 ? sizes[i % sizes.length]! : bytes.length);
    yield bytes.subarray(at, at + n);
    at += n;
  }
}

async function collect(source: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const piece of source) out.push(piece);
  return out;
}

function scanWhole(text: Buffer) {
  const engine = new RuleEngine(defaultRules());
  const scanner = new FlowScanner(engine, { header: 'auto' });
  scanner.push(text);
  return { stats: scanner.end(), findings: engine.finish() };
}

async function scanChunks(source: AsyncIterable<Buffer>, pieceBytes?: number) {
  const engine = new RuleEngine(defaultRules());
  const scanner = new FlowScanner(engine, { header: 'auto' });
  const stream = await scanStream(source, scanner, pieceBytes);
  return { stats: scanner.end(), findings: engine.finish(), stream };
}

describe('coalesce (zlib input pieces)', () => {
  it('keeps every byte in order; pieces reach the minimum except the last', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 5000 }),
        fc.array(fc.integer({ min: 1, max: 700 }), { maxLength: 20 }),
        fc.integer({ min: 1, max: 1500 }),
        async (data, sizes, min) => {
          const bytes = Buffer.from(data);
          const pieces = await collect(coalesce(chunked(bytes, sizes), min));
          expect(Buffer.concat(pieces).equals(bytes)).toBe(true);
          for (const piece of pieces.slice(0, -1)) expect(piece.length).toBeGreaterThanOrEqual(min);
          expect(pieces.every((p) => p.length > 0)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('passes a chunk that is already big enough through without copying', async () => {
    const big = Buffer.alloc(64, 1);
    async function* one() {
      yield big;
    }
    const [piece] = await collect(coalesce(one(), 32));
    expect(piece).toBe(big);
  });
});

describe('scanStream over socket-sized chunks', () => {
  const text = Buffer.from(flowLogFixtures().join(''));

  it('gzip in small chunks (one byte first, several gzip members) reads like the plain text', async () => {
    const whole = scanWhole(text);
    expect(whole.stats.records).toBeGreaterThan(100);
    const half = text.lastIndexOf(10, text.length >> 1) + 1;
    const members = Buffer.concat([
      gzipSync(text.subarray(0, half)),
      gzipSync(text.subarray(half)),
    ]);
    for (const [bytes, sizes, piece] of [
      [gzipSync(text), [16_384], undefined],
      [gzipSync(text), [1, 7, 300], undefined],
      [members, [4096, 13], undefined],
      [text, [333], undefined],
      // zlib fed many small pieces, cut anywhere (also across the members' boundary)
      [gzipSync(text), [1, 7, 300], 100],
      [members, [4096, 13], 777],
    ] as const) {
      const { stream, ...streamed } = await scanChunks(chunked(bytes, [...sizes]), piece);
      expect(stream.gzip).toBe(bytes !== text);
      expect(streamed.stats).toEqual(whole.stats);
      expect(streamed.findings).toEqual(whole.findings);
    }
  });

  it('frees full zlib chunks after scanning them and still reads every record (4 MiB inflated)', async () => {
    const header = text.subarray(0, text.indexOf(10) + 1);
    const body = Buffer.from(flowLogFixtures()[0]!.split('\n').slice(1).join('\n'));
    const copies: Buffer[] = [header];
    for (let size = 0; size < 4 << 20; size += body.length) copies.push(body);
    const big = Buffer.concat(copies);
    const whole = scanWhole(big);
    const { stream, ...streamed } = await scanChunks(chunked(gzipSync(big), [65_536]));
    expect(stream.released).toBeGreaterThanOrEqual(3);
    expect(stream.chunks).toBeGreaterThan(stream.released - 1);
    expect(streamed).toEqual(whole);
  });

  it('releaseChunk frees only a chunk that is the whole of its buffer', () => {
    const own = Buffer.allocUnsafeSlow(4096).fill(7);
    const slice = Buffer.allocUnsafeSlow(4096).fill(7).subarray(0, 100);
    const pooled = Buffer.from('a small pooled buffer');
    expect(releaseChunk(slice)).toBe(false);
    expect(slice[99]).toBe(7);
    expect(releaseChunk(pooled)).toBe(false);
    expect(pooled.toString()).toBe('a small pooled buffer');
    expect(releaseChunk(own)).toBe(true);
    expect(own.buffer.byteLength).toBe(0);
  });

  it('a damaged or truncated gzip stream is a CorruptFlowLogError, not an early end', async () => {
    const gz = gzipSync(text);
    gz[gz.length >> 1] ^= 0xff;
    await expect(scanChunks(chunked(gz, [1000]))).rejects.toThrow(CorruptFlowLogError);
    await expect(scanChunks(chunked(gzipSync(text).subarray(0, 500), [100]))).rejects.toThrow(
      CorruptFlowLogError,
    );
    const corrupt = Buffer.concat([Buffer.from([0x1f, 0x8b]), Buffer.from('not deflate at all')]);
    await expect(scanChunks(chunked(corrupt, [7]))).rejects.toMatchObject({
      code: 'FLOW_LOG_CORRUPT',
    });
  });

  it('a failing source is passed on as it is (it may be worth a retry)', async () => {
    async function* failing(): AsyncGenerator<Buffer> {
      yield gzipSync(text).subarray(0, 300);
      throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    }
    await expect(scanChunks(failing())).rejects.toMatchObject({ code: 'ECONNRESET' });
  });
});
