import { grown, type NumberColumn } from '../typed-arrays.ts';
import { ipv4ToString, ipv6ToString } from './address.ts';
import { communityIdFromWords } from './community-id.ts';
import type { Conversation, TopTalker } from './types.ts';

/**
 * Bidirectional conversation table, struct-of-arrays in typed columns so 100,000s of flows
 * cost ~120 bytes each and no per-packet allocation. TCP/UDP are keyed by 5-tuple (TCP split
 * into streams when a port pair is reused by a new SYN), other IP protocols by address pair.
 * Addresses are four 32-bit words (IPv4 in word 3, flagged by `v6 = 0`).
 */

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;
const FLAG_NAMES: [number, string][] = [
  [TCP_SYN, 'SYN'],
  [TCP_ACK, 'ACK'],
  [TCP_FIN, 'FIN'],
  [TCP_RST, 'RST'],
  [TCP_PSH, 'PSH'],
  [TCP_URG, 'URG'],
  [TCP_ECE, 'ECE'],
  [TCP_CWR, 'CWR'],
];

// per-conversation TCP state bits
const ST_FIN_A = 1;
const ST_FIN_B = 2;
const ST_RST = 4;
const ST_SYN_SEQ = 8;

/** tcpFlags arrays shared per flag combination (read-only by convention). */
const FLAG_LISTS: string[][] = Array.from({ length: 256 }, (_, bits) =>
  FLAG_NAMES.filter(([bit]) => bits & bit).map(([, n]) => n),
);

const PROTO_NAMES: Record<number, string> = { 6: 'tcp', 17: 'udp', 1: 'icmp', 58: 'icmpv6' };

export function protocolName(proto: number): string {
  return PROTO_NAMES[proto] ?? `ip-${proto}`;
}

export class ConversationTable {
  count = 0;
  /** TCP streams created (the next stream index). */
  streams = 0;
  dropped = 0;
  readonly limit: number;

  /** Result of the last `lookup`: true when the packet went B → A. */
  reversed = false;
  /** Set by `lookup` when a TCP SYN reused the tuple of a closed stream. */
  replacedStream = -1;

  #cap = 0;
  #heads: Int32Array = new Int32Array(0);
  #mask = 0;
  next: Int32Array = new Int32Array(0);
  hash: Int32Array = new Int32Array(0);
  proto: Uint8Array = new Uint8Array(0);
  v6: Uint8Array = new Uint8Array(0);
  flags: Uint8Array = new Uint8Array(0);
  state: Uint8Array = new Uint8Array(0);
  icmpType: Uint8Array = new Uint8Array(0);
  icmpCode: Uint8Array = new Uint8Array(0);
  /** 8 words per conversation: A's four, then B's four. */
  addr: Uint32Array = new Uint32Array(0);
  aPort: Uint16Array = new Uint16Array(0);
  bPort: Uint16Array = new Uint16Array(0);
  synSeq: Uint32Array = new Uint32Array(0);
  streamIndex: Int32Array = new Int32Array(0);
  pAB: Float64Array = new Float64Array(0);
  pBA: Float64Array = new Float64Array(0);
  bAB: Float64Array = new Float64Array(0);
  bBA: Float64Array = new Float64Array(0);
  start: Float64Array = new Float64Array(0);
  end: Float64Array = new Float64Array(0);

  constructor(limit: number) {
    this.limit = limit;
    this.#grow(64);
  }

