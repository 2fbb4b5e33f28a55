import { createHash } from 'node:crypto';

/**
 * Community ID v1 (https://github.com/corelight/community-id-spec): base64 SHA-1 over
 * seed, ordered addresses, protocol, a pad byte and ordered ports (ICMP: type/code mapped
 * to port equivalents), prefixed "1:".
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

function lessThan(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  }
  return 0;
}

export function communityId(t: FlowTuple, seed = 0): string {
  let { src, dst, sport, dport } = t;
  const { proto } = t;
  const hasPorts = proto === 6 || proto === 17 || proto === 132 || proto === 1 || proto === 58;
  let oneWay = false;
  if (proto === 1 || proto === 58) {
    const map = proto === 1 ? ICMP4_COUNTERPART : ICMP6_COUNTERPART;
    const type = sport;
    const counterpart = map[type];
    if (counterpart === undefined) {
      oneWay = true;
    } else {
      dport = counterpart;
    }
  }
  if (!oneWay) {
    const c = lessThan(src, dst);
    if (c > 0 || (c === 0 && hasPorts && sport > dport)) {
      [src, dst] = [dst, src];
      [sport, dport] = [dport, sport];
    }
  }
  const buf = new Uint8Array(2 + src.length * 2 + 2 + (hasPorts ? 4 : 0));
  buf[0] = (seed >> 8) & 255;
  buf[1] = seed & 255;
  buf.set(src, 2);
  buf.set(dst, 2 + src.length);
  let o = 2 + src.length * 2;
  buf[o++] = proto;
  buf[o++] = 0;
  if (hasPorts) {
    buf[o++] = (sport >> 8) & 255;
    buf[o++] = sport & 255;
    buf[o++] = (dport >> 8) & 255;
    buf[o++] = dport & 255;
  }
  return `1:${createHash('sha1').update(buf).digest('base64')}`;
}
