import {
  ACTION_NONE,
  INT_FIELDS,
  K_ACTION,
  K_DST,
  K_DSTSVC,
  K_SRC,
  K_STATUS,
  parseFields,
  REASONS,
  resetFields,
  STATUS_NODATA,
  STATUS_NONE,
  STATUS_SKIPDATA,
} from './field-parser.ts';
import {
  type FlowLinesWasm,
  flowLinesWasm,
  MAX_WASM_FIELDS,
  META_AWS_SERVICE,
  META_DST,
  META_SRC,
  SLOT_END,
  SLOT_META,
  SLOT_START,
} from './flow-lines-wasm.ts';
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

export {
  ACTION_ACCEPT,
  ACTION_NONE,
  ACTION_REJECT,
  STATUS_NODATA,
  STATUS_NONE,
  STATUS_OK,
  STATUS_SKIPDATA,
} from './field-parser.ts';

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
  /** Scratch for the field parser (where it stopped). */
  parsedTo = 0;

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
  /**
   * 'auto' (default): regular lines are decoded by the WebAssembly fast path when it loads,
   * the rest by the JavaScript parser; 'js': the JavaScript parser only. Both give the same
   * records, statistics and findings (test/unit/flowlog-wasm-parity.test.ts).
   */
  parser?: 'auto' | 'js';
}

const CR = 0x0d;
const LF = 0x0a;
/** The malformed reason of a last line cut off by damaged input (see `endDamaged`). */
export const CUT_BY_DAMAGE = 'line cut short by damaged input';

/** Layout: for each position of the format, what to decode (only what the rules read). */
interface Layout {
  format: FlowLogFormat;
  count: number;
  kinds: Uint8Array;
}

function layoutOf(format: FlowLogFormat): Layout {
  const count = format.fields.length;
  const kinds = new Uint8Array(count);
  const set = (name: string, kind: number) => {
    const i = format.indexOf(name);
    if (i >= 0) kinds[i] = kind;
  };
  for (const [name, kind] of INT_FIELDS) set(name, kind);
  set('srcaddr', K_SRC);
  set('dstaddr', K_DST);
  set('action', K_ACTION);
  set('log-status', K_STATUS);
  set('pkt-dst-aws-service', K_DSTSVC);
  return { format, count, kinds };
}

