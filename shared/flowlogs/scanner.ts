import { isIPv6 } from 'node:net';
import {
  DEFAULT_FORMAT,
  type FlowLogFormat,
  looksLikeHeader,
  parseFlowLogFormat,
} from './format.ts';

/**
 * The hot path: flow-log text (Buffers straight from gunzip, or CloudWatch Logs messages) to a
 * reusable cursor, one line at a time, without building an object per record. Lines are split
 * on the raw bytes, only the fields the rules need are decoded (IPv4 addresses to uint32,
 * numbers in place), and the full record is built lazily (`cursor.text()`, `recordFromText`)
 * only for records that end up as evidence.
 */

export const ACTION_NONE = 0;
export const ACTION_ACCEPT = 1;
export const ACTION_REJECT = 2;
export const STATUS_OK = 0;
export const STATUS_NODATA = 1;
export const STATUS_SKIPDATA = 2;
export const STATUS_NONE = 3;

/** One record, as seen by the rules. Valid only during the sink's `observe` call. */
export class FlowCursor {
  buf: Buffer = Buffer.alloc(0);
  lineStart = 0;
  lineEnd = 0;
  /**
   * IPv4 addresses as int32 (`uint32 | 0`: small integers, so Map keys need no boxing) when
   * srcV4/dstV4 is set; IPv6 addresses are in srcText/dstText; "-" sets neither.
   */
  src = 0;
  dst = 0;
  srcV4 = false;
  dstV4 = false;
  srcText: string | null = null;
  dstText: string | null = null;
  /** -1 means "-" or the format has no such field. */
  srcport = -1;
  dstport = -1;
  protocol = -1;
  packets = -1;
  bytes = -1;
  start = -1;
  end = -1;
  tcpFlags = -1;
  action = ACTION_NONE;
  status = STATUS_NONE;
  /** pkt-dst-aws-service is present and names a service (S3, DynamoDB, …). */
  dstIsAwsService = false;

  /** The record's text (allocates: call it only for evidence). */
  text(): string {
    return this.buf.toString('latin1', this.lineStart, this.lineEnd);
  }
  /** Map key for the source address: uint32 for IPv4, the canonical text for IPv6. */
  srcKey(): number | string {
    return this.srcV4 ? this.src : (this.srcText as string);
  }
  dstKey(): number | string {
    return this.dstV4 ? this.dst : (this.dstText as string);
  }
  hasAddresses(): boolean {
    return (this.srcV4 || this.srcText !== null) && (this.dstV4 || this.dstText !== null);
  }
}

