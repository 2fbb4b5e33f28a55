// Fast path of the flow-log field parser (see shared/flowlogs/field-parser.ts): strictly
// regular lines only (fields separated by one space, LF at the end, IPv4 addresses, digits,
// ACCEPT/REJECT, OK); any other line is marked for the JavaScript parser.
//
// The caller puts a 0 byte right after the input (IN_CAPACITY leaves room for it): every loop
// over a field's bytes stops at a byte <= 32, so none of them checks for the end itself; the
// end is checked once per field.

const KINDS: usize = 1 << 16;
const OUT: usize = 1 << 20;
export const MAX_RECORDS: i32 = 16384;
export const STRIDE: i32 = 16;
const IN: usize = OUT + <usize>(MAX_RECORDS * STRIDE * 8);
export const IN_CAPACITY: i32 = (1 << 20) - 16;

const K_SKIP: u8 = 0;
const K_SRCPORT: u8 = 1;
const K_DSTPORT: u8 = 2;
const K_PROTOCOL: u8 = 3;
const K_FLAGS: u8 = 8;
const K_SRC: u8 = 9;
const K_DST: u8 = 10;
const K_ACTION: u8 = 11;
const K_STATUS: u8 = 12;

let stopAt: i32 = 0;

export function kindsOffset(): usize { return KINDS; }
export function inputOffset(): usize { return IN; }
export function outputOffset(): usize { return OUT; }
export function stop(): i32 { return stopAt; }

@inline function put(n: i32, k: i32, v: f64): void {
  store<f64>(OUT + (<usize>(n * STRIDE + k) << 3), v);
}

/**
 * The value of the first `n` (1-8) bytes of `x` (little-endian: the first byte is the most
 * significant digit), which must be ASCII digits: the bytes beyond `n` are shifted out, and
 * the eight digits are combined pairwise by multiplication (Lemire's SWAR method).
 */
@inline function eightDigits(x: u64, n: i32): u64 {
  x = (x - 0x3030303030303030) << (<u64>(8 - n) << 3);
  x = x * 10 + (x >> 8);
  return (
    ((x & 0x000000ff000000ff) * (100 + (<u64>1000000 << 32)) +
      ((x >> 16) & 0x000000ff000000ff) * (1 + (<u64>10000 << 32))) >> 32
  );
}