  #grow(cap: number): void {
    const n = this.count;
    const g = <T extends NumberColumn>(old: T, width = 1): T => grown(old, cap * width, n * width);
    this.next = g(this.next);
    this.hash = g(this.hash);
    this.proto = g(this.proto);
    this.v6 = g(this.v6);
    this.flags = g(this.flags);
    this.state = g(this.state);
    this.icmpType = g(this.icmpType);
    this.icmpCode = g(this.icmpCode);
    this.addr = g(this.addr, 8);
    this.aPort = g(this.aPort);
    this.bPort = g(this.bPort);
    this.synSeq = g(this.synSeq);
    this.streamIndex = g(this.streamIndex);
    this.pAB = g(this.pAB);
    this.pBA = g(this.pBA);
    this.bAB = g(this.bAB);
    this.bBA = g(this.bBA);
    this.start = g(this.start);
    this.end = g(this.end);
    this.#cap = cap;
    // rehash into a head table of the same size (chains stay short at load factor ≤ 1)
    this.#heads = new Int32Array(cap).fill(-1);
    this.#mask = cap - 1;
    for (let i = 0; i < n; i++) {
      const b = this.hash[i]! & this.#mask;
      this.next[i] = this.#heads[b]!;
      this.#heads[b] = i;
    }
  }

  /**
   * Find or create the conversation for one packet. `s`/`d` are the address words (IPv4:
   * s3/d3 only). Returns the index, or -1 when the table is full. Sets `reversed`.
   */
  lookup(
    proto: number,
    isV6: number,
    x: Uint32Array,
    w: number,
    sport: number,
    dport: number,
    tcpFlags: number,
  ): number {
    const s0 = x[w]!;
    const s1 = x[w + 1]!;
    const s2 = x[w + 2]!;
    const s3 = x[w + 3]!;
    const d0 = x[w + 4]!;
    const d1 = x[w + 5]!;
    const d2 = x[w + 6]!;
    const d3 = x[w + 7]!;
    const seq = x[w + 8]!;
    this.#seq = seq;
    const hs = mixEndpoint(s0, s1, s2, s3, sport);
    const hd = mixEndpoint(d0, d1, d2, d3, dport);
    const h = Math.imul((hs + hd) ^ (proto * 0x9e3779b1), 0x85ebca6b) ^ isV6;
    const heads = this.#heads;
    const addr = this.addr;
    this.replacedStream = -1;
    for (let i = heads[h & this.#mask]!; i >= 0; i = this.next[i]!) {
      if (this.hash[i] !== h || this.proto[i] !== proto || this.v6[i] !== isV6) continue;
      const o = i * 8;
      let rev: boolean;
      if (
        addr[o + 3] === s3 &&
        addr[o + 7] === d3 &&
        this.aPort[i] === sport &&
        this.bPort[i] === dport &&
        addr[o] === s0 &&
        addr[o + 1] === s1 &&
        addr[o + 2] === s2 &&
        addr[o + 4] === d0 &&
        addr[o + 5] === d1 &&
        addr[o + 6] === d2
      ) {
        rev = false;
      } else if (
        addr[o + 3] === d3 &&
        addr[o + 7] === s3 &&
        this.aPort[i] === dport &&
        this.bPort[i] === sport &&
        addr[o] === d0 &&
        addr[o + 1] === d1 &&
        addr[o + 2] === d2 &&
        addr[o + 4] === s0 &&
        addr[o + 5] === s1 &&
        addr[o + 6] === s2
      ) {
        rev = true;
      } else {
        continue;
      }
      if (proto === 6 && (tcpFlags & (TCP_SYN | TCP_ACK)) === TCP_SYN) {
        const st = this.state[i]!;
        const closed =
          (st & ST_RST) !== 0 || (st & (ST_FIN_A | ST_FIN_B)) === (ST_FIN_A | ST_FIN_B);
        const newIsn = !rev && (st & ST_SYN_SEQ) !== 0 && this.synSeq[i] !== seq;
        if (closed || newIsn) {
          this.replacedStream = i;
          break; // a new stream on a reused tuple
        }
      }
      this.reversed = rev;
      return i;
    }
    if (this.count >= this.limit) {
      this.dropped++;
      return -1;
    }
    if (this.count >= this.#cap) this.#grow(this.#cap * 2);
    const i = this.count++;
    const b = h & this.#mask;
    this.next[i] = this.#heads[b]!;
    this.#heads[b] = i;
    this.hash[i] = h;
    this.proto[i] = proto;
    this.v6[i] = isV6;
    this.flags[i] = 0;
    this.state[i] = 0;
    const o = i * 8;
    const a = this.addr;
    a[o] = s0;
    a[o + 1] = s1;
    a[o + 2] = s2;
    a[o + 3] = s3;
    a[o + 4] = d0;
    a[o + 5] = d1;
    a[o + 6] = d2;
    a[o + 7] = d3;
    this.aPort[i] = sport;
    this.bPort[i] = dport;
    this.pAB[i] = 0;
    this.pBA[i] = 0;
    this.bAB[i] = 0;
    this.bBA[i] = 0;
    this.start[i] = Number.NaN;
    this.end[i] = Number.NaN;
    this.streamIndex[i] = proto === 6 ? this.streams++ : -1;
    this.reversed = false;
    return i;
  }

  /** Capture clock for `count1` (set once per record; NaN when the record has no time). */
  now = Number.NaN;
  /** TCP sequence number of the packet being counted (set by `lookup`). */
  #seq = 0;

  /** Account one packet of `bytes` original length. */
  count1(i: number, rev: boolean, bytes: number, tcpFlags: number): void {
    const ts = this.now;
    if (rev) {
      this.pBA[i]!++;
      this.bBA[i]! += bytes;
    } else {
      this.pAB[i]!++;
      this.bAB[i]! += bytes;
    }
    if (!Number.isNaN(ts)) {
      if (!(this.start[i]! <= ts)) this.start[i] = ts;
      if (!(this.end[i]! >= ts)) this.end[i] = ts;
    }
    if (this.proto[i] === 6) {
      this.flags[i]! |= tcpFlags;
      let st = this.state[i]!;
      if (tcpFlags & TCP_FIN) st |= rev ? ST_FIN_B : ST_FIN_A;
      if (tcpFlags & TCP_RST) st |= ST_RST;
      if ((tcpFlags & (TCP_SYN | TCP_ACK)) === TCP_SYN && !rev && (st & ST_SYN_SEQ) === 0) {
        st |= ST_SYN_SEQ;
        this.synSeq[i] = this.#seq;
      }
      this.state[i] = st;
    }
  }

  isClosed(i: number): boolean {
    const st = this.state[i]!;
    return (st & ST_RST) !== 0 || (st & (ST_FIN_A | ST_FIN_B)) === (ST_FIN_A | ST_FIN_B);
  }

  addrString(i: number, side: 0 | 1): string {
    const o = i * 8 + side * 4;
    const a = this.addr;
    return this.v6[i]
      ? ipv6ToString(a[o]!, a[o + 1]!, a[o + 2]!, a[o + 3]!)
      : ipv4ToString(a[o + 3]!);
  }

  communityId(i: number): string {
    const proto = this.proto[i]!;
    const icmp = proto === 1 || proto === 58;
    return communityIdFromWords(
      proto,
      this.v6[i] === 1,
      this.addr,
      i * 8,
      i * 8 + 4,
      icmp ? this.icmpType[i]! : this.aPort[i]!,
      icmp ? this.icmpCode[i]! : this.bPort[i]!,
    );
  }

  toConversation(i: number): Conversation {
    const proto = this.proto[i]!;
    const flags = this.flags[i]!;
    const c: Conversation = {
      protocol: protocolName(proto),
      a: { addr: this.addrString(i, 0), port: this.aPort[i]! },
      b: { addr: this.addrString(i, 1), port: this.bPort[i]! },
      packetsAtoB: this.pAB[i]!,
      bytesAtoB: this.bAB[i]!,
      packetsBtoA: this.pBA[i]!,
      bytesBtoA: this.bBA[i]!,
      start: Number.isNaN(this.start[i]!) ? 0 : this.start[i]!,
      end: Number.isNaN(this.end[i]!) ? 0 : this.end[i]!,
      tcpFlags: proto === 6 ? [...FLAG_LISTS[flags]!] : [],
      communityId: this.communityId(i),
    };
    if (proto === 6) c.streamIndex = this.streamIndex[i]!;
    return c;
  }

  /**
   * Conversation `i` as the compact JSON object of `tapline summarize --json` (the issue's
   * keys: protocol, a, b, packets and bytes each way, start, end, communityId), exactly what
   * `JSON.stringify` makes of those fields of `toConversation(i)`, built straight from the
   * columns (no object per conversation). Every string here is ours (protocol names, address
   * text, base64) and needs no escaping.
   */
  compactJson(i: number): string {
    const start = this.start[i]!;
    const end = this.end[i]!;
    return (
      `{"protocol":"${protocolName(this.proto[i]!)}",` +
      `"a":{"addr":"${this.addrString(i, 0)}","port":${this.aPort[i]!}},` +
      `"b":{"addr":"${this.addrString(i, 1)}","port":${this.bPort[i]!}},` +
      `"packetsAtoB":${jsonNumber(this.pAB[i]!)},"bytesAtoB":${jsonNumber(this.bAB[i]!)},` +
      `"packetsBtoA":${jsonNumber(this.pBA[i]!)},"bytesBtoA":${jsonNumber(this.bBA[i]!)},` +
      `"start":${Number.isNaN(start) ? '0' : jsonNumber(start)},` +
      `"end":${Number.isNaN(end) ? '0' : jsonNumber(end)},` +
      `"communityId":"${this.communityId(i)}"}`
    );
  }

  all(): Conversation[] {
    const out: Conversation[] = new Array(this.count);
    for (let i = 0; i < this.count; i++) out[i] = this.toConversation(i);
    return out;
  }

  /**
   * The `n` addresses with the most bytes (then packets) over all conversations. IPv4
   * addresses are totalled in an open-addressing table of 32-bit keys (no object per
   * address), IPv6 by text; ties beyond the cut go to the address seen first (IPv4 before
   * IPv6), and the winners are ordered by bytes, packets, then address text.
   */
  topTalkers(n: number): TopTalker[] {
    if (n <= 0 || this.count === 0) return [];
    const a = this.addr;
    let slots = 16;
    while (slots < this.count * 4) slots *= 2;
    const mask = slots - 1;
    const slotOf = new Int32Array(slots).fill(-1);
    const keys = new Uint32Array(this.count * 2);
    const packets4 = new Float64Array(this.count * 2);
    const bytes4 = new Float64Array(this.count * 2);
    let n4 = 0;
    const v6 = new Map<string, { packets: number; bytes: number }>();
    for (let i = 0; i < this.count; i++) {
      const packets = this.pAB[i]! + this.pBA[i]!;
      const bytes = this.bAB[i]! + this.bBA[i]!;
      for (let side = 0; side < 2; side++) {
        if (this.v6[i]) {
          const key = this.addrString(i, side as 0 | 1);
          let t = v6.get(key);
          if (!t) {
            t = { packets: 0, bytes: 0 };
            v6.set(key, t);
          }
          t.packets += packets;
          t.bytes += bytes;
          continue;
        }
        const key = a[i * 8 + side * 4 + 3]!;
        let h = Math.imul(key, 0x9e3779b1) >>> 0;
        let e: number;
        for (;;) {
          e = slotOf[h & mask]!;
          if (e < 0 || keys[e] === key) break;
          h++;
        }
        if (e < 0) {
          e = n4++;
          slotOf[h & mask] = e;
          keys[e] = key;
        }
        packets4[e]! += packets;
        bytes4[e]! += bytes;
      }
    }
    // candidates ranked by bytes, packets, then first seen (IPv4 entries before IPv6 ones)
    const six = [...v6];
    const total = n4 + six.length;
    const bytesOf = (r: number) => (r < n4 ? bytes4[r]! : six[r - n4]![1].bytes);
    const packetsOf = (r: number) => (r < n4 ? packets4[r]! : six[r - n4]![1].packets);
    const before = (x: number, y: number) => {
      const bx = bytesOf(x);
      const by = bytesOf(y);
      if (bx !== by) return bx > by;
      const px = packetsOf(x);
      const py = packetsOf(y);
      if (px !== py) return px > py;
      return x < y;
    };
    const best: number[] = [];
    for (let r = 0; r < total; r++) {
      if (best.length === n && !before(r, best[n - 1]!)) continue;
      let k = best.length < n ? best.length : n - 1;
      best[k] = r;
      while (k > 0 && before(r, best[k - 1]!)) {
        best[k] = best[k - 1]!;
        best[k - 1] = r;
        k--;
      }
    }
    const top = best.map((r) => ({
      addr: r < n4 ? ipv4ToString(keys[r]!) : six[r - n4]![0],
      packets: packetsOf(r),
      bytes: bytesOf(r),
    }));
    return top.sort(
      (x, y) => y.bytes - x.bytes || y.packets - x.packets || (x.addr < y.addr ? -1 : 1),
    );
  }
}

/** A number as JSON writes it. */
function jsonNumber(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}

function mixEndpoint(w0: number, w1: number, w2: number, w3: number, port: number): number {
  let h = Math.imul(w3 ^ (port << 16) ^ port, 0xcc9e2d51);
  h = Math.imul((h << 15) | (h >>> 17), 0x1b873593);
  h ^= Math.imul(w0 ^ w1 ^ w2, 0x27d4eb2f);
  return (h ^ (h >>> 13)) | 0;
}
