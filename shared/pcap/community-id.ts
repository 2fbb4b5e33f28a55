/**
 * Community ID v1 (https://github.com/corelight/community-id-spec): base64 SHA-1 over
 * seed, ordered addresses, protocol, a pad byte and ordered ports (ICMP: type/code mapped
 * to port equivalents), prefixed "1:".
 *
 * The hash input is at most 40 bytes (IPv6), a single SHA-1 block, so SHA-1 is computed here
 * on one preallocated block instead of through node:crypto: one conversation costs well under
 * a microsecond, which matters at 100,000s of flows. Checked against the spec's baseline
 * vectors and node:crypto in test/unit/pcap-community-id.test.ts.
 */

const ICMP4_COUNTERPART: Record<number, number> = {
  8: 0,
  0: 8,
  13: 14,
  14: 13,
  15: 16,
  16: 15,
  10: 9,
  9: 10,
  17: 18,
  18: 17,
};
const ICMP6_COUNTERPART: Record<number, number> = {
  128: 129,
  129: 128,
  133: 134,
  134: 133,
  135: 136,
  136: 135,
  130: 131,
  131: 130,
  139: 140,
  140: 139,
  144: 145,
  145: 144,
};

export interface FlowTuple {
  /** 4 bytes (IPv4) or 16 bytes (IPv6), network order. */
  src: Uint8Array;
  dst: Uint8Array;
  proto: number;
  /** TCP/UDP/SCTP ports; ICMP/ICMPv6: type and code. Ignored for other protocols. */
  sport: number;
  dport: number;
}

function compare(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  }
  return 0;
}

const block = new Uint8Array(64);
const W = new Int32Array(80);
const digest = new Uint8Array(20);
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

const B64_CODES = Uint8Array.from(B64, (c) => c.charCodeAt(0));

/** SHA-1 of block[0, len) for len ≤ 55 (one block), into `digest`. */
function sha1OneBlock(len: number): void {
  block.fill(0, len);
  block[len] = 0x80;
  const bits = len * 8;
  block[62] = (bits >>> 8) & 255;
  block[63] = bits & 255;
  for (let i = 0; i < 16; i++) {
    const j = i * 4;
    W[i] = (block[j]! << 24) | (block[j + 1]! << 16) | (block[j + 2]! << 8) | block[j + 3]!;
  }
  for (let i = 16; i < 80; i++) {
    const x = W[i - 3]! ^ W[i - 8]! ^ W[i - 14]! ^ W[i - 16]!;
    W[i] = (x << 1) | (x >>> 31);
  }
  let a = 0x67452301;
  let b = 0xefcdab89 | 0;
  let c = 0x98badcfe | 0;
  let d = 0x10325476;
  let e = 0xc3d2e1f0 | 0;
  // four rounds of 20 steps, each loop with its own function and constant (no per-step branch)
  for (let i = 0; i < 20; i++) {
    const t = (((a << 5) | (a >>> 27)) + ((b & c) | (~b & d)) + e + 0x5a827999 + W[i]!) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = t;
  }
  for (let i = 20; i < 40; i++) {
    const t = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + 0x6ed9eba1 + W[i]!) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = t;
  }
  for (let i = 40; i < 60; i++) {
    const t =
      (((a << 5) | (a >>> 27)) + ((b & c) | (b & d) | (c & d)) + e + (0x8f1bbcdc | 0) + W[i]!) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = t;
  }
  for (let i = 60; i < 80; i++) {
    const t = (((a << 5) | (a >>> 27)) + (b ^ c ^ d) + e + (0xca62c1d6 | 0) + W[i]!) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = t;
  }
  putWord(0, (0x67452301 + a) | 0);
  putWord(4, (0xefcdab89 + b) | 0);
  putWord(8, (0x98badcfe + c) | 0);
  putWord(12, (0x10325476 + d) | 0);
  putWord(16, (0xc3d2e1f0 + e) | 0);
}

function putWord(at: number, h: number): void {
  digest[at] = h >>> 24;
  digest[at + 1] = (h >>> 16) & 255;
  digest[at + 2] = (h >>> 8) & 255;
  digest[at + 3] = h & 255;
}

/** "1:" + base64 of the 20-byte digest (28 characters, one '=' of padding). */
const idCodes = new Uint16Array(30);
idCodes[0] = 0x31; // '1'
idCodes[1] = 0x3a; // ':'
idCodes[29] = 0x3d; // '='

