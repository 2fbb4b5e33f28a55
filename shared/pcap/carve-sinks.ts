import { mkdir, open } from 'node:fs/promises';
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
 * Writes each carved stream as one file in `dir` (created if missing): pieces of the same
 * stream are appended to `tcp-stream-<index>.pcap` (the repeated pcap header dropped).
 * Pieces of one stream arrive in order, and one at a time, so appends never interleave.
 */
export function directoryCarveSink(dir: string): CarveSink {
  let made = false;
  return {
    async write(chunk) {
      if (!made) {
        await mkdir(dir, { recursive: true });
        made = true;
      }
      const name = `tcp-stream-${String(chunk.stream.index).padStart(6, '0')}.pcap`;
      const file = await open(join(dir, name), chunk.part === 0 ? 'w' : 'a');
      try {
        const bytes = chunk.part === 0 ? chunk.pcap : chunk.pcap.subarray(PCAP_HEADER_BYTES);
        await file.write(bytes);
      } finally {
        await file.close();
      }
    },
  };
}
