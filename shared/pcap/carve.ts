import { copyBytes } from './address.ts';
import type { AnomalyLog } from './anomalies.ts';
import { PCAP_HEADER_BYTES } from './carve-sinks.ts';
import type { CarveChunk, CarveOptions, CarveStats, StreamInfo } from './types.ts';

/**
 * One-pass per-TCP-stream carving into a fixed arena: every carved record (16-byte
 * nanosecond record header + the captured bytes, exactly as read) is appended to its stream's
 * chain of 4 KiB blocks in one preallocated buffer of `maxBufferedBytes` (16 MiB by default).
 * When the arena runs out, closed streams are finalised first (least recently active first),
 * then the least recently active open streams are flushed as parts; a stream that reaches
 * `partBytes` is flushed as a part. A flushed piece is copied out of the arena into a buffer of
 * its exact size (a complete pcap file) and its blocks are free again at once.
 *
 * Per stream the state is a row of typed columns indexed by conversation (no object, no
 * string per stream), so memory is the arena plus a few dozen bytes per conversation,
 * whatever the number of streams or the file size; the stream's description is built from the
 * conversation table only when a piece goes out.
 */

const DEFAULT_MAX_BUFFERED = 16 * 1024 * 1024;
const DEFAULT_PART_BYTES = 4 * 1024 * 1024;
/** Closed streams are finalised once the capture clock is this far past their last packet. */
const CLOSE_GRACE_SECONDS = 5;
const BLOCK = 4096;

// want[]: the filter's verdict for a conversation
const UNDECIDED = 0;
const CARVED = 1;
const DECLINED = 2;
// list[]: which LRU list a stream is on
const NONE = 0;
const OPEN = 1;
const CLOSED = 2;

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

/** A doubly linked LRU list over stream indices (links in the Carver's columns). */
interface List {
  head: number;
  tail: number;
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
  readonly #partBytes: number;
  readonly #clock: Float64Array;
  #owner: StreamDescriber | null = null;

  // the arena (allocated at the first carved packet)
  readonly #blocks: number;
  #arena: Uint8Array | null = null;
  #blockNext: Int32Array;
  #freeHead = -1;
  #free = 0;

  // per-conversation columns (grown with the highest conversation index seen)
  #cap = 0;
  #want = new Uint8Array(0);
  #list = new Uint8Array(0);
  #closedFlag = new Uint8Array(0);
  #head = new Int32Array(0);
  #tail = new Int32Array(0);
  /** Bytes used in the tail block. */
  #tailFill = new Int32Array(0);
  /** Bytes of records pending (without the pcap header). */
  #len = new Int32Array(0);
  #packets = new Int32Array(0);
  #part = new Int32Array(0);
  #linkType = new Int32Array(0);
  #start = new Float64Array(0);
  #lastTs = new Float64Array(0);
  #prev = new Int32Array(0);
  #next = new Int32Array(0);
  readonly #openList: List = { head: -1, tail: -1 };
  readonly #closedList: List = { head: -1, tail: -1 };

