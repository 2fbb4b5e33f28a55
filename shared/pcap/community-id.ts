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

/** SHA-1 of block[0, len) for len ≤ 55 (one block), into `digest`. */
function sha1OneBlock(len: number): void {
  block.fill(0, len);
  block[len] = 0x80;
  const bits = len * 8;
  block[62] = (bits >>> 8) & 255;
  block[63] = bits & 255;
  for (let i = 0; i < 16; i++) {
    W[i] =
      (block[i * 4]! << 24) |
      (block[i * 4 + 1]! << 16) |
      (block[i * 4 + 2]! << 8) |
      block[i * 4 + 3]!;
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
  for (let i = 0; i < 80; i++) {
    let f: number;
    let k: number;
    if (i < 20) {
      f = (b & c) | (~b & d);
      k = 0x5a827999;
    } else if (i < 40) {
      f = b ^ c ^ d;
      k = 0x6ed9eba1;
    } else if (i < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8f1bbcdc | 0;
    } else {
      f = b ^ c ^ d;
      k = 0xca62c1d6 | 0;
    }
    const t = (((a << 5) | (a >>> 27)) + f + e + k + W[i]!) | 0;
    e = d;
    d = c;
    c = (b << 30) | (b >>> 2);
    b = a;
    a = t;
  }
  const h = [
    (0x67452301 + a) | 0,
    (0xefcdab89 + b) | 0,
    (0x98badcfe + c) | 0,
    (0x10325476 + d) | 0,
    (0xc3d2e1f0 + e) | 0,
  ];
  for (let i = 0; i < 5; i++) {
    digest[i * 4] = h[i]! >>> 24;
    digest[i * 4 + 1] = (h[i]! >>> 16) & 255;
    digest[i * 4 + 2] = (h[i]! >>> 8) & 255;
    digest[i * 4 + 3] = h[i]! & 255;
  }
}

function digestBase64(): string {
  let s = '';
  for (let i = 0; i < 18; i += 3) {
    const n = (digest[i]! << 16) | (digest[i + 1]! << 8) | digest[i + 2]!;
    s += B64[n >>> 18]! + B64[(n >>> 12) & 63]! + B64[(n >>> 6) & 63]! + B64[n & 63]!;
  }
  const n = (digest[18]! << 16) | (digest[19]! << 8);
  return `${s}${B64[n >>> 18]!}${B64[(n >>> 12) & 63]!}${B64[(n >>> 6) & 63]!}=`;
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
  return `1:${digestBase64()}`;
}
