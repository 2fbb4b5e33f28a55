/**
 * Test factories: real frame and capture-file bytes built field by field (Ethernet, VLAN,
 * IPv4/IPv6, TCP/UDP, VXLAN/GENEVE; classic pcap and pcapng containers), so unit tests state
 * exactly which header is damaged and how.
 */

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function be16(v: number): Uint8Array {
  return Uint8Array.of((v >> 8) & 255, v & 255);
}
function be32(v: number): Uint8Array {
  return Uint8Array.of((v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255);
}
function le16(v: number): Uint8Array {
  return Uint8Array.of(v & 255, (v >> 8) & 255);
}
function le32(v: number): Uint8Array {
  return Uint8Array.of(v & 255, (v >>> 8) & 255, (v >>> 16) & 255, (v >>> 24) & 255);
}

export function ip4(text: string): Uint8Array {
  return Uint8Array.from(text.split('.').map(Number));
}

export function ip6(text: string): Uint8Array {
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return concat(...groups.map((g) => be16(Number.parseInt(g || '0', 16))));
}

export const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

export function eth(type: number, payload: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1), be16(type), payload);
}

/** One 802.1Q/802.1ad tag: TPID, VLAN id, then the inner type. */
export function vlanTag(tpid: number, vid: number, innerType: number): Uint8Array {
  return concat(be16(tpid), be16(vid & 0xfff), be16(innerType));
}

export function ethVlan(
  tags: [number, number][],
  innerType: number,
  payload: Uint8Array,
): Uint8Array {
  const tpids = tags.map(([tpid]) => tpid);
  const parts: Uint8Array[] = [Uint8Array.of(2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1), be16(tpids[0]!)];
  tags.forEach(([, vid], i) => {
    parts.push(be16(vid), be16(i + 1 < tags.length ? tpids[i + 1]! : innerType));
  });
  return concat(...parts, payload);
}

export interface Ipv4Options {
  ihl?: number;
  totalLength?: number;
  fragOffset?: number;
  moreFragments?: boolean;
  version?: number;
}

export function ipv4(
  src: string,
  dst: string,
  proto: number,
  payload: Uint8Array,
  o: Ipv4Options = {},
): Uint8Array {
  const ihl = o.ihl ?? 5;
  const optLen = Math.max(0, ihl * 4 - 20);
  const total = o.totalLength ?? 20 + optLen + payload.length;
  const frag = ((o.moreFragments ? 0x2000 : 0) | ((o.fragOffset ?? 0) & 0x1fff)) & 0xffff;
  const hdr = concat(
    Uint8Array.of(((o.version ?? 4) << 4) | (ihl & 15), 0),
    be16(total),
    be16(0x1234),
    be16(frag),
    Uint8Array.of(64, proto),
    be16(0),
    ip4(src),
    ip4(dst),
    new Uint8Array(optLen),
  );
  return concat(hdr, payload);
}

/** IPv6 with optional extension headers given as [type, bytes] (bytes: whole header). */
export function ipv6(
  src: string,
  dst: string,
  nh: number,
  payload: Uint8Array,
  ext: [number, Uint8Array][] = [],
  payloadLength?: number,
): Uint8Array {
  const first = ext.length > 0 ? ext[0]![0] : nh;
  const chained = ext.map(([, bytes], i) => {
    const copy = Uint8Array.from(bytes);
    copy[0] = i + 1 < ext.length ? ext[i + 1]![0] : nh;
    return copy;
  });
  const body = concat(...chained, payload);
  return concat(
    Uint8Array.of(0x60, 0, 0, 0),
    be16(payloadLength ?? body.length),
    Uint8Array.of(first, 64),
    ip6(src),
    ip6(dst),
    body,
  );
}

/** A generic 8-byte IPv6 extension header (hop-by-hop / destination options with padding). */
export function ext8(): Uint8Array {
  return Uint8Array.of(0, 0, 1, 4, 0, 0, 0, 0);
}

