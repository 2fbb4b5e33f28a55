import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CarveChunk, CarveSink } from './types.ts';

/** Bytes of a classic pcap global header (carved pieces ≥ 1 repeat it; strip when joining). */
export const PCAP_HEADER_BYTES = 24;

/**
 * A sink that runs `upload` for each carved piece with at most `concurrency` in flight;
 * `write` resolves as soon as a slot is free, `close` waits for all and rethrows the first
 * upload failure (later writes also reject once one upload failed, so the analyzer stops).
 */
export function boundedConcurrencySink(
  upload: (chunk: CarveChunk) => Promise<void>,
  concurrency = 8,
): CarveSink {
  const limit = Math.max(1, Math.floor(concurrency));
  const inFlight = new Set<Promise<void>>();
  const state: { failure?: { error: unknown } } = {};
  const rethrow = (): void => {
    if (state.failure) throw state.failure.error;
  };
  return {
    async write(chunk) {
      rethrow();
      const p: Promise<void> = upload(chunk).then(
        () => {
          inFlight.delete(p);
        },
        (error: unknown) => {
          inFlight.delete(p);
          state.failure ??= { error };
        },
      );
      inFlight.add(p);
      while (inFlight.size >= limit) await Promise.race(inFlight);
      rethrow();
    },
    async close() {
      await Promise.all(inFlight);
      rethrow();
    },
  };
}

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
    made ??= mkdir(dir, { recursive: true });
    await made;
    const name = `tcp-stream-${String(chunk.stream.index).padStart(6, '0')}.pcap`;
    const bytes = chunk.part === 0 ? chunk.pcap : chunk.pcap.subarray(PCAP_HEADER_BYTES);
    if (chunk.part === 0) {
      await writeFile(join(dir, name), bytes);
    } else {
      const file = await open(join(dir, name), 'a');
      try {
        await file.write(bytes);
      } finally {
        await file.close();
      }
    }
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
