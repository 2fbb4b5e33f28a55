import { isIPv6 } from 'node:net';

/**
 * One flow-log line's fields → the scanner's cursor: the innermost loop of detection, one pass
 * over the bytes, decoding only the fields the rules read (IPv4 addresses to int32, numbers in
 * place, ACTION/log-status compared byte by byte), allocating nothing for IPv4 records.
 */

export const K_SKIP = 0;
export const K_SRCPORT = 1;
export const K_DSTPORT = 2;
export const K_PROTOCOL = 3;
export const K_PACKETS = 4;
export const K_BYTES = 5;
export const K_START = 6;
export const K_END = 7;
export const K_FLAGS = 8;
export const K_SRC = 9;
export const K_DST = 10;
export const K_ACTION = 11;
export const K_STATUS = 12;
export const K_DSTSVC = 13;
/** Kinds up to this one are integers. */
export const K_LAST_INT = K_FLAGS;

export const ACTION_NONE = 0;
export const ACTION_ACCEPT = 1;
export const ACTION_REJECT = 2;
export const STATUS_OK = 0;
export const STATUS_NODATA = 1;
export const STATUS_SKIPDATA = 2;
export const STATUS_NONE = 3;

/** Integer fields: name, kind, largest value. */
export const INT_FIELDS: ReadonlyArray<readonly [string, number, number]> = [
  ['srcport', K_SRCPORT, 65535],
  ['dstport', K_DSTPORT, 65535],
  ['protocol', K_PROTOCOL, 255],
  ['packets', K_PACKETS, Number.MAX_SAFE_INTEGER],
  ['bytes', K_BYTES, Number.MAX_SAFE_INTEGER],
  ['start', K_START, Number.MAX_SAFE_INTEGER],
  ['end', K_END, Number.MAX_SAFE_INTEGER],
  ['tcp-flags', K_FLAGS, 255],
];

export const REASON_SRCADDR = 1;
export const REASON_DSTADDR = 2;
export const REASON_ACTION = 3;
export const REASON_STATUS = 4;
/** + kind: "<field> is not a number". */
export const REASON_NUMBER = 10;
/** + kind: "<field> out of range". */
export const REASON_RANGE = 20;

export const REASONS: string[] = [];
REASONS[REASON_SRCADDR] = 'srcaddr is not an IP address';
REASONS[REASON_DSTADDR] = 'dstaddr is not an IP address';
REASONS[REASON_ACTION] = 'unknown action';
REASONS[REASON_STATUS] = 'unknown log-status';
for (const [name, kind] of INT_FIELDS) {
  REASONS[REASON_NUMBER + kind] = `${name} is not a number`;
  REASONS[REASON_RANGE + kind] = `${name} out of range`;
}

/** What the generated parser writes (the scanner's FlowCursor). */
export interface ParsedFields {
  src: number;
  dst: number;
  srcV4: boolean;
  dstV4: boolean;
  srcText: string | null;
  dstText: string | null;
  srcport: number;
  dstport: number;
  protocol: number;
  packets: number;
  bytes: number;
  start: number;
  end: number;
  tcpFlags: number;
  action: number;
  status: number;
  dstIsAwsService: boolean;
  /** Where parseFields stopped: the line-end byte, or lineEnd when there was none. */
  parsedTo: number;
}

const INT_MAX = new Float64Array(K_LAST_INT + 1);
for (const [, kind, max] of INT_FIELDS) INT_MAX[kind] = max;

const SPACE = 0x20;
const DASH = 0x2d;
const DOT = 0x2e;
const ZERO = 0x30;

/**
 * Finds each field of one line (given the kind of each field of the format) and decodes the
 * ones the rules read straight into `c`. Returns `fields << 8 | problem`: how many fields the
 * line had (count + 1 means "more than count") and the first problem in field order (0 when
 * none; see REASON_*). Every field of the format is written on a well-formed line, so a
 * field the format lacks keeps whatever the caller set once (-1, "not applicable").
 *
 * `lf` is the byte that ends a line (0x0a when parsing a stream, so finding the line and
 * decoding it is one pass; -1 when the range is exactly one record); `c.parsedTo` says where
 * the line ended (lineEnd when no `lf` was found: the line continues in the next chunk).
 */