/** Parses lines in [from, len) of the input; returns how many records it wrote. */
export function parse(count: i32, from: i32, len: i32): i32 {
  const end: usize = IN + <usize>len;
  let p: usize = IN + <usize>from;
  let n: i32 = 0;
  // slots of fields the format lacks: written once per record ("not applicable"), the others
  // are written by their field
  let absent: u32 = (0xff << 2) | (3 << 10);
  for (let k = 0; k < count; k++) {
    const kind = <u32>load<u8>(KINDS + <usize>k);
    if (kind >= 1 && kind <= 10) absent &= ~(<u32>1 << (kind + 1));
  }
  while (n < MAX_RECORDS && p < end) {
    const ls = p;
    let ok = true;
    let f: i32 = 0;
    if (absent != 0) {
      for (let k = 2; k < 10; k++) if (absent & (<u32>1 << k)) put(n, k, -1);
      if (absent & (1 << 10)) put(n, 10, 0);
      if (absent & (1 << 11)) put(n, 11, 0);
    }
    let meta: i32 = 3 << 2; // status NONE until a log-status field says OK
    while (true) {
      if (p >= end) { stopAt = <i32>(ls - IN); return n; }
      let b = load<u8>(p);
      if (b <= 32) { ok = false; break; }
      const kind = load<u8>(KINDS + <usize>f);
      if (kind == K_SKIP) {
        // a field's bytes 16 at a time: the first byte <= 32 (space, LF, the end mark) ends it
        p++;
        while (true) {
          const stops = i8x16.bitmask(i8x16.le_u(v128.load(p), i8x16.splat(32)));
          if (stops != 0) {
            p += <usize>ctz<i32>(stops);
            break;
          }
          p += 16;
        }
      } else if (kind <= K_FLAGS) {
        // a number of 1-15 digits, read 8 digits at a time: the field's length is where its
        // first byte <= 32 is, and every byte before that must be a digit
        const bytes = v128.load(p);
        const stops = i8x16.bitmask(i8x16.le_u(bytes, i8x16.splat(32)));
        if (stops == 0) { ok = false; break; } // 16 bytes or more: not a number we decode
        const digits = ctz<i32>(stops);
        const want = (1 << digits) - 1;
        const isDigit = i8x16.bitmask(i8x16.le_u(i8x16.sub(bytes, i8x16.splat(48)), i8x16.splat(9)));
        if ((isDigit & want) != want) { ok = false; break; }
        const v: u64 = digits <= 8
          ? eightDigits(load<u64>(p), digits)
          : eightDigits(load<u64>(p), digits - 8) * 100000000 + eightDigits(load<u64>(p + <usize>digits - 8), 8);
        p += <usize>digits;
        if ((kind == K_SRCPORT || kind == K_DSTPORT) && v > 65535) { ok = false; break; }
        if ((kind == K_PROTOCOL || kind == K_FLAGS) && v > 255) { ok = false; break; }
        // slots: 2 srcport 3 dstport 4 protocol 5 packets 6 bytes 7 start 8 end 9 flags
        put(n, 1 + <i32>kind, <f64>v);
      } else if (kind == K_SRC || kind == K_DST) {
        let value: u32 = 0;
        let octet: u32 = 0;
        let digits = 0;
        let dots = 0;
        while (true) {
          b = load<u8>(p);
          if (b <= 32) break;
          const d = <u32>b - 48;
          if (d <= 9) {
            if (digits == 3 || (digits == 1 && octet == 0)) { ok = false; break; }
            octet = octet * 10 + d;
            digits++;
          } else if (b == 46) {
            if (digits == 0 || octet > 255 || dots == 3) { ok = false; break; }
            value = (value << 8) | octet;
            octet = 0;
            digits = 0;
            dots++;
          } else { ok = false; break; }
          p++;
        }
        if (!ok || dots != 3 || digits == 0 || octet > 255) { ok = false; break; }
        put(n, kind == K_SRC ? 10 : 11, <f64><i32>((value << 8) | octet));
        meta |= kind == K_SRC ? 16 : 32;
      } else {
        const s = p;
        while (load<u8>(p) > 32) p++;
        const len2 = p - s;
        if (kind == K_ACTION) {
          if (len2 == 6 && load<u32>(s) == 0x45434341 && load<u16>(s + 4) == 0x5450) meta = (meta & ~3) | 1;
          else if (len2 == 6 && load<u32>(s) == 0x454a4552 && load<u16>(s + 4) == 0x5443) meta = (meta & ~3) | 2;
          else { ok = false; break; }
        } else if (kind == K_STATUS) {
          if (len2 == 2 && load<u16>(s) == 0x4b4f) meta = meta & ~12;
          else { ok = false; break; }
        } else {
          // pkt-dst-aws-service: any value but "-" names a service
          if (!(len2 == 1 && load<u8>(s) == 45)) meta |= 64;
        }
      }
      if (p >= end) { stopAt = <i32>(ls - IN); return n; }
      b = load<u8>(p);
      f++;
      if (f == count) { if (b != 10) ok = false; break; }
      if (b != 32) { ok = false; break; }
      p++;
    }
    if (!ok) {
      while (p < end && load<u8>(p) != 10) p++;
      if (p >= end) { stopAt = <i32>(ls - IN); return n; }
    }
    put(n, 0, <f64>(ls - IN));
    put(n, 1, <f64>(p - IN));
    put(n, 12, ok ? <f64>meta : -1);
    n++;
    p++;
  }
  stopAt = <i32>(p - IN);
  return n;
}