/** IPv6 fragment header. */
export function fragHeader(offset8: number, more: boolean): Uint8Array {
  return concat(Uint8Array.of(0, 0), be16((offset8 << 3) | (more ? 1 : 0)), be32(0xabcdef));
}

export const SYN = 0x02;
export const ACK = 0x10;
export const FIN = 0x01;
export const RST = 0x04;
export const PSH = 0x08;

export function tcp(
  sport: number,
  dport: number,
  flags: number,
  payload: Uint8Array = new Uint8Array(0),
  seq = 1000,
  hlenWords = 5,
): Uint8Array {
  return concat(
    be16(sport),
    be16(dport),
    be32(seq),
    be32(0),
    Uint8Array.of(hlenWords << 4, flags),
    be16(65535),
    be16(0),
    be16(0),
    new Uint8Array(Math.max(0, hlenWords * 4 - 20)),
    payload,
  );
}

export function udp(
  sport: number,
  dport: number,
  payload: Uint8Array,
  length?: number,
): Uint8Array {
  return concat(be16(sport), be16(dport), be16(length ?? 8 + payload.length), be16(0), payload);
}

export function vxlan(vni: number, innerFrame: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(0x08, 0, 0, 0), be32(vni << 8), innerFrame);
}

export function geneve(protocolType: number, inner: Uint8Array, optionWords = 0): Uint8Array {
  return concat(
    Uint8Array.of(optionWords & 0x3f, 0),
    be16(protocolType),
    be32(0x000abc00),
    new Uint8Array(optionWords * 4),
    inner,
  );
}

export interface Rec {
  data: Uint8Array;
  ts?: number;
  origlen?: number;
  caplen?: number;
}

/** Classic pcap. `nano`: nanosecond magic; `be`: big-endian. caplen can be forged. */
export function pcap(
  records: Rec[],
  o: { linkType?: number; nano?: boolean; be?: boolean; snaplen?: number } = {},
): Uint8Array {
  const w16 = o.be ? be16 : le16;
  const w32 = o.be ? be32 : le32;
  const parts: Uint8Array[] = [
    w32(o.nano ? 0xa1b23c4d : 0xa1b2c3d4),
    w16(2),
    w16(4),
    w32(0),
    w32(0),
    w32(o.snaplen ?? 262144),
    w32(o.linkType ?? 1),
  ];
  for (const [i, r] of records.entries()) {
    const ts = r.ts ?? 1_700_000_000 + i;
    const sec = Math.floor(ts);
    const frac = Math.round((ts - sec) * (o.nano ? 1e9 : 1e6));
    parts.push(
      w32(sec),
      w32(frac),
      w32(r.caplen ?? r.data.length),
      w32(r.origlen ?? r.data.length),
      r.data,
    );
  }
  return concat(...parts);
}

function pad4(b: Uint8Array): Uint8Array {
  return concat(b, new Uint8Array((4 - (b.length % 4)) % 4));
}

/** A pcapng block of `type` with `body`, lengths written in the section's byte order. */
export function block(type: number, body: Uint8Array, be = false): Uint8Array {
  const w32 = be ? be32 : le32;
  const len = 12 + pad4(body).length;
  return concat(w32(type), w32(len), pad4(body), w32(len));
}

export function shb(be = false): Uint8Array {
  const w16 = be ? be16 : le16;
  const w32 = be ? be32 : le32;
  return block(
    0x0a0d0d0a,
    concat(w32(0x1a2b3c4d), w16(1), w16(0), w32(0xffffffff), w32(0xffffffff)),
    be,
  );
}

/** IDB; tsresol: the if_tsresol byte (e.g. 9 for ns, 0x80|20 for 2^-20). */
export function idb(linkType: number, tsresol?: number, be = false, snaplen = 0): Uint8Array {
  const w16 = be ? be16 : le16;
  const w32 = be ? be32 : le32;
  const opts =
    tsresol === undefined
      ? new Uint8Array(0)
      : concat(w16(9), w16(1), Uint8Array.of(tsresol, 0, 0, 0), w16(0), w16(0));
  return block(1, concat(w16(linkType), w16(0), w32(snaplen), opts), be);
}

