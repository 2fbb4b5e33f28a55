import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import type { PcapAnalysis } from '../../shared/pcap/index.ts';
import { analyzePcap } from '../../shared/pcap/index.ts';

/**
 * Differential oracle: what tshark makes of a capture (conversations with exact packets and
 * bytes each way, DNS query names, TLS SNI) next to what our decoder makes of it, reduced to a
 * list of human-readable differences. Kept out of the *.test.ts file so a script can print the
 * differences for a new corpus file.
 */

export interface ConvCount {
  key: string;
  packetsAtoB: number;
  bytesAtoB: number;
  packetsBtoA: number;
  bytesBtoA: number;
}

export interface Oracle {
  ok: boolean;
  stderr: string;
  conversations: ConvCount[];
  /** frames per conversation as printed by tshark's -z conv table (cross-check) */
  tableFrames: Map<string, number>;
  dnsNames: string[];
  sni: string[];
  /** Host header of each HTTP request tshark reports */
  httpHosts: string[];
  frames: number;
  bytes: number;
}

const FIELDS = [
  'frame.len',
  'ip.src',
  'ip.dst',
  'ipv6.src',
  'ipv6.dst',
  'tcp.stream',
  'tcp.srcport',
  'tcp.dstport',
  'udp.stream',
  'udp.srcport',
  'udp.dstport',
  'dns.qry.name',
  'tls.handshake.extensions_server_name',
  'tls.handshake.type',
  'http.request',
  'http.host',
];

function ep(addr: string, port: string | number): string {
  return `${addr}#${port}`;
}

/** Unordered endpoint-pair key. */
export function pairKey(proto: string, a: string, b: string): string {
  return a < b ? `${proto} ${a} ${b}` : `${proto} ${b} ${a}`;
}

function last(list: string): string {
  const parts = list.split(',');
  return parts[parts.length - 1] ?? '';
}

export function runTshark(file: string): Oracle {
  let out = '';
  let stderr = '';
  let ok = true;
  try {
    out = execFileSync(
      'tshark',
      [
        '-r',
        file,
        '-T',
        'fields',
        '-E',
        'separator=|',
        '-E',
        'occurrence=a',
        ...FIELDS.flatMap((f) => ['-e', f]),
        '-z',
        'conv,tcp',
        '-z',
        'conv,udp',
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 256 * 1024 * 1024 },
    );
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string };
    out = e.stdout ?? '';
    stderr = e.stderr ?? '';
    ok = false;
  }
  const lines = out.split('\n');
  const streams = new Map<string, ConvCount & { a: string }>();
  const order: string[] = [];
  const dnsNames: string[] = [];
  const sni: string[] = [];
  const httpHosts: string[] = [];
  const tableFrames = new Map<string, number>();
  let inTable = '';
  let frames = 0;
  let bytes = 0;
  for (const line of lines) {
    if (line.startsWith('TCP Conversations')) inTable = 'tcp';
    else if (line.startsWith('UDP Conversations')) inTable = 'udp';
    if (inTable) {
      const m =
        /^(\S+):(\d+)\s+<->\s+(\S+):(\d+)\s+(\d+) [\d.]+ \w?B(?:ytes)?\s+(\d+) [\d.]+ \w?B(?:ytes)?\s+(\d+)/.exec(
          line.replace(/ bytes/g, ' B'),
        );
      if (m) {
        const k = pairKey(inTable, ep(m[1]!, m[2]!), ep(m[3]!, m[4]!));
        tableFrames.set(k, (tableFrames.get(k) ?? 0) + Number(m[7]));
      }
      continue;
    }
    if (line === '' || line.startsWith('=')) continue;
    const f = line.split('|');
    if (f.length < FIELDS.length) continue;
    frames++;
    bytes += Number(f[0]);
    const [
      len,
      ipSrc,
      ipDst,
      ip6Src,
      ip6Dst,
      tcpStream,
      tcpSport,
      tcpDport,
      udpStream,
      udpSport,
      udpDport,
      qname,
      sniField,
      hsType,
    ] = f as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    const [httpRequest, httpHost] = [f[14] ?? '', f[15] ?? ''];
    const src = last(ip6Src) || last(ipSrc);
    const dst = last(ip6Dst) || last(ipDst);
    const add = (proto: string, stream: string, sport: string, dport: string) => {
      if (!stream) return;
      const id = `${proto}:${last(stream)}`;
      const s = ep(src, last(sport));
      const d = ep(dst, last(dport));
      let c = streams.get(id);
      if (!c) {
        c = {
          key: pairKey(proto, s, d),
          a: s,
          packetsAtoB: 0,
          bytesAtoB: 0,
          packetsBtoA: 0,
          bytesBtoA: 0,
        };
        streams.set(id, c);
        order.push(id);
      }
      if (s === c.a) {
        c.packetsAtoB++;
        c.bytesAtoB += Number(len);
      } else {
        c.packetsBtoA++;
        c.bytesBtoA += Number(len);
      }
    };
    add('tcp', tcpStream, tcpSport, tcpDport);
    add('udp', udpStream, udpSport, udpDport);
    if (qname) dnsNames.push(qname.split(',')[0]!);
    if (hsType.split(',').includes('1')) sni.push(sniField.split(',')[0] ?? '');
    if (httpRequest) httpHosts.push(httpHost.split(',')[0] ?? '');
  }
  return {
    ok,
    stderr,
    conversations: order.map((id) => {
      const { a: _a, ...rest } = streams.get(id)!;
      return rest;
    }),
    tableFrames,
    dnsNames,
    sni,
    httpHosts,
    frames,
    bytes,
  };
}