  /** `clock`: [seconds, nanoseconds] of the record being appended, kept by the analyzer. */
  constructor(opts: CarveOptions, anomalies: AnomalyLog, clock: Float64Array) {
    this.#clock = clock;
    this.#opts = opts;
    this.#anomalies = anomalies;
    const maxBuffered = Math.max(1 << 20, opts.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED);
    this.#blocks = Math.floor(maxBuffered / BLOCK);
    this.#blockNext = new Int32Array(0);
    this.#partBytes = Math.max(
      64 * 1024,
      opts.partBytes ?? Math.min(DEFAULT_PART_BYTES, maxBuffered / 4),
    );
  }

  /** Bytes of the arena holding pending records. */
  get bufferedBytes(): number {
    return this.#arena === null ? 0 : (this.#blocks - this.#free) * BLOCK;
  }

  #ensureColumns(conv: number): void {
    if (conv < this.#cap) return;
    let cap = Math.max(1024, this.#cap);
    while (cap <= conv) cap *= 2;
    const grow8 = (a: Uint8Array) => {
      const b = new Uint8Array(cap);
      b.set(a);
      return b;
    };
    const grow32 = (a: Int32Array, fill = 0) => {
      const b = new Int32Array(cap);
      if (fill !== 0) b.fill(fill, a.length);
      b.set(a);
      return b;
    };
    const grow64 = (a: Float64Array) => {
      const b = new Float64Array(cap);
      b.set(a);
      return b;
    };
    this.#want = grow8(this.#want);
    this.#list = grow8(this.#list);
    this.#closedFlag = grow8(this.#closedFlag);
    this.#head = grow32(this.#head, -1);
    this.#tail = grow32(this.#tail, -1);
    this.#tailFill = grow32(this.#tailFill);
    this.#len = grow32(this.#len);
    this.#packets = grow32(this.#packets);
    this.#part = grow32(this.#part);
    this.#linkType = grow32(this.#linkType);
    this.#start = grow64(this.#start);
    this.#lastTs = grow64(this.#lastTs);
    this.#prev = grow32(this.#prev, -1);
    this.#next = grow32(this.#next, -1);
    this.#cap = cap;
  }

  #ensureArena(): Uint8Array {
    if (this.#arena !== null) return this.#arena;
    this.#arena = Buffer.allocUnsafeSlow(this.#blocks * BLOCK);
    this.#blockNext = new Int32Array(this.#blocks);
    for (let b = 0; b < this.#blocks; b++) this.#blockNext[b] = b + 1 < this.#blocks ? b + 1 : -1;
    this.#freeHead = 0;
    this.#free = this.#blocks;
    return this.#arena;
  }

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
    this.#ensureColumns(conv);
    let want = this.#want[conv]!;
    if (want === UNDECIDED) {
      this.#owner = owner;
      // the filter sees the stream's description; 'all' needs none until a piece goes out
      const yes =
        this.#opts.mode === 'all' ||
        (this.#opts.mode === 'streams' &&
          this.#opts.streams !== undefined &&
          safeFilter(this.#opts.streams, owner.streamInfo(conv)));
      want = yes ? CARVED : DECLINED;
      this.#want[conv] = want;
      if (yes) {
        this.stats.streamsCarved++;
        this.#linkType[conv] = linkType;
        this.#start[conv] = owner.now;
        this.#part[conv] = 0;
        this.#closedFlag[conv] = 0;
        this.#lastTs[conv] = 0;
      }
    }
    if (want !== CARVED) return;
    if (linkType !== this.#linkType[conv]) {
      const expected = this.#linkType[conv];
      this.#anomalies.add(
        'carve-link-type-mismatch',
        () =>
          `stream ${owner.streamInfo(conv).index}: link type ${linkType} differs from ${expected}`,
      );
      return;
    }
    const arena = this.#ensureArena();
    const recLen = 16 + caplen;
    // blocks this record needs beyond the room left in the stream's tail block
    const room = this.#tail[conv]! < 0 ? 0 : BLOCK - this.#tailFill[conv]!;
    const needBlocks = recLen > room ? Math.ceil((recLen - room) / BLOCK) : 0;
    if (needBlocks > this.#free) this.#relieve(needBlocks);
    // the record header, then the captured bytes, across block boundaries
    const hdr = RECORD_HEADER;
    const tsSec = this.#clock[0]!;
    const sec = Number.isNaN(tsSec) ? 0 : tsSec;
    writeU32le(hdr, 0, sec >>> 0);
    writeU32le(hdr, 4, this.#clock[1]! >>> 0);
    writeU32le(hdr, 8, caplen);
    writeU32le(hdr, 12, origlen >>> 0);
    this.#append(conv, arena, hdr, 0, 16);
    this.#append(conv, arena, data, off, off + caplen);
    this.#len[conv]! += recLen;
    this.#packets[conv]!++;
    if (sec > 0) this.#lastTs[conv] = sec;
    // most recently active: to the tail of its list
    this.#unlink(conv);
    this.#link(conv, this.#closedFlag[conv] ? CLOSED : OPEN);
    if (PCAP_HEADER_BYTES + this.#len[conv]! >= this.#partBytes) this.#flush(conv, false);
  }

  /** Copy src[from, to) to the end of the stream's block chain (blocks are available). */
  #append(conv: number, arena: Uint8Array, src: Uint8Array, from: number, to: number): void {
    while (from < to) {
      let tail = this.#tail[conv]!;
      let fill = this.#tailFill[conv]!;
      if (tail < 0 || fill === BLOCK) {
        const b = this.#freeHead;
        this.#freeHead = this.#blockNext[b]!;
        this.#free--;
        this.#blockNext[b] = -1;
        if (tail < 0) this.#head[conv] = b;
        else this.#blockNext[tail] = b;
        this.#tail[conv] = b;
        tail = b;
        fill = 0;
      }
      const n = Math.min(to - from, BLOCK - fill);
      copyBytes(src, from, from + n, arena, tail * BLOCK + fill);
      from += n;
      this.#tailFill[conv] = fill + n;
    }
  }

  /** The stream saw RST or FIN both ways: finalise it once the capture clock moves on. */
  closed(conv: number): void {
    if (conv >= this.#cap || this.#want[conv] !== CARVED || this.#closedFlag[conv]) return;
    this.#closedFlag[conv] = 1;
    if (this.#list[conv] === OPEN) {
      this.#unlink(conv);
      this.#link(conv, CLOSED);
    }
  }

  /** A new stream took over this conversation's tuple: finalise the old one now. */
  replaced(conv: number): void {
    if (conv >= this.#cap || this.#want[conv] !== CARVED) return;
    this.#flush(conv, true);
    this.#want[conv] = UNDECIDED;
  }

  /** Finalise closed streams idle for a while (called now and then with the capture clock). */
  sweep(nowSec: number): void {
    for (let s = this.#closedList.head; s >= 0; s = this.#closedList.head) {
      if (nowSec - this.#lastTs[s]! < CLOSE_GRACE_SECONDS) break;
      this.#flush(s, true);
    }
  }

  /** End of capture: finalise everything still buffered. */
  finish(): void {
    for (let s = this.#closedList.head; s >= 0; s = this.#closedList.head) this.#flush(s, true);
    for (let s = this.#openList.head; s >= 0; s = this.#openList.head) this.#flush(s, true);
  }

  /** Free at least `need` blocks (and a quarter of the arena, so this does not run per packet). */
  #relieve(need: number): void {
    const target = Math.min(this.#blocks, need + (this.#blocks >> 2));
    while (this.#free < target) {
      const s = this.#closedList.head >= 0 ? this.#closedList.head : this.#openList.head;
      if (s < 0) break;
      this.#flush(s, this.#closedFlag[s] === 1);
    }
  }

  #listOf(which: number): List {
    return which === OPEN ? this.#openList : this.#closedList;
  }

  #unlink(s: number): void {
    const which = this.#list[s]!;
    if (which === NONE) return;
    const list = this.#listOf(which);
    const prev = this.#prev[s]!;
    const next = this.#next[s]!;
    if (prev >= 0) this.#next[prev] = next;
    else list.head = next;
    if (next >= 0) this.#prev[next] = prev;
    else list.tail = prev;
    this.#prev[s] = -1;
    this.#next[s] = -1;
    this.#list[s] = NONE;
  }

  #link(s: number, which: number): void {
    const list = this.#listOf(which);
    this.#prev[s] = list.tail;
    this.#next[s] = -1;
    if (list.tail >= 0) this.#next[list.tail] = s;
    else list.head = s;
    list.tail = s;
    this.#list[s] = which;
  }

  #flush(s: number, final: boolean): void {
    this.#unlink(s);
    const len = this.#len[s]!;
    if (len === 0) return;
    const arena = this.#arena!;
    const pcap = Buffer.allocUnsafeSlow(PCAP_HEADER_BYTES + len);
    writePcapHeader(pcap, this.#linkType[s]!);
    let o = PCAP_HEADER_BYTES;
    let left = len;
    for (let b = this.#head[s]!; b >= 0; ) {
      const n = Math.min(left, BLOCK);
      copyBytes(arena, b * BLOCK, b * BLOCK + n, pcap, o);
      o += n;
      left -= n;
      const next = this.#blockNext[b]!;
      this.#blockNext[b] = this.#freeHead;
      this.#freeHead = b;
      this.#free++;
      b = next;
    }
    this.#head[s] = -1;
    this.#tail[s] = -1;
    this.#tailFill[s] = 0;
    const part = this.#part[s]!;
    const single = final && part === 0;
    const info = this.#owner!.streamInfo(s, this.#start[s]!);
    this.ready.push({
      stream: info,
      fileName: carvedFileName(info.index, part, single),
      part,
      final,
      packets: this.#packets[s]!,
      pcap,
    });
    this.stats.piecesWritten++;
    this.stats.packetsWritten += this.#packets[s]!;
    this.stats.bytesWritten += pcap.length;
    this.#part[s] = part + 1;
    this.#len[s] = 0;
    this.#packets[s] = 0;
  }
}

const RECORD_HEADER = new Uint8Array(16);

function safeFilter(filter: (s: StreamInfo) => boolean, info: StreamInfo): boolean {
  return filter(info) === true;
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
