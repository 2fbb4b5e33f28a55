import type { AnomalyKind, AnomalySample } from './types.ts';

/**
 * Counts typed anomalies and keeps the first few samples of each kind. The reader and the
 * decoders set `packetIndex`/`offset` before decoding a record so samples say where.
 */
export class AnomalyLog {
  readonly counts: Record<string, number> = Object.create(null);
  readonly samples: AnomalySample[] = [];
  packetIndex = 0;
  offset = 0;
  readonly #perKind: number;

  constructor(samplesPerKind = 5) {
    this.#perKind = samplesPerKind;
  }

  add(kind: AnomalyKind, detail: string | (() => string) = ''): void {
    const n = (this.counts[kind] ?? 0) + 1;
    this.counts[kind] = n;
    if (n <= this.#perKind) {
      this.samples.push({
        kind,
        packetIndex: this.packetIndex,
        offset: this.offset,
        detail: typeof detail === 'function' ? detail() : detail,
      });
    }
  }

  toJSON(): Record<string, number> {
    return { ...this.counts };
  }
}
