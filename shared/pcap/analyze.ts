import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { CorruptPcapError, isTaplineError } from '../errors.ts';
import { peekGzip } from '../stream-head.ts';
import { ipv4ToString, ipv6ToString, readU32 } from './address.ts';
import { AnomalyLog } from './anomalies.ts';
import { Carver } from './carve.ts';
import { ConversationTable, TCP_FIN, TCP_RST } from './conversations.ts';
import {
  isHttpRequestLine,
  looksLikeClientHello,
  mayBeHttpRequest,
  parseClientHello,
  parseDns,
  parseHttpRequest,
  tlsRecordLength,
} from './indicators.ts';
import { CaptureReader, type RecordSink } from './reader.ts';
import type {
  AnalyzeOptions,
  CarveChunk,
  CarveSink,
  DnsRecord,
  HttpRecord,
  PcapAnalysis,
  PortZeroPacket,
  StreamInfo,
  TlsRecord,
} from './types.ts';

const DEFAULT_MAX_CONVERSATIONS = 250_000;
const DEFAULT_MAX_RECORDS = 10_000;
const MAX_VLAN_DEPTH = 8;
const MAX_TUNNEL_DEPTH = 4;
const MAX_IPV6_EXT = 16;
/** Scratch words per IP layer: source (4), destination (4), TCP sequence number (1). */
const WORDS_PER_LAYER = 9;
/** ClientHellos spanning segments are reassembled up to this size, for this many streams. */
const MAX_HELLO_BYTES = 16_384 + 5;
const MAX_DNS_TCP_BYTES = 65_535 + 2;
const MAX_PENDING_MESSAGES = 4096;
/** Total bytes held for split messages at once. */
const MAX_PENDING_BYTES = 16 * 1024 * 1024;
const PROGRESS_EVERY = 4 * 1024 * 1024;

const ETH_IPV4 = 0x0800;
const ETH_IPV6 = 0x86dd;
const ETH_ARP = 0x0806;
const ETH_VLAN = 0x8100;
const ETH_QINQ = 0x88a8;
const ETH_QINQ_OLD = 0x9100;
const ETH_MPLS = 0x8847;
const ETH_MPLS_MC = 0x8848;
const ETH_PPPOE = 0x8864;

/** A DNS-over-TCP message or TLS ClientHello spanning segments, being put together. */
interface MessageMeta {
  ts: number;
  src: string;
  dst: string;
  sport: number;
  dport: number;
}

interface PendingMessage extends MessageMeta {
  kind: 'tls' | 'dns';
  buf: Uint8Array;
  have: number;
  need: number;
  nextSeq: number;
}

/** Per-packet protocol layer counters (fixed shape: cheap increments). */
class ProtoCounts {
  eth = 0;
  vlan = 0;
  mpls = 0;
  pppoe = 0;
  sll = 0;
  loopback = 0;
  arp = 0;
  llc = 0;
  ipv4 = 0;
  ipv6 = 0;
  tcp = 0;
  udp = 0;
  icmp = 0;
  icmpv6 = 0;
  vxlan = 0;
  geneve = 0;
  ipip = 0;
  dns = 0;
  tls = 0;
  http = 0;
  ipFragment = 0;
  otherIp = 0;
  otherEthertype = 0;
  otherLink = 0;

  toRecord(): Record<string, number> {
    const names: Record<string, string> = {
      ipFragment: 'ip-fragment',
      otherIp: 'other-ip',
      otherEthertype: 'other-ethertype',
      otherLink: 'other-link',
    };
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(this)) {
      if (typeof v === 'number' && v > 0) out[names[k] ?? k] = v;
    }
    return out;
  }
}

/**
 * The decoder proper: gets records from the CaptureReader and walks link → (VLAN/MPLS/PPPoE)
 * → IP (extension headers, fragments) → TCP/UDP/ICMP, decapsulating VXLAN, GENEVE and
 * IP-in-IP, accounting every IP layer to its conversation.
 */
export class PcapAnalyzer implements RecordSink {
  readonly anomalies: AnomalyLog;
  readonly reader: CaptureReader;
  readonly conversations: ConversationTable;
  readonly carver: Carver | null;
  readonly protocols = new ProtoCounts();
  packets = 0;
  bytes = 0;
  firstTs = Number.NaN;
  lastTs = Number.NaN;
  readonly dns: DnsRecord[] = [];
  readonly tls: TlsRecord[] = [];
  readonly http: HttpRecord[] = [];
  readonly portZero: PortZeroPacket[] = [];
  readonly dropped = { dns: 0, tls: 0, http: 0, portZero: 0, conversations: 0 };
  readonly #maxRecords: number;
  /** (conversation index × 2 + direction) → message being reassembled. */
  readonly #pending = new Map<number, PendingMessage>();
  #pendingBytes = 0;