/** EPB with a 64-bit timestamp in interface units. */
export function epb(
  iface: number,
  units: bigint,
  data: Uint8Array,
  be = false,
  origlen?: number,
): Uint8Array {
  const w32 = be ? be32 : le32;
  return block(
    6,
    concat(
      w32(iface),
      w32(Number(units >> 32n)),
      w32(Number(units & 0xffffffffn)),
      w32(data.length),
      w32(origlen ?? data.length),
      pad4(data),
    ),
    be,
  );
}

export function spb(data: Uint8Array, be = false): Uint8Array {
  const w32 = be ? be32 : le32;
  return block(3, concat(w32(data.length), pad4(data)), be);
}

export function opb(iface: number, units: bigint, data: Uint8Array, be = false): Uint8Array {
  const w16 = be ? be16 : le16;
  const w32 = be ? be32 : le32;
  return block(
    2,
    concat(
      w16(iface),
      w16(0),
      w32(Number(units >> 32n)),
      w32(Number(units & 0xffffffffn)),
      w32(data.length),
      w32(data.length),
      pad4(data),
    ),
    be,
  );
}

/** Async chunks of `bytes`, `size` bytes each (1 = byte by byte). */
export async function* chunks(bytes: Uint8Array, size = 1 << 20): AsyncGenerator<Uint8Array> {
  for (let o = 0; o < bytes.length; o += size) yield bytes.subarray(o, o + size);
}

/** A simple TCP/IPv4 Ethernet frame. */
export function tcp4(
  src: string,
  dst: string,
  sport: number,
  dport: number,
  flags: number,
  payload?: Uint8Array,
  seq?: number,
): Uint8Array {
  return eth(0x0800, ipv4(src, dst, 6, tcp(sport, dport, flags, payload, seq)));
}

export function udp4(
  src: string,
  dst: string,
  sport: number,
  dport: number,
  payload: Uint8Array,
): Uint8Array {
  return eth(0x0800, ipv4(src, dst, 17, udp(sport, dport, payload)));
}

/** A minimal DNS query message for `name` (type A). */
export function dnsQuery(id: number, name: string): Uint8Array {
  const labels = name.split('.').flatMap((l) => [l.length, ...ascii(l)]);
  return concat(
    be16(id),
    be16(0x0100),
    be16(1),
    be16(0),
    be16(0),
    be16(0),
    Uint8Array.from([...labels, 0]),
    be16(1),
    be16(1),
  );
}

/** A TLS 1.2 record holding a ClientHello with SNI, ALPN and (optionally) supported_versions. */
export function clientHello(sni: string, alpn: string[] = [], versions: number[] = []): Uint8Array {
  const ext: Uint8Array[] = [];
  if (sni) {
    const name = ascii(sni);
    const entry = concat(Uint8Array.of(0), be16(name.length), name);
    ext.push(concat(be16(0), be16(entry.length + 2), be16(entry.length), entry));
  }
  if (alpn.length) {
    const list = concat(...alpn.map((p) => concat(Uint8Array.of(p.length), ascii(p))));
    ext.push(concat(be16(16), be16(list.length + 2), be16(list.length), list));
  }
  if (versions.length) {
    const v = concat(...versions.map(be16));
    ext.push(concat(be16(43), be16(v.length + 1), Uint8Array.of(v.length), v));
  }
  const exts = concat(...ext);
  const body = concat(
    be16(0x0303),
    new Uint8Array(32),
    Uint8Array.of(0),
    be16(2),
    be16(0x1301),
    Uint8Array.of(1, 0),
    be16(exts.length),
    exts,
  );
  const hs = concat(Uint8Array.of(1, (body.length >> 16) & 255), be16(body.length & 0xffff), body);
  return concat(Uint8Array.of(0x16, 3, 1), be16(hs.length), hs);
}
