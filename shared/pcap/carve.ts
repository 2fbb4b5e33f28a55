import { copyBytes } from './address.ts';
import type { AnomalyLog } from './anomalies.ts';
import { PCAP_HEADER_BYTES } from './carve-sinks.ts';
import type { CarveChunk, CarveOptions, CarveStats, StreamInfo } from './types.ts';

/**
 * One-pass per-TCP-stream carving. Each carved stream accumulates its records (16-byte
 * nanosecond record header + the captured bytes, exactly as read) in one growable buffer that
 * already starts with a pcap global header, so a flush hands the sink a complete file without
 * copying. Memory is bounded by `maxBufferedBytes` whatever the number of streams: when over,
 * closed streams are finalised first (least recently closed first), then the least recently
 * active open streams are flushed as parts. Per stream only a small fixed-size state is kept
 * (no strings): the stream's description is rebuilt from the conversation table when a piece
 * is handed out.
 */

const DEFAULT_MAX_BUFFERED = 16 * 1024 * 1024;
const DEFAULT_PART_BYTES = 4 * 1024 * 1024;
/** Closed streams are finalised once the capture clock is this far past their last packet. */
const CLOSE_GRACE_SECONDS = 5;

class StreamState {
  /** Conversation index (the stream's row in the conversation table). */
  conv: number;
  /** Timestamp of the stream's first packet (StreamInfo.start). */
  start: number;
  linkType: number;
  buf: Uint8Array | null = null;
  len = 0;
  part = 0;
  packets = 0;
  lastTs = 0;
  closed = false;
  list: 0 | 1 | 2 = 0; // 0 none, 1 open list, 2 closed list
  prev: StreamState | null = null;
  next: StreamState | null = null;

  constructor(conv: number, start: number, linkType: number) {
    this.conv = conv;
    this.start = start;
    this.linkType = linkType;
  }
}

class Lru {
  head: StreamState | null = null;
  tail: StreamState | null = null;

  remove(s: StreamState): void {
    if (s.prev) s.prev.next = s.next;
    else this.head = s.next;
    if (s.next) s.next.prev = s.prev;
    else this.tail = s.prev;
    s.prev = null;
    s.next = null;
  }

  append(s: StreamState): void {
    s.prev = this.tail;
    s.next = null;
    if (this.tail) this.tail.next = s;
    else this.head = s;
    this.tail = s;
  }
}

export function carvedFileName(index: number, part: number, single: boolean): string {
  const base = `tcp-stream-${String(index).padStart(6, '0')}`;
  return single ? `${base}.pcap` : `${base}.part-${String(part).padStart(4, '0')}.pcap`;
}

/** Who describes streams: the analyzer, from its conversation table. */
export interface StreamDescriber {
  /** `start`: the first packet's timestamp (default: the packet being decoded). */
  streamInfo(conv: number, start?: number): StreamInfo;
  /** Timestamp of the packet being decoded. */
  readonly now: number;
}

export class Carver {
  readonly ready: CarveChunk[] = [];
  readonly stats: CarveStats = {
    streamsCarved: 0,
    piecesWritten: 0,
    packetsWritten: 0,
    bytesWritten: 0,
  };
  readonly #opts: CarveOptions;
  readonly #anomalies: AnomalyLog;
  readonly #maxBuffered: number;
  readonly #partBytes: number;
  /** conversation index → state, or null when the filter declined the stream. */
  readonly #streams = new Map<number, StreamState | null>();
  readonly #open = new Lru();
  readonly #closed = new Lru();
  #buffered = 0;

  readonly #clock: Float64Array;

  /** `clock`: [seconds, nanoseconds] of the record being appended, kept by the analyzer. */
  constructor(opts: CarveOptions, anomalies: AnomalyLog, clock: Float64Array) {
    this.#clock = clock;
    this.#opts = opts;
    this.#anomalies = anomalies;
    this.#maxBuffered = Math.max(1 << 20, opts.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED);
    this.#partBytes = Math.max(
      64 * 1024,
      opts.partBytes ?? Math.min(DEFAULT_PART_BYTES, this.#maxBuffered / 4),
    );
  }

  get bufferedBytes(): number {
    return this.#buffered;
  }

  #owner: StreamDescriber | null = null;