function digestId(): string {
  let o = 2;
  for (let i = 0; i < 18; i += 3) {
    const n = (digest[i]! << 16) | (digest[i + 1]! << 8) | digest[i + 2]!;
    idCodes[o] = B64_CODES[n >>> 18]!;
    idCodes[o + 1] = B64_CODES[(n >>> 12) & 63]!;
    idCodes[o + 2] = B64_CODES[(n >>> 6) & 63]!;
    idCodes[o + 3] = B64_CODES[n & 63]!;
    o += 4;
  }
  const n = (digest[18]! << 16) | (digest[19]! << 8);
  idCodes[26] = B64_CODES[n >>> 18]!;
  idCodes[27] = B64_CODES[(n >>> 12) & 63]!;
  idCodes[28] = B64_CODES[(n >>> 6) & 63]!;
  return String.fromCharCode.apply(null, idCodes as unknown as number[]);
}

function putBlockWord(at: number, w: number): void {
  block[at] = w >>> 24;
  block[at + 1] = (w >>> 16) & 255;
  block[at + 2] = (w >>> 8) & 255;
  block[at + 3] = w & 255;
}

/**
 * Community ID straight from 32-bit address words (big-endian, as the decoder keeps them:
 * IPv4 in word 3 of each side), without building byte arrays: the conversation table calls
 * this once per conversation. Same result as `communityId` on the equivalent bytes.
 */
export function communityIdFromWords(
  proto: number,
  v6: boolean,
  x: Uint32Array,
  src: number,
  dst: number,
  sport: number,
  dport: number,
  seed = 0,
): string {
  const hasPorts = proto === 6 || proto === 17 || proto === 132 || proto === 1 || proto === 58;
  let swap = false;
  let oneWay = false;
  if (proto === 1 || proto === 58) {
    const counterpart = (proto === 1 ? ICMP4_COUNTERPART : ICMP6_COUNTERPART)[sport];
    if (counterpart === undefined) oneWay = true;
    else dport = counterpart;
  }
  if (!oneWay) {
    // unsigned word-by-word comparison = byte-wise lexicographic comparison
    let c = 0;
    for (let k = v6 ? 0 : 3; k < 4 && c === 0; k++) {
      const s = x[src + k]!;
      const d = x[dst + k]!;
      if (s !== d) c = s < d ? -1 : 1;
    }
    swap = c > 0 || (c === 0 && hasPorts && sport > dport);
  }
  const first = swap ? dst : src;
  const second = swap ? src : dst;
  block[0] = (seed >> 8) & 255;
  block[1] = seed & 255;
  let o = 2;
  if (v6) {
    for (let k = 0; k < 4; k++) putBlockWord(o + 4 * k, x[first + k]!);
    for (let k = 0; k < 4; k++) putBlockWord(o + 16 + 4 * k, x[second + k]!);
    o += 32;
  } else {
    putBlockWord(o, x[first + 3]!);
    putBlockWord(o + 4, x[second + 3]!);
    o += 8;
  }
  block[o++] = proto;
  block[o++] = 0;
  if (hasPorts) {
    const p1 = swap ? dport : sport;
    const p2 = swap ? sport : dport;
    block[o++] = (p1 >> 8) & 255;
    block[o++] = p1 & 255;
    block[o++] = (p2 >> 8) & 255;
    block[o++] = p2 & 255;
  }
  sha1OneBlock(o);
  return digestId();
}

export function communityId(t: FlowTuple, seed = 0): string {
  let { src, dst, sport, dport } = t;
  const { proto } = t;
  const hasPorts = proto === 6 || proto === 17 || proto === 132 || proto === 1 || proto === 58;
  let oneWay = false;
  if (proto === 1 || proto === 58) {
    const counterpart = (proto === 1 ? ICMP4_COUNTERPART : ICMP6_COUNTERPART)[sport];
    if (counterpart === undefined) oneWay = true;
    else dport = counterpart;
  }
  if (!oneWay) {
    const c = compare(src, dst);
    if (c > 0 || (c === 0 && hasPorts && sport > dport)) {
      [src, dst] = [dst, src];
      [sport, dport] = [dport, sport];
    }
  }
  block[0] = (seed >> 8) & 255;
  block[1] = seed & 255;
  block.set(src, 2);
  block.set(dst, 2 + src.length);
  let o = 2 + src.length * 2;
  block[o++] = proto;
  block[o++] = 0;
  if (hasPorts) {
    block[o++] = (sport >> 8) & 255;
    block[o++] = sport & 255;
    block[o++] = (dport >> 8) & 255;
    block[o++] = dport & 255;
  }
  sha1OneBlock(o);
  return digestId();
}