  // the record being decoded
  #ts = 0;
  /** Seconds and nanoseconds of the record being decoded (typed: no boxing per packet). */
  readonly clock = new Float64Array(2);
  #orig = 0;
  #snapTruncated = false;
  #recStart = 0;
  #recData: Uint8Array = new Uint8Array(0);
  #recCaplen = 0;
  #linkType = 0;
  #sweepCounter = 0;
  /** The IP layer being decoded is a first fragment: its transport length covers more. */
  #firstFragment = false;
  /** Addresses of the IP layers being decoded (typed storage: no boxing of 32-bit words). */
  readonly #words = new Uint32Array(WORDS_PER_LAYER * (MAX_TUNNEL_DEPTH + 2));

  constructor(options: AnalyzeOptions = {}) {
    const limits = options.limits ?? {};
    this.anomalies = new AnomalyLog(limits.maxAnomalySamplesPerKind ?? 5);
    this.reader = new CaptureReader(this, this.anomalies);
    this.conversations = new ConversationTable(
      limits.maxConversations ?? DEFAULT_MAX_CONVERSATIONS,
    );
    this.#maxRecords = limits.maxRecords ?? DEFAULT_MAX_RECORDS;
    const carve = options.carve;
    this.carver =
      carve && carve.mode !== 'off' ? new Carver(carve, this.anomalies, this.clock) : null;
  }

  record(linkType: number, data: Uint8Array, off: number, caplen: number, origlen: number): void {
    const tsSec = this.reader.tsSec;
    const tsNsec = this.reader.tsNsec;
    this.packets++;
    this.bytes += origlen;
    if (!Number.isNaN(tsSec)) {
      const ts = tsSec + tsNsec / 1e9;
      this.#ts = ts;
      this.clock[0] = tsSec;
      this.clock[1] = tsNsec;
      if (!(this.firstTs <= ts)) this.firstTs = ts;
      if (!(this.lastTs >= ts)) this.lastTs = ts;
    } else {
      // no timestamp (SPB): reuse the last one seen
      this.clock[1] = 0;
    }
    this.conversations.now = this.#ts;
    this.#orig = origlen;
    this.#snapTruncated = caplen < origlen;
    this.#recStart = off;
    this.#recData = data;
    this.#recCaplen = caplen;
    this.#linkType = linkType;
    const end = off + caplen;
    switch (linkType) {
      case 1:
        this.#ether(data, off, end, 0);
        break;
      case 101:
      case 12:
      case 14:
        this.#ip(data, off, end, 0, 0);
        break;
      case 228:
        this.#ip(data, off, end, 0, 4);
        break;
      case 229:
        this.#ip(data, off, end, 0, 6);
        break;
      case 113:
        this.protocols.sll++;
        if (caplen < 16) this.#truncatedLink('Linux cooked v1');
        else this.#ethertype((data[off + 14]! << 8) | data[off + 15]!, data, off + 16, end, 0);
        break;
      case 276:
        this.protocols.sll++;
        if (caplen < 20) this.#truncatedLink('Linux cooked v2');
        else this.#ethertype((data[off]! << 8) | data[off + 1]!, data, off + 20, end, 0);
        break;
      case 0:
      case 108:
        this.#loopback(linkType, data, off, end);
        break;
      case -1:
        break; // pcapng packet on an undescribed interface (already an anomaly)
      default:
        this.protocols.otherLink++;
        this.anomalies.add('unsupported-link-type', () => `link type ${linkType} not decoded`);
    }
    if (this.carver !== null && ++this.#sweepCounter >= 4096) {
      this.#sweepCounter = 0;
      this.carver.sweep(this.clock[0]!);
    }
  }