export function parseFields(
  kinds: Uint8Array,
  buf: Uint8Array,
  lineStart: number,
  lineEnd: number,
  c: ParsedFields,
  lf: number,
): number {
  const count = kinds.length;
  let bad = 0;
  let f = 0;
  let i = lineStart;
  while (i < lineEnd) {
    let b = buf[i]!;
    // spaces separate fields (tabs and other control characters too: one test per byte)
    if (b <= SPACE) {
      if (b === lf) break;
      i += 1;
      continue;
    }
    if (f >= count) {
      const nl = lf < 0 ? -1 : buf.indexOf(lf, i);
      c.parsedTo = nl < 0 || nl > lineEnd ? lineEnd : nl;
      return ((count + 1) << 8) | bad;
    }
    const kind = kinds[f]!;
    const s = i;
    switch (kind) {
      case K_SKIP: {
        i += 1;
        while (i < lineEnd && buf[i]! > SPACE) i += 1;
        break;
      }
      case K_SRCPORT:
      case K_DSTPORT:
      case K_PROTOCOL:
      case K_PACKETS:
      case K_BYTES:
      case K_START:
      case K_END:
      case K_FLAGS: {
        let v = 0;
        let ok = true;
        while (i < lineEnd) {
          b = buf[i]!;
          if (b <= SPACE) break;
          const d = b - ZERO;
          if (d >>> 0 > 9) ok = false;
          v = v * 10 + d;
          i += 1;
        }
        if (!ok || i - s > 16) {
          v = -1;
          if (bad === 0 && !(i - s === 1 && buf[s] === DASH)) bad = REASON_NUMBER + kind;
        } else if (v > INT_MAX[kind]!) {
          v = -1;
          if (bad === 0) bad = REASON_RANGE + kind;
        }
        switch (kind) {
          case K_SRCPORT:
            c.srcport = v | 0;
            break;
          case K_DSTPORT:
            c.dstport = v | 0;
            break;
          case K_PROTOCOL:
            c.protocol = v | 0;
            break;
          case K_PACKETS:
            c.packets = v;
            break;
          case K_BYTES:
            c.bytes = v;
            break;
          case K_START:
            c.start = v;
            break;
          case K_END:
            c.end = v;
            break;
          default:
            c.tcpFlags = v | 0;
        }
        break;
      }
      case K_SRC:
      case K_DST: {
        // IPv4 decoded while finding the field's end (no leading zeros: "010" is octal to some
        // parsers); anything else must be an IPv6 address or "-"
        let value = 0;
        let octet = 0;
        let digits = 0;
        let dots = 0;
        let v4 = true;
        while (i < lineEnd) {
          b = buf[i]!;
          if (b <= SPACE) break;
          const d = b - ZERO;
          if (d >>> 0 <= 9) {
            if (digits === 3 || (digits === 1 && octet === 0)) v4 = false;
            octet = octet * 10 + d;
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
        const isV4 = v4 && dots === 3 && digits > 0 && octet <= 255;
        let text: string | null = null;
        if (!isV4 && !(i - s === 1 && buf[s] === DASH)) {
          const t = i - s <= 45 ? latin1(buf, s, i) : '';
          if (t !== '' && isIPv6(t)) text = t.toLowerCase();
          else if (bad === 0) bad = kind === K_SRC ? REASON_SRCADDR : REASON_DSTADDR;
        }
        if (kind === K_SRC) {
          c.src = isV4 ? (value * 256 + octet) | 0 : 0;
          c.srcV4 = isV4;
          c.srcText = text;
        } else {
          c.dst = isV4 ? (value * 256 + octet) | 0 : 0;
          c.dstV4 = isV4;
          c.dstText = text;
        }
        break;
      }
      default: {
        while (i < lineEnd && buf[i]! > SPACE) i += 1;
        const n = i - s;
        const b0 = buf[s];
        const dash = n === 1 && b0 === DASH;
        if (kind === K_ACTION) {
          // ACCEPT / REJECT, compared byte by byte
          if (
            n === 6 &&
            b0 === 0x41 &&
            buf[s + 1] === 0x43 &&
            buf[s + 2] === 0x43 &&
            buf[s + 3] === 0x45 &&
            buf[s + 4] === 0x50 &&
            buf[s + 5] === 0x54
          )
            c.action = ACTION_ACCEPT;
          else if (
            n === 6 &&
            b0 === 0x52 &&
            buf[s + 1] === 0x45 &&
            buf[s + 2] === 0x4a &&
            buf[s + 3] === 0x45 &&
            buf[s + 4] === 0x43 &&
            buf[s + 5] === 0x54
          )
            c.action = ACTION_REJECT;
          else {
            c.action = ACTION_NONE;
            if (!dash && bad === 0) bad = REASON_ACTION;
          }
        } else if (kind === K_STATUS) {
          if (n === 2 && b0 === 0x4f && buf[s + 1] === 0x4b) c.status = STATUS_OK;
          else if (n === 6 && b0 === 0x4e && latin1(buf, s, i) === 'NODATA')
            c.status = STATUS_NODATA;
          else if (n === 8 && b0 === 0x53 && latin1(buf, s, i) === 'SKIPDATA')
            c.status = STATUS_SKIPDATA;
          else {
            c.status = STATUS_NONE;
            if (!dash && bad === 0) bad = REASON_STATUS;
          }
        } else {
          c.dstIsAwsService = !dash;
        }
      }
    }
    f += 1;
  }
  c.parsedTo = i;
  return (f << 8) | bad;
}

function latin1(buf: Uint8Array, s: number, e: number): string {
  return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('latin1', s, e);
}

/** Sets the fields a format lacks to "not applicable" (call when the format changes). */
export function resetFields(c: ParsedFields): void {
  c.srcport = -1;
  c.dstport = -1;
  c.protocol = -1;
  c.packets = -1;
  c.bytes = -1;
  c.start = -1;
  c.end = -1;
  c.tcpFlags = -1;
  c.src = 0;
  c.dst = 0;
  c.srcV4 = false;
  c.dstV4 = false;
  c.srcText = null;
  c.dstText = null;
  c.action = ACTION_NONE;
  c.status = STATUS_NONE;
  c.dstIsAwsService = false;
}