/** Our decoder, fed in odd-sized chunks so records straddle chunk boundaries. */
export async function runOurs(file: string, chunk = 997): Promise<PcapAnalysis> {
  return analyzePcap(createReadStream(file, { highWaterMark: chunk }) as Readable);
}

export function ourConversations(r: PcapAnalysis): ConvCount[] {
  return r.conversations
    .filter((c) => c.protocol === 'tcp' || c.protocol === 'udp')
    .map((c) => ({
      key: pairKey(c.protocol, ep(c.a.addr, c.a.port), ep(c.b.addr, c.b.port)),
      a: ep(c.a.addr, c.a.port),
      packetsAtoB: c.packetsAtoB,
      bytesAtoB: c.bytesAtoB,
      packetsBtoA: c.packetsBtoA,
      bytesBtoA: c.bytesBtoA,
    }))
    .map(({ a: _a, ...rest }) => rest);
}

/** Differences as sorted strings; [] when both agree exactly. */
export function diff(ours: PcapAnalysis, theirs: Oracle): string[] {
  const out: string[] = [];
  if (ours.packets !== theirs.frames || ours.bytes !== theirs.bytes) {
    out.push(
      `totals: ours ${ours.packets} packets/${ours.bytes} bytes, tshark ${theirs.frames}/${theirs.bytes}`,
    );
  }
  const group = (list: ConvCount[]) => {
    const m = new Map<string, ConvCount[]>();
    for (const c of list) m.set(c.key, [...(m.get(c.key) ?? []), c]);
    return m;
  };
  const mine = group(ourConversations(ours));
  const tsh = group(theirs.conversations);
  const fmt = (c: ConvCount) => `${c.packetsAtoB}/${c.bytesAtoB} ${c.packetsBtoA}/${c.bytesBtoA}`;
  // orientation-free comparison: sort the two directions
  const norm = (c: ConvCount) => {
    const x = [`${c.packetsAtoB}/${c.bytesAtoB}`, `${c.packetsBtoA}/${c.bytesBtoA}`];
    return x.sort().join(' ');
  };
  for (const key of new Set([...mine.keys(), ...tsh.keys()])) {
    const a = mine.get(key) ?? [];
    const b = tsh.get(key) ?? [];
    const n = Math.max(a.length, b.length);
    for (let i = 0; i < n; i++) {
      const x = a[i];
      const y = b[i];
      if (!x) out.push(`conv only in tshark: ${key} [${i}] ${fmt(y!)}`);
      else if (!y) out.push(`conv only in ours: ${key} [${i}] ${fmt(x)}`);
      else if (norm(x) !== norm(y))
        out.push(`conv differs: ${key} [${i}] ours ${fmt(x)} tshark ${fmt(y)}`);
    }
  }
  // cross-check the fields aggregation against tshark's own table (frames)
  for (const [key, frames] of theirs.tableFrames) {
    const agg = (tsh.get(key) ?? []).reduce((s, c) => s + c.packetsAtoB + c.packetsBtoA, 0);
    if (agg !== frames) out.push(`oracle mismatch: ${key} table ${frames} fields ${agg}`);
  }
  const multiset = (label: string, x: string[], y: string[]) => {
    const count = (l: string[]) =>
      l.reduce((m, s) => m.set(s, (m.get(s) ?? 0) + 1), new Map<string, number>());
    const cx = count(x);
    const cy = count(y);
    for (const k of new Set([...cx.keys(), ...cy.keys()])) {
      if ((cx.get(k) ?? 0) !== (cy.get(k) ?? 0)) {
        out.push(`${label} ${JSON.stringify(k)}: ours ${cx.get(k) ?? 0} tshark ${cy.get(k) ?? 0}`);
      }
    }
  };
  multiset(
    'dns',
    ours.dns.filter((d) => d.qname !== '').map((d) => d.qname),
    theirs.dnsNames,
  );
  multiset(
    'http host',
    ours.http.map((h) => h.host),
    theirs.httpHosts,
  );
  multiset(
    'sni',
    ours.tls.map((t) => t.sni),
    theirs.sni,
  );
  return out.sort();
}