  #truncatedLink(what: string): void {
    this.anomalies.add('truncated-link-header', `${what} header does not fit the record`);
  }

  #loopback(linkType: number, b: Uint8Array, off: number, end: number): void {
    this.protocols.loopback++;
    if (end - off < 4) {
      this.#truncatedLink('loopback');
      return;
    }
    // LINKTYPE_NULL: host byte order of the capturing machine; LOOP: network order
    const be = readU32(b, off);
    const le = (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;
    const family = linkType === 108 ? be : le < 256 ? le : be;
    if (family === 2) this.#ip(b, off + 4, end, 0, 4);
    else if (family === 24 || family === 28 || family === 30 || family === 10)
      this.#ip(b, off + 4, end, 0, 6);
    else {
      // some captures carry an Ethernet type in the second half (Wireshark accepts that too)
      const ethertype = (b[off + 2]! << 8) | b[off + 3]!;
      if (ethertype === ETH_IPV4 || ethertype === ETH_IPV6 || ethertype === ETH_ARP) {
        this.#ethertype(ethertype, b, off + 4, end, 0);
      } else {
        this.protocols.otherLink++;
        this.anomalies.add('unknown-loopback-family', () => `loopback family ${family}`);
      }
    }
  }

  #ether(b: Uint8Array, p: number, end: number, depth: number): void {
    if (end - p < 14) {
      this.#truncatedLink('Ethernet');
      return;
    }
    this.protocols.eth++;
    this.#ethertype((b[p + 12]! << 8) | b[p + 13]!, b, p + 14, end, depth);
  }

  #ethertype(type: number, b: Uint8Array, p: number, end: number, depth: number): void {
    let tags = 0;
    while (type === ETH_VLAN || type === ETH_QINQ || type === ETH_QINQ_OLD) {
      if (++tags > MAX_VLAN_DEPTH) {
        this.anomalies.add('vlan-depth-exceeded', `more than ${MAX_VLAN_DEPTH} VLAN tags`);
        return;
      }
      if (end - p < 4) {
        this.#truncatedLink('VLAN tag');
        return;
      }
      this.protocols.vlan++;
      type = (b[p + 2]! << 8) | b[p + 3]!;
      p += 4;
    }
    switch (type) {
      case ETH_IPV4:
        this.#ip(b, p, end, depth, 4);
        return;
      case ETH_IPV6:
        this.#ip(b, p, end, depth, 6);
        return;
      case ETH_ARP:
        this.protocols.arp++;
        return;
      case ETH_MPLS:
      case ETH_MPLS_MC: {
        this.protocols.mpls++;
        for (let n = 0; n < 16; n++) {
          if (end - p < 4) {
            this.#truncatedLink('MPLS label');
            return;
          }
          const bottom = b[p + 2]! & 1;
          p += 4;
          if (bottom) {
            if (p < end) this.#ip(b, p, end, depth, 0);
            return;
          }
        }
        this.anomalies.add('mpls-depth-exceeded', 'more than 16 MPLS labels');
        return;
      }
      case ETH_PPPOE: {
        this.protocols.pppoe++;
        if (end - p < 8) {
          this.#truncatedLink('PPPoE');
          return;
        }
        const ppp = (b[p + 6]! << 8) | b[p + 7]!;
        if (ppp === 0x0021) this.#ip(b, p + 8, end, depth, 4);
        else if (ppp === 0x0057) this.#ip(b, p + 8, end, depth, 6);
        return;
      }
      default:
        if (type <= 1500) this.protocols.llc++;
        else this.protocols.otherEthertype++;
    }
  }

  /** `expect`: 4 or 6 when the link layer said so, 0 to go by the version nibble. */
  #ip(b: Uint8Array, p: number, end: number, depth: number, expect: number): void {
    if (end - p < 1) {
      if (!this.#snapTruncated) this.anomalies.add('truncated-ip-header', 'no IP header');
      return;
    }
    const version = b[p]! >> 4;
    if ((expect !== 0 && version !== expect) || (version !== 4 && version !== 6)) {
      this.anomalies.add(
        'bad-ip-version',
        () => `IP version ${version} (expected ${expect || '4 or 6'})`,
      );
      return;
    }
    if (version === 4) this.#ipv4(b, p, end, depth);
    else this.#ipv6(b, p, end, depth);
  }

  #ipv4(b: Uint8Array, p: number, end: number, depth: number): void {
    if (end - p < 20) {
      if (!this.#snapTruncated) this.anomalies.add('truncated-ip-header', 'IPv4 header cut short');
      return;
    }
    const ihl = (b[p]! & 15) * 4;
    if (ihl < 20) {
      this.anomalies.add('bad-ipv4-header-length', () => `IPv4 header length ${ihl}`);
      return;
    }
    this.protocols.ipv4++;
    const total = (b[p + 2]! << 8) | b[p + 3]!;
    if (total < ihl) {
      this.anomalies.add('bad-ipv4-total-length', () => `total length ${total} < header ${ihl}`);
      return;
    }
    if (p + ihl > end) {
      if (!this.#snapTruncated) this.anomalies.add('truncated-ip-header', 'IPv4 options cut short');
      return;
    }
    let l4end = end;
    if (p + total <= end) l4end = p + total;
    else {
      // past what was captured: fine if the snaplen cut it, a lie if the frame was shorter
      const frameRoom = this.#orig - (p - this.#recStart);
      if (total > frameRoom) {
        this.anomalies.add(
          'bad-ipv4-total-length',
          () => `total length ${total} > ${frameRoom} bytes left in the frame`,
        );
      }
    }
    const frag = (b[p + 6]! << 8) | b[p + 7]!;
    const fragOff = frag & 0x1fff;
    const proto = b[p + 9]!;
    const w = depth * WORDS_PER_LAYER;
    const x = this.#words;
    x[w] = 0;
    x[w + 1] = 0;
    x[w + 2] = 0;
    x[w + 3] = readU32(b, p + 12);
    x[w + 4] = 0;
    x[w + 5] = 0;
    x[w + 6] = 0;
    x[w + 7] = readU32(b, p + 16);
    this.#firstFragment = false;
    if (fragOff !== 0 || frag & 0x2000) {
      this.protocols.ipFragment++;
      if (fragOff !== 0) return; // no transport header in a non-first fragment
      this.#firstFragment = true;
    }
    this.#transport(proto, 0, w, b, p + ihl, l4end, depth);
  }

  #ipv6(b: Uint8Array, p: number, end: number, depth: number): void {
    if (end - p < 40) {
      if (!this.#snapTruncated) this.anomalies.add('truncated-ip-header', 'IPv6 header cut short');
      return;
    }
    this.protocols.ipv6++;
    const plen = (b[p + 4]! << 8) | b[p + 5]!;
    let l4end = end;
    if (plen === 0) {
      // jumbogram or bogus: take what was captured
    } else if (p + 40 + plen <= end) {
      l4end = p + 40 + plen;
    } else {
      const frameRoom = this.#orig - (p - this.#recStart) - 40;
      if (plen > frameRoom) {
        this.anomalies.add(
          'bad-ipv6-payload-length',
          () => `payload length ${plen} > ${frameRoom} bytes left in the frame`,
        );
      }
    }
    const w = depth * WORDS_PER_LAYER;
    const x = this.#words;
    for (let k = 0; k < 8; k++) x[w + k] = readU32(b, p + 8 + 4 * k);
    let nh = b[p + 6]!;
    let q = p + 40;
    this.#firstFragment = false;
    for (let n = 0; ; n++) {
      if (n > MAX_IPV6_EXT) {
        this.anomalies.add('ipv6-extension-chain', 'too many IPv6 extension headers');
        return;
      }
      if (nh === 0 || nh === 43 || nh === 60 || nh === 135 || nh === 139 || nh === 140) {
        if (q + 2 > l4end) {
          this.#truncExt();
          return;
        }
        const len = (b[q + 1]! + 1) * 8;
        if (q + len > l4end) {
          this.#truncExt();
          return;
        }
        nh = b[q]!;
        q += len;
      } else if (nh === 51) {
        if (q + 2 > l4end) {
          this.#truncExt();
          return;
        }
        const len = (b[q + 1]! + 2) * 4;
        if (q + len > l4end) {
          this.#truncExt();
          return;
        }
        nh = b[q]!;
        q += len;
      } else if (nh === 44) {
        if (q + 8 > l4end) {
          this.#truncExt();
          return;
        }
        const fo = ((b[q + 2]! << 8) | b[q + 3]!) >> 3;
        this.protocols.ipFragment++;
        this.#firstFragment = (b[q + 3]! & 1) === 1;
        nh = b[q]!;
        q += 8;
        if (fo !== 0) return;
      } else if (nh === 59) {
        return;
      } else {
        break;
      }
    }
    this.#transport(nh, 1, w, b, q, l4end, depth);
  }

  #truncExt(): void {
    if (!this.#snapTruncated) {
      this.anomalies.add('truncated-ipv6-extension', 'IPv6 extension header cut short');
    }
  }

  #transport(
    proto: number,
    v6: number,
    w: number,
    b: Uint8Array,
    q: number,
    end: number,
    depth: number,
  ): void {
    const conv = this.conversations;
    let sport = 0;
    let dport = 0;
    if (proto === 6) {
      if (end - q < 20) {
        if (!this.#snapTruncated) this.anomalies.add('truncated-l4-header', 'TCP header cut short');
        return;
      }
      const hlen = (b[q + 12]! >> 4) * 4;
      if (hlen < 20) {
        this.anomalies.add('bad-tcp-header-length', () => `TCP header length ${hlen}`);
        return;
      }
      this.protocols.tcp++;
      sport = (b[q]! << 8) | b[q + 1]!;
      dport = (b[q + 2]! << 8) | b[q + 3]!;
      const seq = readU32(b, q + 4);
      this.#words[w + 8] = seq;
      const flags = b[q + 13]!;
      const i = conv.lookup(6, v6, this.#words, w, sport, dport, flags);
      if (conv.replacedStream >= 0) {
        this.carver?.replaced(conv.replacedStream);
        for (const k of [conv.replacedStream * 2, conv.replacedStream * 2 + 1]) {
          const m = this.#pending.get(k);
          if (m) this.#dropPending(k, m);
        }
      }
      if (sport === 0 || dport === 0) this.#portZero('tcp', v6, w, sport, dport);
      if (i < 0) {
        this.#convLimit();
        return;
      }
      const rev = conv.reversed;
      conv.count1(i, rev, this.#orig, flags);
      if (this.carver !== null) {
        this.carver.packet(
          i,
          this,
          this.#linkType,
          this.#recData,
          this.#recStart,
          this.#recCaplen,
          this.#orig,
        );
        if (flags & (TCP_FIN | TCP_RST) && conv.isClosed(i)) this.carver.closed(i);
      }
      const payload = q + hlen;
      if (payload < end) {
        this.#tcpPayload(i, v6, w, sport, dport, rev ? 1 : 0, b, payload, end);
      }
      return;
    }
    if (proto === 17) {
      if (end - q < 8) {
        if (!this.#snapTruncated) this.anomalies.add('truncated-l4-header', 'UDP header cut short');
        return;
      }
      this.protocols.udp++;
      sport = (b[q]! << 8) | b[q + 1]!;
      dport = (b[q + 2]! << 8) | b[q + 3]!;
      const ulen = (b[q + 4]! << 8) | b[q + 5]!;
      let pend = end;
      if (ulen < 8) {
        if (!(ulen === 0 && v6)) this.anomalies.add('bad-udp-length', () => `UDP length ${ulen}`);
      } else if (q + ulen <= end) {
        pend = q + ulen;
      } else if (!this.#snapTruncated && !this.#firstFragment) {
        this.anomalies.add('bad-udp-length', () => `UDP length ${ulen} > ${end - q} bytes left`);
      }
      if (sport === 0 || dport === 0) this.#portZero('udp', v6, w, sport, dport);
      const i = conv.lookup(17, v6, this.#words, w, sport, dport, 0);
      if (i < 0) this.#convLimit();
      else conv.count1(i, conv.reversed, this.#orig, 0);
      const p = q + 8;
      if (p >= pend) return;
      if (
        sport === 53 ||
        dport === 53 ||
        sport === 5353 ||
        dport === 5353 ||
        sport === 5355 ||
        dport === 5355
      ) {
        this.#dnsMessage(this.#meta(v6, w, sport, dport), b, p, pend, 'udp');
      } else if (dport === 4789 || dport === 6081) {
        this.#tunnel(dport, b, p, pend, depth);
      }
      return;
    }
    if (proto === 1 || proto === 58) {
      if (proto === 1) this.protocols.icmp++;
      else this.protocols.icmpv6++;
      const i = conv.lookup(proto, v6, this.#words, w, 0, 0, 0);
      if (i < 0) {
        this.#convLimit();
        return;
      }
      if (conv.pAB[i] === 0 && conv.pBA[i] === 0 && end - q >= 2) {
        conv.icmpType[i] = b[q]!;
        conv.icmpCode[i] = b[q + 1]!;
      }
      conv.count1(i, conv.reversed, this.#orig, 0);
      return;
    }
    if ((proto === 4 || proto === 41) && depth < MAX_TUNNEL_DEPTH) {
      this.protocols.ipip++;
      this.#accountOther(proto, v6, w);
      this.#ip(b, q, end, depth + 1, proto === 4 ? 4 : 6);
      return;
    }
    this.protocols.otherIp++;
    this.#accountOther(proto, v6, w);
  }

  #accountOther(proto: number, v6: number, w: number): void {
    const conv = this.conversations;
    const i = conv.lookup(proto, v6, this.#words, w, 0, 0, 0);
    if (i < 0) this.#convLimit();
    else conv.count1(i, conv.reversed, this.#orig, 0);
  }

  #convLimit(): void {
    this.dropped.conversations++;
    this.anomalies.add('conversation-limit', `more than ${this.conversations.limit} conversations`);
  }

  #tunnel(port: number, b: Uint8Array, p: number, end: number, depth: number): void {
    if (depth >= MAX_TUNNEL_DEPTH) {
      this.anomalies.add('tunnel-depth-exceeded', `more than ${MAX_TUNNEL_DEPTH} nested tunnels`);
      return;
    }
    if (port === 4789) {
      // VXLAN: flags(1) with the I bit, reserved(3), VNI(3), reserved(1)
      if (end - p < 8 || (b[p]! & 0x08) === 0) return;
      this.protocols.vxlan++;
      this.#ether(b, p + 8, end, depth + 1);
      return;
    }
    // GENEVE: ver(2)/optlen(6), flags, protocol type(2), VNI(3), reserved
    if (end - p < 8 || b[p]! >> 6 !== 0) return;
    const optLen = (b[p]! & 0x3f) * 4;
    const ptype = (b[p + 2]! << 8) | b[p + 3]!;
    const inner = p + 8 + optLen;
    if (inner > end) {
      if (!this.#snapTruncated)
        this.anomalies.add('truncated-tunnel-header', 'GENEVE options cut short');
      return;
    }
    this.protocols.geneve++;
    if (ptype === 0x6558) this.#ether(b, inner, end, depth + 1);
    else this.#ethertype(ptype, b, inner, end, depth + 1);
  }

  /** Address at word offset `o` of the scratch words (IPv4 in the 4th word). */
  #addrAt(v6: number, o: number): string {
    const x = this.#words;
    return v6 ? ipv6ToString(x[o]!, x[o + 1]!, x[o + 2]!, x[o + 3]!) : ipv4ToString(x[o + 3]!);
  }

  #portZero(protocol: 'tcp' | 'udp', v6: number, w: number, sport: number, dport: number): void {
    if (this.portZero.length >= this.#maxRecords) {
      this.dropped.portZero++;
      return;
    }
    this.portZero.push({
      ts: this.#ts,
      src: this.#addrAt(v6, w),
      dst: this.#addrAt(v6, w + 4),
      sport,
      dport,
      protocol,
      length: this.#orig,
    });
  }

  /** Timestamp of the packet being decoded (the last one seen when a record has none). */
  get now(): number {
    return this.#ts;
  }

  /** Describes TCP conversation `i` for the carver; `start` defaults to the current packet's. */
  streamInfo(i: number, start = this.#ts): StreamInfo {
    const c = this.conversations;
    return {
      index: c.streamIndex[i]!,
      a: { addr: c.addrString(i, 0), port: c.aPort[i]! },
      b: { addr: c.addrString(i, 1), port: c.bPort[i]! },
      communityId: c.communityId(i),
      start,
    };
  }

  #dnsMessage(
    meta: MessageMeta,
    b: Uint8Array,
    p: number,
    end: number,
    transport: 'udp' | 'tcp',
  ): void {
    const msg = parseDns(b, p, end);
    if (msg === null) {
      this.anomalies.add('bad-dns', `unparseable DNS message over ${transport}`);
      return;
    }
    this.protocols.dns++;
    if (this.dns.length >= this.#maxRecords) {
      this.dropped.dns++;
      return;
    }
    const rec: DnsRecord = {
      ts: meta.ts,
      src: meta.src,
      dst: meta.dst,
      id: msg.id,
      qname: msg.qname,
      qtype: msg.qtype,
      isResponse: msg.isResponse,
      transport,
    };
    if (msg.isResponse) {
      rec.rcode = msg.rcode;
      rec.answers = msg.answers;
    }
    this.dns.push(rec);
  }

  #tcpPayload(
    i: number,
    v6: number,
    w: number,
    sport: number,
    dport: number,
    dir: number,
    b: Uint8Array,
    p: number,
    end: number,
  ): void {
    const key = i * 2 + dir;
    const seq = this.#words[w + 8]!;
    const pending = this.#pending.size > 0 ? this.#pending.get(key) : undefined;
    if (pending !== undefined) {
      if (seq === pending.nextSeq) {
        this.#continuePending(key, pending, b, p, end);
        return;
      }
      if (((seq - pending.nextSeq) | 0) < 0) return; // retransmission of what we have
      // a gap: give up on this message, parse what we have
      this.#dropPending(key, pending);
      this.#completePending(pending);
    }
    const len = end - p;
    if (sport === 53 || dport === 53) {
      const meta = this.#meta(v6, w, sport, dport);
      if (len >= 2) {
        const msgLen = (b[p]! << 8) | b[p + 1]!;
        if (msgLen + 2 <= len) {
          this.#dnsMessage(meta, b, p + 2, p + 2 + msgLen, 'tcp');
          return;
        }
      }
      this.#startPending(
        key,
        'dns',
        meta,
        seq,
        b,
        p,
        end,
        len >= 2 ? 2 + ((b[p]! << 8) | b[p + 1]!) : 2,
      );
      return;
    }
    if (looksLikeClientHello(b, p, end)) {
      const meta = this.#meta(v6, w, sport, dport);
      const need = Math.min(tlsRecordLength(b, p), MAX_HELLO_BYTES);
      if (len >= need) this.#tlsRecord(meta, b, p, end);
      else this.#startPending(key, 'tls', meta, seq, b, p, end, need);
      return;
    }
    if (mayBeHttpRequest(b, p, end)) {
      if (this.http.length >= this.#maxRecords) {
        // the list is full: count without building strings
        if (isHttpRequestLine(b, p, end)) {
          this.protocols.http++;
          this.dropped.http++;
        }
        return;
      }
      const req = parseHttpRequest(b, p, end);
      if (req === null) return;
      this.protocols.http++;
      this.http.push({
        ts: this.#ts,
        src: this.#addrAt(v6, w),
        dst: this.#addrAt(v6, w + 4),
        sport,
        dport,
        method: req.method,
        host: req.host,
        path: req.path,
        userAgent: req.userAgent,
      });
    }
  }

  #meta(v6: number, w: number, sport: number, dport: number): MessageMeta {
    return {
      ts: this.#ts,
      src: this.#addrAt(v6, w),
      dst: this.#addrAt(v6, w + 4),
      sport,
      dport,
    };
  }

  #startPending(
    key: number,
    kind: 'tls' | 'dns',
    meta: MessageMeta,
    seq: number,
    b: Uint8Array,
    p: number,
    end: number,
    need: number,
  ): void {
    if (
      this.#pending.size >= MAX_PENDING_MESSAGES ||
      this.#pendingBytes + need > MAX_PENDING_BYTES
    ) {
      // too many half messages at once (a flood): parse what this segment has
      this.anomalies.add(
        'reassembly-limit',
        `more than ${MAX_PENDING_MESSAGES} split messages pending`,
      );
      if (kind === 'tls') this.#tlsRecord(meta, b, p, end);
      return;
    }
    const buf = new Uint8Array(Math.max(need, 2));
    this.#pendingBytes += buf.length;
    const n = Math.min(end - p, buf.length);
    buf.set(b.subarray(p, p + n));
    this.#pending.set(key, {
      kind,
      buf,
      have: n,
      need: buf.length,
      nextSeq: (seq + (end - p)) >>> 0,
      ...meta,
    });
  }

  #continuePending(key: number, m: PendingMessage, b: Uint8Array, p: number, end: number): void {
    let n = Math.min(end - p, m.need - m.have);
    m.buf.set(b.subarray(p, p + n), m.have);
    m.have += n;
    m.nextSeq = (m.nextSeq + (end - p)) >>> 0;
    if (m.kind === 'dns' && m.need === 2 && m.have === 2) {
      // the length prefix arrived: size the buffer for the message
      const total = Math.min(2 + ((m.buf[0]! << 8) | m.buf[1]!), MAX_DNS_TCP_BYTES);
      if (this.#pendingBytes + total > MAX_PENDING_BYTES) {
        this.anomalies.add('reassembly-limit', 'split DNS messages exceed the reassembly budget');
        this.#dropPending(key, m);
        return;
      }
      const grown = new Uint8Array(total);
      this.#pendingBytes += total - m.buf.length;
      grown.set(m.buf.subarray(0, 2));
      m.buf = grown;
      m.need = total;
      const more = Math.min(end - p - n, total - 2);
      if (more > 0) {
        m.buf.set(b.subarray(p + n, p + n + more), 2);
        m.have += more;
        n += more;
      }
    }
    if (m.have >= m.need) {
      this.#dropPending(key, m);
      this.#completePending(m);
    }
  }

  #dropPending(key: number, m: PendingMessage): void {
    this.#pending.delete(key);
    this.#pendingBytes -= m.buf.length;
  }

  #completePending(m: PendingMessage): void {
    if (m.kind === 'tls') this.#tlsRecord(m, m.buf, 0, m.have);
    else if (m.have > 2) this.#dnsMessage(m, m.buf, 2, m.have, 'tcp');
  }

  #tlsRecord(meta: MessageMeta, b: Uint8Array, p: number, end: number): void {
    const hello = parseClientHello(b, p, end);
    if (hello === null) {
      this.anomalies.add('bad-tls-client-hello', 'unparseable TLS ClientHello');
      return;
    }
    this.protocols.tls++;
    if (this.tls.length >= this.#maxRecords) {
      this.dropped.tls++;
      return;
    }
    this.tls.push({
      ts: meta.ts,
      src: meta.src,
      dst: meta.dst,
      sport: meta.sport,
      dport: meta.dport,
      sni: hello.sni,
      version: hello.version,
      alpn: hello.alpn,
    });
  }

  /** Parse split messages still incomplete at end of input (what arrived of them). */
  finishPending(): void {
    for (const pending of this.#pending.values()) this.#completePending(pending);
    this.#pending.clear();
    this.#pendingBytes = 0;
  }

  result(
    format: PcapAnalysis['format'],
    truncated: boolean,
    topTalkers: number,
    listConversations = true,
  ): PcapAnalysis {
    const conv = this.conversations;
    const out: PcapAnalysis = {
      format,
      linkTypes: [...this.reader.linkTypes],
      packets: this.packets,
      bytes: this.bytes,
      firstTs: Number.isNaN(this.firstTs) ? null : this.firstTs,
      lastTs: Number.isNaN(this.lastTs) ? null : this.lastTs,
      protocols: this.protocols.toRecord(),
      topTalkers: conv.topTalkers(topTalkers),
      conversations: listConversations ? conv.all() : [],
      conversationCount: conv.count,
      dns: this.dns,
      tls: this.tls,
      http: this.http,
      portZero: this.portZero,
      dropped: { ...this.dropped },
      anomalies: this.anomalies.toJSON(),
      anomalySamples: this.anomalies.samples,
      truncated: truncated || this.reader.truncated,
      streams: conv.streams,
    };
    if (this.carver) out.carve = { ...this.carver.stats };
    return out;
  }
}