  /** Append one record of conversation `conv` (`owner` describes streams when pieces go out). */
  packet(
    conv: number,
    owner: StreamDescriber,
    linkType: number,
    data: Uint8Array,
    off: number,
    caplen: number,
    origlen: number,
  ): void {
    let s = this.#streams.get(conv);
    if (s === undefined) {
      this.#owner = owner;
      // the filter sees the stream's description; 'all' needs none until a piece goes out
      const want =
        this.#opts.mode === 'all' ||
        (this.#opts.mode === 'streams' &&
          this.#opts.streams !== undefined &&
          safeFilter(this.#opts.streams, owner.streamInfo(conv)));
      s = want ? new StreamState(conv, owner.now, linkType) : null;
      this.#streams.set(conv, s);
      if (s) this.stats.streamsCarved++;
    }
    if (s === null) return;
    if (linkType !== s.linkType) {
      this.#anomalies.add(
        'carve-link-type-mismatch',
        () =>
          `stream ${owner.streamInfo(conv).index}: link type ${linkType} differs from ${s!.linkType}`,
      );
      return;
    }
    const recLen = 16 + caplen;
    if (s.buf === null) {
      const cap = Math.max(256, nextPow2(PCAP_HEADER_BYTES + recLen));
      s.buf = newBuffer(cap);
      writePcapHeader(s.buf, s.linkType);
      s.len = PCAP_HEADER_BYTES;
      this.#buffered += cap;
    } else if (s.len + recLen > s.buf.length) {
      const cap = nextPow2(s.len + recLen);
      const grown = newBuffer(cap);
      copyBytes(s.buf, 0, s.len, grown, 0);
      this.#buffered += cap - s.buf.length;
      s.buf = grown;
    }
    const b = s.buf;
    let o = s.len;
    const tsSec = this.#clock[0]!;
    const sec = Number.isNaN(tsSec) ? 0 : tsSec;
    writeU32le(b, o, sec >>> 0);
    writeU32le(b, o + 4, this.#clock[1]! >>> 0);
    writeU32le(b, o + 8, caplen);
    writeU32le(b, o + 12, origlen >>> 0);
    o += 16;
    copyBytes(data, off, off + caplen, b, o);
    s.len = o + caplen;
    s.packets++;
    if (sec > 0) s.lastTs = sec;
    // move to the tail of its list (most recently active)
    if (s.list === 1) this.#open.remove(s);
    else if (s.list === 2) this.#closed.remove(s);
    if (s.closed) {
      this.#closed.append(s);
      s.list = 2;
    } else {
      this.#open.append(s);
      s.list = 1;
    }
    if (s.len >= this.#partBytes) this.#flush(s, false);
    if (this.#buffered > this.#maxBuffered) this.#relieve();
  }

  /** The stream saw RST or FIN both ways: finalise it once the capture clock moves on. */
  closed(conv: number): void {
    const s = this.#streams.get(conv);
    if (!s || s.closed) return;
    s.closed = true;
    if (s.list === 1) {
      this.#open.remove(s);
      this.#closed.append(s);
      s.list = 2;
    }
  }

  /** A new stream took over this conversation's tuple: finalise the old one now. */
  replaced(conv: number): void {
    const s = this.#streams.get(conv);
    if (s) this.#flush(s, true);
    this.#streams.delete(conv);
  }

  /** Finalise closed streams idle for a while (called now and then with the capture clock). */
  sweep(nowSec: number): void {
    for (let s = this.#closed.head; s !== null; s = this.#closed.head) {
      if (nowSec - s.lastTs < CLOSE_GRACE_SECONDS) break;
      this.#flush(s, true);
    }
  }

  /** End of capture: finalise everything still buffered. */
  finish(): void {
    for (let s = this.#closed.head; s !== null; s = this.#closed.head) this.#flush(s, true);
    for (let s = this.#open.head; s !== null; s = this.#open.head) this.#flush(s, true);
  }

  #relieve(): void {
    const target = this.#maxBuffered * 0.75;
    while (this.#buffered > target) {
      const s = this.#closed.head ?? this.#open.head;
      if (s === null) break;
      this.#flush(s, s.closed);
    }
  }

  #flush(s: StreamState, final: boolean): void {
    if (s.list === 1) this.#open.remove(s);
    else if (s.list === 2) this.#closed.remove(s);
    s.list = 0;
    if (s.buf === null || s.len <= PCAP_HEADER_BYTES) {
      if (s.buf) this.#buffered -= s.buf.length;
      s.buf = null;
      return;
    }
    const pcap = s.buf.subarray(0, s.len);
    this.#buffered -= s.buf.length;
    const single = final && s.part === 0;
    const info = this.#owner!.streamInfo(s.conv, s.start);
    this.ready.push({
      stream: info,
      fileName: carvedFileName(info.index, s.part, single),
      part: s.part,
      final,
      packets: s.packets,
      pcap,
    });
    this.stats.piecesWritten++;
    this.stats.packetsWritten += s.packets;
    this.stats.bytesWritten += s.len;
    s.part++;
    s.buf = null;
    s.len = 0;
    s.packets = 0;
  }
}

function safeFilter(filter: (s: StreamInfo) => boolean, info: StreamInfo): boolean {
  return filter(info) === true;
}

function nextPow2(n: number): number {
  let c = 256;
  while (c < n) c *= 2;
  return c;
}

function writeU32le(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 255;
  b[o + 1] = (v >>> 8) & 255;
  b[o + 2] = (v >>> 16) & 255;
  b[o + 3] = (v >>> 24) & 255;
}

/** Nanosecond-resolution little-endian classic pcap header, snaplen 262144. */
export function writePcapHeader(b: Uint8Array, linkType: number): void {
  writeU32le(b, 0, 0xa1b23c4d);
  b[4] = 2;
  b[5] = 0;
  b[6] = 4;
  b[7] = 0;
  writeU32le(b, 8, 0);
  writeU32le(b, 12, 0);
  writeU32le(b, 16, 262_144);
  writeU32le(b, 20, linkType);
}

/**
 * A stream buffer. Not zero-filled (every byte handed out is written first: pieces are
 * `buf.subarray(0, len)`), and not from Node's shared pool, so a flushed buffer is freed on
 * its own once the sink is done with it.
 */
function newBuffer(size: number): Uint8Array {
  return Buffer.allocUnsafeSlow(size);
}
