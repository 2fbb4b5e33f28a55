import { writeFile } from 'node:fs';
import { join } from 'node:path';
import { makeDirectory } from '../make-directory.ts';
import type { CarveChunk, CarveSink } from './types.ts';

/** Bytes of a classic pcap global header (carved pieces ≥ 1 repeat it; strip when joining). */
export const PCAP_HEADER_BYTES = 24;

/** Bytes of carved pieces a sink holds in flight by default (on top of the decoder's budget). */
export const DEFAULT_MAX_BYTES_IN_FLIGHT = 16 * 1024 * 1024;

/**
 * A sink that runs `upload` for each carved piece with at most `concurrency` in flight and at
 * most `maxBytesInFlight` bytes of pieces held by unfinished uploads (one piece always goes,
 * however big); `write` resolves as soon as both allow the next piece, `close` waits for all
 * and rethrows the first upload failure (later writes also reject once one upload failed, so
 * the analyzer stops).
 */
export function boundedConcurrencySink(
  upload: (chunk: CarveChunk) => Promise<void>,
  concurrency = 8,
  maxBytesInFlight = DEFAULT_MAX_BYTES_IN_FLIGHT,
): CarveSink {
  const limit = Math.max(1, Math.floor(concurrency));
  const inFlight = new Set<Promise<void>>();
  let bytes = 0;
  /** Writers waiting for an upload to finish (woken on every completion; they re-check). */
  let waiting: (() => void)[] = [];
  const state: { failure?: { error: unknown } } = {};
  const rethrow = (): void => {
    if (state.failure) throw state.failure.error;
  };
  const full = () => inFlight.size >= limit || (bytes > maxBytesInFlight && inFlight.size > 0);
  return {
    async write(chunk) {
      rethrow();
      const size = chunk.pcap.byteLength;
      bytes += size;
      const done = (): void => {
        inFlight.delete(p);
        bytes -= size;
        const wake = waiting;
        waiting = [];
        for (const w of wake) w();
      };
      const p: Promise<void> = upload(chunk).then(done, (error: unknown) => {
        state.failure ??= { error };
        done();
      });
      inFlight.add(p);
      while (full()) await new Promise<void>((resolve) => waiting.push(resolve));
      rethrow();
    },
    async close() {
      await Promise.all(inFlight);
      rethrow();
    },
  };
}

/**
 * Writes `bytes` to `path` (flags 'w' or 'a'). The callback form of fs.writeFile opens, writes
 * everything and closes with plain callbacks: no FileHandle object per carved file.
 */
const writeWhole = (path: string, bytes: Uint8Array, flag: 'w' | 'a'): Promise<void> =>
  new Promise((resolve, reject) =>
    writeFile(path, bytes, { flag }, (error) => (error ? reject(error) : resolve())),
  );

/**
 * Writes each carved stream as one file in `dir` (created if missing), `concurrency` files at
 * a time: pieces of the same stream are appended to `tcp-stream-<index>.pcap` in order (the
 * repeated pcap header dropped), different streams are written in parallel.
 */
export function directoryCarveSink(dir: string, concurrency = 16): CarveSink {
  let made: Promise<unknown> | undefined;
  /** Last write of each stream still in flight, so its next piece appends after it. */
  const tails = new Map<number, Promise<void>>();
  const writeOne = async (chunk: CarveChunk): Promise<void> => {
    made ??= makeDirectory(dir);
    await made;
    const name = `tcp-stream-${String(chunk.stream.index).padStart(6, '0')}.pcap`;
    const bytes = chunk.part === 0 ? chunk.pcap : chunk.pcap.subarray(PCAP_HEADER_BYTES);
    await writeWhole(join(dir, name), bytes, chunk.part === 0 ? 'w' : 'a');
  };
  const pool = boundedConcurrencySink(async (chunk) => {
    const key = chunk.stream.index;
    const before = tails.get(key);
    const mine = (before ?? Promise.resolve()).then(() => writeOne(chunk));
    tails.set(key, mine);
    try {
      await mine;
    } finally {
      if (tails.get(key) === mine) tails.delete(key);
    }
  }, concurrency);
  return pool;
}