// ------------------------------------------------------------------ streaming entry point

/**
 * Read a pcap, pcapng or gzip-compressed pcap/pcapng from chunks of any size and summarise it.
 * Recoverable damage becomes counted anomalies; only `CorruptPcapError` (not a capture at all,
 * e.g. bad magic) or errors thrown by the source or the carve sink escape.
 */
export async function analyzePcap(
  source: AsyncIterable<Uint8Array>,
  options: AnalyzeOptions = {},
): Promise<PcapAnalysis> {
  const analyzer = new PcapAnalyzer(options);
  const sink = options.carve && options.carve.mode !== 'off' ? options.carve.sink : undefined;
  let bytesRead = 0;
  let nextProgress = PROGRESS_EVERY;
  const progress = options.onProgress;
  const { gzip: gz, stream } = await peekGzip(source);
  const sourceError: { error?: unknown } = {};
  const raw = (async function* () {
    try {
      for await (const c of stream) {
        bytesRead += c.length;
        if (progress && bytesRead >= nextProgress) {
          nextProgress = bytesRead + PROGRESS_EVERY;
          progress(bytesRead);
        }
        // zlib consumes asynchronously: it must not see a buffer the source reuses
        yield gz ? c.slice() : c;
      }
    } catch (error) {
      sourceError.error ??= error;
      throw error;
    }
  })();
  let gzError: Error | undefined;
  let input: AsyncIterable<Uint8Array> = raw;
  let inflating: Promise<void> | undefined;
  if (gz) {
    const z = createGunzip({ chunkSize: 256 * 1024 });
    inflating = pipeline(Readable.from(raw), z).catch((error: Error) => {
      gzError ??= error;
    });
    input = z;
  }
  let failure: { error: unknown } | undefined;
  let streamed: PcapAnalysis | undefined;
  try {
    try {
      for await (const chunk of input) {
        analyzer.reader.push(chunk);
        if (sink && analyzer.carver !== null && analyzer.carver.ready.length > 0) {
          await drain(analyzer.carver.ready, sink);
        }
      }
    } catch (error) {
      if (!gz || sourceError.error !== undefined || isTaplineError(error)) throw error;
      gzError ??= error as Error;
    }
    await inflating;
    if (sourceError.error !== undefined) throw sourceError.error;
    if (gzError) {
      if (analyzer.reader.format === undefined) {
        throw new CorruptPcapError('gzip stream is corrupt before any capture data', {
          reason: gzError.message,
        });
      }
      analyzer.anomalies.add('gzip-corrupt', `gzip stream broke: ${gzError.message}`);
    }
    analyzer.reader.end();
    analyzer.finishPending();
    if (sink && analyzer.carver !== null) {
      analyzer.carver.finish();
      await drain(analyzer.carver.ready, sink);
    }
    if (options.onConversations || options.onConversationsJson) {
      const table = analyzer.conversations;
      streamed = analyzer.result(
        finalFormat(gz, analyzer.reader.format),
        gzError !== undefined,
        options.limits?.topTalkers ?? 20,
        false,
      );
      const asJson = options.onConversationsJson;
      for (let i = 0; i < table.count; i += 1000) {
        const stop = Math.min(table.count, i + 1000);
        if (asJson) {
          let json = table.compactJson(i);
          for (let k = i + 1; k < stop; k++) json += `,${table.compactJson(k)}`;
          await asJson(json, stop - i, streamed);
        } else {
          const batch = [];
          for (let k = i; k < stop; k++) batch.push(table.toConversation(k));
          await options.onConversations!(batch, streamed);
        }
      }
    }
  } catch (error) {
    failure = { error };
  }
  if (sink?.close) {
    try {
      await sink.close();
    } catch (error) {
      failure ??= { error };
    }
  }
  if (failure !== undefined) throw failure.error;
  progress?.(bytesRead);
  return (
    streamed ??
    analyzer.result(
      finalFormat(gz, analyzer.reader.format),
      gzError !== undefined,
      options.limits?.topTalkers ?? 20,
    )
  );
}

function finalFormat(gz: boolean, format: 'pcap' | 'pcapng' | undefined): PcapAnalysis['format'] {
  const f = format ?? 'pcap';
  return gz ? (f === 'pcap' ? 'pcap-gzip' : 'pcapng-gzip') : f;
}

async function drain(ready: CarveChunk[], sink: CarveSink): Promise<void> {
  // the array may grow while we await (it does not: pushes happen only inside push()), but be safe
  for (let k = 0; k < ready.length; k++) await sink.write(ready[k]!);
  ready.length = 0;
}