/** Dotted quad from a uint32 or its int32 form. */
export function ipv4ToString(value: number): string {
  const v = value >>> 0;
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

export function addressKeyToString(key: number | string): string {
  return typeof key === 'number' ? ipv4ToString(key) : key;
}

export interface FlowSink {
  observe(cursor: FlowCursor): void;
}

export interface MalformedSample {
  /** 1-based line number within this input (header included). */
  line: number;
  reason: string;
  /** The start of the offending line, printable ASCII only. */
  text: string;
}

export interface ScanStats {
  lines: number;
  /** Records handed to the rules (log-status OK or "-"). */
  records: number;
  nodata: number;
  skipdata: number;
  blank: number;
  headerLines: number;
  malformed: number;
  malformedByReason: Record<string, number>;
  malformedSample: MalformedSample[];
  /** Fields of the format that Tapline does not know (kept as text). */
  unknownFields: string[];
  format: string[];
}

export interface ScannerOptions {
  /** Format for records without a header (CWL subscription, `--format`); default version 2. */
  format?: FlowLogFormat;
  /**
   * 'auto': a first line that is a header sets the format (S3 objects always have one);
   * 'none': never look for a header (CloudWatch Logs messages).
   */
  header?: 'auto' | 'none';
  maxMalformedSample?: number;
  /** Longer lines are malformed (hostile input cannot make us buffer without bound). */
  maxLineBytes?: number;
}

const SPACE = 0x20;
const CR = 0x0d;
const LF = 0x0a;
const DASH = 0x2d;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

// What the single pass does with each field of a line.
const K_SKIP = 0;
const K_INT = 1;
const K_SRC = 2;
const K_DST = 3;
const K_ACTION = 4;
const K_STATUS = 5;
const K_DSTSVC = 6;
// Integer slots.
const I_SRCPORT = 0;
const I_DSTPORT = 1;
const I_PROTOCOL = 2;
const I_PACKETS = 3;
const I_BYTES = 4;
const I_START = 5;
const I_END = 6;
const I_FLAGS = 7;
const INT_FIELDS: Array<[string, number, number]> = [
  ['srcport', I_SRCPORT, 65535],
  ['dstport', I_DSTPORT, 65535],
  ['protocol', I_PROTOCOL, 255],
  ['packets', I_PACKETS, Number.MAX_SAFE_INTEGER],
  ['bytes', I_BYTES, Number.MAX_SAFE_INTEGER],
  ['start', I_START, Number.MAX_SAFE_INTEGER],
  ['end', I_END, Number.MAX_SAFE_INTEGER],
  ['tcp-flags', I_FLAGS, 255],
];

/** Layout: for each position of the format, what to decode (only what the rules read). */
interface Layout {
  format: FlowLogFormat;
  count: number;
  kinds: Uint8Array;
  slots: Uint8Array;
}

function layoutOf(format: FlowLogFormat): Layout {
  const count = format.fields.length;
  const kinds = new Uint8Array(count);
  const slots = new Uint8Array(count);
  const set = (name: string, kind: number, slot = 0) => {
    const i = format.indexOf(name);
    if (i >= 0) {
      kinds[i] = kind;
      slots[i] = slot;
    }
  };
  for (const [name, slot] of INT_FIELDS) set(name, K_INT, slot);
  set('srcaddr', K_SRC);
  set('dstaddr', K_DST);
  set('action', K_ACTION);
  set('log-status', K_STATUS);
  set('pkt-dst-aws-service', K_DSTSVC);
  return { format, count, kinds, slots };
}

export class FlowScanner {
  private layout: Layout;
  private readonly sink: FlowSink;
  private readonly header: 'auto' | 'none';
  private readonly maxSample: number;
  private readonly maxLineBytes: number;
  private readonly cursor = new FlowCursor();
  private readonly ints = new Float64Array(8).fill(-1);
  private pending: Buffer | null = null;
  private skippingLongLine = false;
  private firstLine = true;
  readonly stats: ScanStats;

  constructor(sink: FlowSink, options: ScannerOptions = {}) {
    this.sink = sink;
    this.layout = layoutOf(options.format ?? DEFAULT_FORMAT);
    this.header = options.header ?? 'auto';
    this.maxSample = options.maxMalformedSample ?? 10;
    this.maxLineBytes = options.maxLineBytes ?? 16 * 1024;
    this.stats = {
      lines: 0,
      records: 0,
      nodata: 0,
      skipdata: 0,
      blank: 0,
      headerLines: 0,
      malformed: 0,
      malformedByReason: {},
      malformedSample: [],
      unknownFields: [...this.layout.format.unknownFields],
      format: [...this.layout.format.fields],
    };
  }

  get format(): FlowLogFormat {
    return this.layout.format;
  }

  /** Switches the record format (Parquet columns); no header line is expected after this. */
  useFormat(format: FlowLogFormat): void {
    this.layout = layoutOf(format);
    this.ints.fill(-1);
    this.firstLine = false;
    this.stats.format = [...format.fields];
    this.stats.unknownFields = [...format.unknownFields];
  }

  /** Feeds raw bytes; lines may span chunks. */
  push(chunk: Buffer): void {
    const buf = chunk;
    let pos = 0;
    if (this.pending !== null) {
      const nl = chunk.indexOf(LF);
      if (nl < 0) {
        if (this.pending.length + chunk.length > this.maxLineBytes) {
          this.tooLong();
          this.pending = null;
          this.skippingLongLine = true;
        } else {
          this.pending = Buffer.concat([this.pending, chunk]);
        }
        return;
      }
      const line = Buffer.concat([this.pending, chunk.subarray(0, nl)]);
      this.pending = null;
      this.line(line, 0, line.length);
      pos = nl + 1;
    } else if (this.skippingLongLine) {
      const nl = chunk.indexOf(LF);
      if (nl < 0) return;
      this.skippingLongLine = false;
      pos = nl + 1;
    }
    const len = buf.length;
    while (pos < len) {
      const nl = buf.indexOf(LF, pos);
      if (nl < 0) {
        if (len - pos > this.maxLineBytes) {
          this.tooLong();
          this.skippingLongLine = true;
        } else {
          this.pending = Buffer.from(buf.subarray(pos));
        }
        return;
      }
      if (nl - pos > this.maxLineBytes) this.tooLong();
      else this.line(buf, pos, nl);
      pos = nl + 1;
    }
  }

  /** One record given as text (a CloudWatch Logs message). */
  pushRecord(text: string): void {
    const buf = Buffer.from(text, 'latin1');
    if (buf.length > this.maxLineBytes) {
      this.tooLong();
      return;
    }
    // a message is one record; embedded newlines are not record separators here
    this.line(buf, 0, buf.length);
  }

  /** Flushes a last line without a newline and returns the statistics. */
  end(): ScanStats {
    if (this.pending !== null) {
      const line = this.pending;
      this.pending = null;
      this.line(line, 0, line.length);
    }
    return this.stats;
  }

  private tooLong(): void {
    this.stats.lines += 1;
    this.firstLine = false;
    this.malformed(`line longer than ${this.maxLineBytes} bytes`, Buffer.alloc(0), 0, 0);
  }

  private malformed(reason: string, buf: Buffer, start: number, end: number): void {
    const s = this.stats;
    s.malformed += 1;
    s.malformedByReason[reason] = (s.malformedByReason[reason] ?? 0) + 1;
    if (s.malformedSample.length < this.maxSample) {
      const text = buf
        .toString('latin1', start, Math.min(end, start + 200))
        .replace(/[^\x20-\x7e]/g, '?');
      s.malformedSample.push({ line: s.lines, reason, text });
    }
  }

  private line(buf: Buffer, lineStart: number, lineEndRaw: number): void {
    const stats = this.stats;
    stats.lines += 1;
    let lineEnd = lineEndRaw;
    if (lineEnd > lineStart && buf[lineEnd - 1] === CR) lineEnd -= 1;

    if (this.firstLine) {
      this.firstLine = false;
      if (this.header === 'auto' && this.headerLine(buf, lineStart, lineEnd)) return;
    }

    // One pass over the bytes: find each field, decode the ones the rules read.
    const L = this.layout;
    const kinds = L.kinds;
    const slots = L.slots;
    const count = L.count;
    const ints = this.ints; // slots of absent fields stay -1 (set once, never written)
    const c = this.cursor;
    c.srcV4 = false;
    c.dstV4 = false;
    c.srcText = null;
    c.dstText = null;
    c.action = ACTION_NONE;
    c.status = STATUS_NONE;
    c.dstIsAwsService = false;
    let bad = 0; // 0 ok; else index into REASONS
    let f = 0;
    let i = lineStart;
    while (i < lineEnd) {
      let b = buf[i]!;
      // spaces separate fields (tabs and other control characters too: one test per byte)
      if (b <= SPACE) {
        i += 1;
        continue;
      }
      if (f >= count) {
        f += 1;
        break;
      }
      const kind = kinds[f]!;
      const s = i;
      if (kind === K_INT) {
        let v = 0;
        let ok = true;
        while (i < lineEnd) {
          b = buf[i]!;
          if (b <= SPACE) break;
          const d = b - ZERO;
          if (d < 0 || d > 9) ok = false;
          v = v * 10 + d;
          i += 1;
        }
        if (ok && i - s <= 16) {
          ints[slots[f]!] = v;
        } else {
          ints[slots[f]!] = -1;
          if (!(i - s === 1 && buf[s] === DASH) && bad === 0) bad = R_NUMBER + slots[f]!;
        }
      } else if (kind === K_SRC || kind === K_DST) {
        // IPv4 decoded while finding the field's end; anything else goes the IPv6 way
        let value = 0;
        let octet = 0;
        let digits = 0;
        let dots = 0;
        let v4 = true;
        while (i < lineEnd) {
          b = buf[i]!;
          if (b <= SPACE) break;
          if (b >= ZERO && b <= NINE) {
            if (digits === 3 || (digits === 1 && octet === 0)) v4 = false;
            octet = octet * 10 + (b - ZERO);
            digits += 1;
          } else if (b === DOT) {
            if (digits === 0 || octet > 255 || dots === 3) v4 = false;
            value = value * 256 + octet;
            octet = 0;
            digits = 0;
            dots += 1;
          } else {
            v4 = false;
          }
          i += 1;
        }
        if (v4 && dots === 3 && digits > 0 && octet <= 255) {
          if (kind === K_SRC) {
            c.src = (value * 256 + octet) | 0;
            c.srcV4 = true;
          } else {
            c.dst = (value * 256 + octet) | 0;
            c.dstV4 = true;
          }
        } else if (!(i - s === 1 && buf[s] === DASH)) {
          const t = i - s <= 45 ? buf.toString('latin1', s, i) : '';
          if (t !== '' && isIPv6(t)) {
            if (kind === K_SRC) c.srcText = t.toLowerCase();
            else c.dstText = t.toLowerCase();
          } else if (bad === 0) bad = kind === K_SRC ? R_SRCADDR : R_DSTADDR;
        }
      } else {
        while (i < lineEnd) {
          b = buf[i]!;
          if (b <= SPACE) break;
          i += 1;
        }
        if (kind !== K_SKIP) {
          const dash = i - s === 1 && buf[s] === DASH;
          if (kind === K_ACTION) {
            const first = buf[s];
            if (i - s === 6 && first === 0x41 && isWord(buf, s, ACCEPT)) c.action = ACTION_ACCEPT;
            else if (i - s === 6 && first === 0x52 && isWord(buf, s, REJECT))
              c.action = ACTION_REJECT;
            else if (!dash && bad === 0) bad = R_ACTION;
          } else if (kind === K_STATUS) {
            const len = i - s;
            const first = buf[s];
            if (len === 2 && first === 0x4f && buf[s + 1] === 0x4b) c.status = STATUS_OK;
            else if (len === 6 && first === 0x4e && buf.toString('latin1', s, i) === 'NODATA')
              c.status = STATUS_NODATA;
            else if (len === 8 && first === 0x53 && buf.toString('latin1', s, i) === 'SKIPDATA')
              c.status = STATUS_SKIPDATA;
            else if (!dash && bad === 0) bad = R_STATUS;
          } else if (kind === K_DSTSVC) {
            c.dstIsAwsService = !dash;
          }
        }
      }
      f += 1;
    }
    if (f === 0) {
      stats.blank += 1;
      return;
    }
    if (f !== count) {
      this.malformed(
        f > count ? `more than ${count} fields` : `expected ${count} fields, got ${f}`,
        buf,
        lineStart,
        lineEnd,
      );
      return;
    }
    if (c.status === STATUS_NODATA) {
      stats.nodata += 1;
      return;
    }
    if (c.status === STATUS_SKIPDATA) {
      stats.skipdata += 1;
      return;
    }
    if (bad === 0) bad = this.ranges();
    if (bad !== 0) {
      this.malformed(REASONS[bad]!, buf, lineStart, lineEnd);
      return;
    }
    c.buf = buf;
    c.lineStart = lineStart;
    c.lineEnd = lineEnd;
    // small integers stay small integers (no boxed doubles on the rules' Map keys)
    c.srcport = ints[I_SRCPORT]! | 0;
    c.dstport = ints[I_DSTPORT]! | 0;
    c.protocol = ints[I_PROTOCOL]! | 0;
    c.packets = ints[I_PACKETS]!;
    c.bytes = ints[I_BYTES]!;
    c.start = ints[I_START]!;
    c.end = ints[I_END]!;
    c.tcpFlags = ints[I_FLAGS]! | 0;
    stats.records += 1;
    this.sink.observe(c);
  }

  /** Range checks on the decoded integers; a REASONS index or 0. */
  private ranges(): number {
    const ints = this.ints;
    for (const [, slot, max] of INT_FIELDS) {
      if (ints[slot]! > max) return R_RANGE + slot;
    }
    return 0;
  }

  private headerLine(buf: Buffer, lineStart: number, lineEnd: number): boolean {
    const text = buf.toString('latin1', lineStart, lineEnd);
    if (!looksLikeHeader(text)) return false;
    this.stats.headerLines += 1;
    try {
      this.layout = layoutOf(parseFlowLogFormat(text));
      this.ints.fill(-1);
      this.stats.format = [...this.layout.format.fields];
      this.stats.unknownFields = [...this.layout.format.unknownFields];
    } catch (error) {
      this.malformed(`bad header: ${(error as Error).message}`, buf, lineStart, lineEnd);
    }
    return true;
  }
}

const R_SRCADDR = 1;
const R_DSTADDR = 2;
const R_ACTION = 3;
const R_STATUS = 4;
const R_NUMBER = 10;
const R_RANGE = 20;
const REASONS: string[] = [];
REASONS[R_SRCADDR] = 'srcaddr is not an IP address';
REASONS[R_DSTADDR] = 'dstaddr is not an IP address';
REASONS[R_ACTION] = 'unknown action';
REASONS[R_STATUS] = 'unknown log-status';
for (const [name, slot] of INT_FIELDS) {
  REASONS[R_NUMBER + slot] = `${name} is not a number`;
  REASONS[R_RANGE + slot] = `${name} out of range`;
}

const ACCEPT = Buffer.from('ACCEPT');
const REJECT = Buffer.from('REJECT');

function isWord(buf: Buffer, s: number, word: Buffer): boolean {
  for (let k = 1; k < word.length; k++) if (buf[s + k] !== word[k]) return false;
  return true;
}

/** Dotted-quad bytes to uint32 (as a non-negative double); -1 if not a strict IPv4 address. */
export function parseIPv4(buf: Buffer | Uint8Array, s: number, e: number): number {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = s; i < e; i++) {
    const b = buf[i]!;
    if (b >= ZERO && b <= NINE) {
      if (digits === 3) return -1;
      // no leading zeros ("010" is ambiguous: octal in some parsers)
      if (digits === 1 && octet === 0) return -1;
      octet = octet * 10 + (b - ZERO);
      digits += 1;
    } else if (b === DOT) {
      if (digits === 0 || octet > 255 || dots === 3) return -1;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
      dots += 1;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0 || octet > 255) return -1;
  return value * 256 + octet;
}
