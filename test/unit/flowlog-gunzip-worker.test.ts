import { randomBytes } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { gunzipInWorker } from '../../shared/flowlogs/gunzip-worker.ts';

async function* chunksOf(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

async function inflate(source: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const piece of gunzipInWorker(source)) parts.push(piece);
  return Buffer.concat(parts);
}

// Flow-log text that compresses like the real thing, several MiB so the worker hands over many
// pieces and the credit-based back-pressure is exercised.
const text = Buffer.from(
  Array.from(
    { length: 60_000 },
    (_, i) =>
      `2 123456789012 eni-0a1b2c3d4e5f60718 10.0.${i % 250}.${i % 200} 52.${i % 256}.1.2 ${40000 + (i % 20000)} 443 6 ${i % 90} ${i * 7} 1763880000 1763880060 ACCEPT OK`,
  ).join('\n'),
);

describe('gunzipInWorker', () => {
  it('inflates to the same bytes as zlib, whatever the input chunking', async () => {
    const gz = gzipSync(text);
    for (const size of [1 << 20, 4096, 7]) {
      const out = await inflate(chunksOf(gz, size));
      expect(out.equals(text)).toBe(true);
    }
  });

  it('reads every member of a multi-member gzip', async () => {
    const gz = Buffer.concat([gzipSync('first\n'), gzipSync('second\n'), gzipSync(text)]);
    expect((await inflate(chunksOf(gz, 1000))).equals(gunzipSync(gz))).toBe(true);
  });

  it('rejects a damaged stream with zlib error codes', async () => {
    const gz = gzipSync(text);
    const damaged = Buffer.from(gz);
    damaged.fill(0x55, 5000, 5100);
    await expect(inflate(chunksOf(damaged, 4096))).rejects.toMatchObject({
      code: expect.stringMatching(/^Z_/),
    });
    await expect(inflate(chunksOf(gz.subarray(0, gz.length - 100), 4096))).rejects.toMatchObject({
      code: 'Z_BUF_ERROR',
    });
    await expect(inflate(chunksOf(randomBytes(64), 64))).rejects.toMatchObject({
      code: expect.stringMatching(/^Z_/),
    });
  });

  it('passes a source error on and stops', async () => {
    async function* failing(): AsyncGenerator<Buffer> {
      yield gzipSync(text).subarray(0, 1000);
      throw new Error('connection reset');
    }
    await expect(inflate(failing())).rejects.toThrow('connection reset');
  });

  it('closes the source when the consumer stops early', async () => {
    let closed = false;
    async function* source(): AsyncGenerator<Buffer> {
      try {
        yield* chunksOf(gzipSync(text), 1024);
      } finally {
        closed = true;
      }
    }
    for await (const piece of gunzipInWorker(source())) {
      expect(piece.length).toBeGreaterThan(0);
      break;
    }
    expect(closed).toBe(true);
  });
});