export class FlowScanner {
  private layout: Layout;
  private readonly sink: FlowSink;
  private readonly header: 'auto' | 'none';
  private readonly maxSample: number;
  private readonly maxLineBytes: number;
  private readonly cursor = new FlowCursor();
  private readonly wasm: FlowLinesWasm | null;
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
    this.wasm = options.parser === 'js' ? null : flowLinesWasm();
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
    resetFields(this.cursor);
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
      const pending = this.pending;
      this.pending = null;
      if (pending.length + nl > this.maxLineBytes) {
        this.tooLong();
      } else {
        const line = Buffer.concat([pending, chunk.subarray(0, nl)]);
        this.line(line, 0, line.length);
      }
      pos = nl + 1;
    } else if (this.skippingLongLine) {
      const nl = chunk.indexOf(LF);
      if (nl < 0) return;
      this.skippingLongLine = false;
      pos = nl + 1;
    }
    if (pos < buf.length) pos = this.lines(buf, pos);
    if (pos < buf.length) this.keepTail(buf, pos);
  }

  /** Which parser the records of this input go through (for reports and tests). */
  get parser(): 'wasm' | 'js' {
    return this.wasm !== null && this.layout.count <= MAX_WASM_FIELDS ? 'wasm' : 'js';
  }

  /**
   * The records of one chunk from `from`; returns where the unfinished last line starts (or
   * the chunk's length). The loops are functions of their own so that V8's on-stack-replaced
   * code for them ends in a plain return: when the loop ended in `push`'s tail handling, which
   * the interpreter had not yet run when the loop got hot, that compare had no type feedback
   * and sent `push` back to the interpreter at the end of nearly every chunk (70-80
   * deoptimizations per 2 M records; 2-7 now).
   */
  private lines(buf: Buffer, from: number): number {
    let pos = from;
    if (this.firstLine) {
      // the first line may be a header: found with indexOf, looked at as text
      const nl = buf.indexOf(LF, pos);
      if (nl < 0) return pos;
      if (nl - pos > this.maxLineBytes) this.tooLong();
      else this.line(buf, pos, nl);
      pos = nl + 1;
    }
    if (this.wasm === null || this.layout.count > MAX_WASM_FIELDS) return this.jsLines(buf, pos);
    return this.wasmLines(this.wasm, buf, pos);
  }

  /**
   * The WebAssembly fast path: the chunk is copied into its memory a window at a time; lines
   * it could not decode strictly go to the JavaScript parser one by one, so both paths agree.
   */
  private wasmLines(w: FlowLinesWasm, buf: Buffer, from: number): number {
    const len = buf.length;
    const kinds = this.layout.kinds;
    w.memory.set(kinds, w.kindsOffset);
    let pos = from;
    while (pos < len) {
      const n = Math.min(len - pos, w.inputCapacity);
      w.memory.set(buf.subarray(pos, pos + n), w.inputOffset);
      w.memory[w.inputOffset + n] = 0; // the end mark the parser's byte loops stop at
      let at = 0;
      for (;;) {
        const k = w.parse(kinds.length, at, n);
        this.deliver(w, buf, pos, k);
        at = w.stop();
        if (k < w.maxRecords) break;
      }
      if (pos + n >= len) return pos + at; // the rest (if any) continues in the next chunk
      // a line longer than the window (only with maxLineBytes above it): the JavaScript loop
      if (at === 0) return this.jsLines(buf, pos);
      pos += at;
    }
    return pos;
  }

  /** Hands `count` decoded records (line offsets relative to `base` in `buf`) to the sink. */
  private deliver(w: FlowLinesWasm, buf: Buffer, base: number, count: number): void {
    const r = w.records;
    const stride = w.stride;
    const c = this.cursor;
    const stats = this.stats;
    const kinds = this.layout.kinds;
    for (let i = 0, o = 0; i < count; i++, o += stride) {
      const start = base + r[o + SLOT_START]!;
      const end = base + r[o + SLOT_END]!;
      if (end - start > this.maxLineBytes) {
        this.tooLong();
        continue;
      }
      stats.lines += 1;
      const meta = r[o + SLOT_META]!;
      if (meta < 0) {
        this.settle(buf, start, end, parseFields(kinds, buf, start, end, c, -1));
        continue;
      }
      const m = meta | 0;
      c.srcport = r[o + 2]! | 0;
      c.dstport = r[o + 3]! | 0;
      c.protocol = r[o + 4]! | 0;
      c.packets = r[o + 5]!;
      c.bytes = r[o + 6]!;
      c.start = r[o + 7]!;
      c.end = r[o + 8]!;
      c.tcpFlags = r[o + 9]! | 0;
      c.src = r[o + 10]! | 0;
      c.dst = r[o + 11]! | 0;
      c.srcV4 = (m & META_SRC) !== 0;
      c.dstV4 = (m & META_DST) !== 0;
      c.srcText = null;
      c.dstText = null;
      c.action = m & 3;
      c.status = (m >> 2) & 3;
      c.dstIsAwsService = (m & META_AWS_SERVICE) !== 0;
      c.buf = buf;
      c.lineStart = start;
      c.lineEnd = end;
      stats.records += 1;
      this.sink.observe(c);
    }
  }

  /** The JavaScript loop: every line when there is no wasm (or the format is too wide). */
  private jsLines(buf: Buffer, from: number): number {
    let pos = from;
    const len = buf.length;
    const c = this.cursor;
    while (pos < len) {
      // finding the line's end and decoding its fields is one pass over its bytes
      const parsed = parseFields(this.layout.kinds, buf, pos, len, c, LF);
      const nl = c.parsedTo;
      if (nl >= len) break; // no newline: the line continues in the next chunk
      if (nl - pos > this.maxLineBytes) {
        this.tooLong();
      } else {
        this.stats.lines += 1;
        this.settle(buf, pos, nl, parsed);
      }
      pos = nl + 1;
    }
    return pos;
  }

  /** The start of a line the next chunk continues (bounded by maxLineBytes). */
  private keepTail(buf: Buffer, pos: number): void {
    if (buf.length - pos > this.maxLineBytes) {
      this.tooLong();
      this.skippingLongLine = true;
    } else {
      this.pending = Buffer.from(buf.subarray(pos));
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

  /**
   * The input failed part-way (a damaged gzip stream): a last line still waiting for its
   * newline was cut by the damage, not by the end of the file, so it is counted as malformed
   * instead of read as a record (a cut `bytes` field would be a smaller, valid-looking number).
   */
  endDamaged(): ScanStats {
    if (this.pending !== null) {
      const line = this.pending;
      this.pending = null;
      this.stats.lines += 1;
      this.firstLine = false;
      this.malformed(CUT_BY_DAMAGE, line, 0, line.length);
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

    this.settle(
      buf,
      lineStart,
      lineEndRaw,
      parseFields(this.layout.kinds, buf, lineStart, lineEndRaw, this.cursor, -1),
    );
  }

  /**
   * The verdict on one parsed line: blank, malformed (with the first problem), NODATA/SKIPDATA,
   * or a record for the sink. Fields were decoded straight into the cursor; every field of the
   * format is written on a well-formed line (a field the format lacks keeps -1), so nothing is
   * reset per line; a malformed line may leave the cursor half-written but never reaches the
   * sink.
   */
  private settle(buf: Buffer, lineStart: number, lineEndRaw: number, parsed: number): void {
    const stats = this.stats;
    let lineEnd = lineEndRaw;
    if (lineEnd > lineStart && buf[lineEnd - 1] === CR) lineEnd -= 1;
    const count = this.layout.count;
    const c = this.cursor;
    const f = parsed >>> 8;
    const bad = parsed & 255;
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
    if (bad !== 0) {
      this.malformed(REASONS[bad]!, buf, lineStart, lineEnd);
      return;
    }
    c.buf = buf;
    c.lineStart = lineStart;
    c.lineEnd = lineEnd;
    stats.records += 1;
    this.sink.observe(c);
  }

  private headerLine(buf: Buffer, lineStart: number, lineEnd: number): boolean {
    const text = buf.toString('latin1', lineStart, lineEnd);
    if (!looksLikeHeader(text)) return false;
    this.stats.headerLines += 1;
    try {
      this.layout = layoutOf(parseFlowLogFormat(text));
      resetFields(this.cursor);
      this.stats.format = [...this.layout.format.fields];
      this.stats.unknownFields = [...this.layout.format.unknownFields];
    } catch (error) {
      this.malformed(`bad header: ${(error as Error).message}`, buf, lineStart, lineEnd);
    }
    return true;
  }
}
