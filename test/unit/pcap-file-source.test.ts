import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readFileChunks } from '../../shared/pcap/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'tapline-file-source-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('readFileChunks (read-ahead over reused buffers)', () => {
  it.each([
    [0, 16, 4],
    [1, 16, 4],
    [15, 16, 2],
    [16, 16, 4],
    [17, 16, 3],
    [1000, 16, 4],
    [1000, 7, 2],
    [196_613, 65_536, 4],
  ])(
    '%i bytes in chunks of %i, %i buffers: every byte once, in order',
    async (size, chunk, depth) => {
      const data = Buffer.alloc(size);
      for (let i = 0; i < size; i++) data[i] = (i * 31 + 7) & 255;
      const file = join(dir, `f-${size}-${chunk}-${depth}`);
      writeFileSync(file, data);
      const h = createHash('sha256');
      let n = 0;
      let opened = -1;
      for await (const c of readFileChunks(file, chunk, (s) => (opened = s), depth)) {
        expect(c.length).toBeLessThanOrEqual(chunk);
        h.update(c);
        n += c.length;
      }
      expect(opened).toBe(size);
      expect(n).toBe(size);
      expect(h.digest('hex')).toBe(sha(data));
    },
  );

  it('stopping early closes the file without waiting for the rest', async () => {
    const file = join(dir, 'early');
    writeFileSync(file, Buffer.alloc(1 << 20, 1));
    for await (const c of readFileChunks(file, 4096)) {
      expect(c.length).toBe(4096);
      break;
    }
  });
});
