import {
  ACTION_REJECT,
  addressKeyToString,
  type FlowCursor,
  type FlowSink,
} from '../flowlogs/scanner.ts';
import { CidrSet } from './cidr.ts';
import type { RuleName, RulesConfig } from './config.ts';
import { IntPairTable, IntSet } from './int-table.ts';

/**
 * The rules over one batch (a CloudWatch Logs delivery, one S3 object, one local file). Every
 * record goes through `observe` once; aggregate rules keep per-key state (bounded by
 * limits.maxTrackedKeys), windows are tumbling per key and anchored at the key's first record,
 * and `finish()` closes the remaining windows and returns the findings, deduplicated by
 * fingerprint (identical fingerprints become one finding with summed counts).
 */

const TCP = 6;
const UDP = 17;
const SYN = 2;
const ACK = 16;

export interface RawFinding {
  rule: RuleName;
  fingerprint: string;
  /** The addresses/ports that define the finding (null where a rule spans many). */
  srcaddr: string | null;
  dstaddr: string | null;
  srcport: number | null;
  dstport: number | null;
  protocol: number | null;
  /** Matching records, and their packet/byte totals. */
  records: number;
  packets: number;
  bytes: number;
  /** Distinct ports (port-scan) or hosts (host-sweep) seen, when the rule counts them. */
  distinct: number | null;
  /** Time range of the matching records, epoch seconds. */
  start: number;
  end: number;
  /** Raw record lines, at most limits.maxEvidence. */
  evidence: string[];
  /** Which address is on the deny list (deny-list only). */
  listed?: string;
  /** Windows merged into this finding (identical fingerprints in one batch). */
  occurrences: number;
}

export interface EngineStats {
  /** Keys not tracked because limits.maxTrackedKeys was reached (hostile input). */
  untrackedKeys: number;
  /** Findings beyond limits.maxFindings (counted, not returned). */
  suppressedFindings: number;
  trackedKeys: number;
}

class SourceState {
  /** port-scan: one Agg per destination, in creation order (IPv4 pairs are also indexed in
   * the engine's pair table; pairs involving IPv6 in `pairs6`). */
  pairList: Agg[] | null = null;
  pairs6: Map<number | string, Agg> | null = null;
  /** host-sweep: (protocol, port) → distinct destinations. */
  services: Map<number, Agg> | null = null;
  /** reject-burst. */
  rejects: Agg | null = null;
  /** egress-volume: one Agg per external destination, in creation order (indexed like pairs). */
  egressList: Agg[] | null = null;
  egress6: Map<number | string, Agg> | null = null;
  // the last pair and service seen from this source (runs of one conversation)
  lastPairV4 = false;
  lastPairDst = 0;
  lastPair: Agg | undefined;
  lastService = -1;
  lastSweep: Agg | undefined;
}

const W_SCAN = 0;
const W_SWEEP = 1;
const W_REJECT = 2;
const W_EGRESS = 3;

class Agg {
  records = 0;
  packets = 0;
  bytes = 0;
  /** Seconds since the engine's base; -1 until set (small integers: no boxed doubles). */
  first = -1;
  last = -1;
  windowStart = -1;
  /**
   * Raw lines as (position, length) pairs in the engine's evidence arena, allocated on the
   * first piece of evidence; text only for the aggregates that become findings.
   */
  evidence: number[] | null = null;
  /** Distinct values: the first integer inline, a table from the second on; text in a Set. */
  hasOne = false;
  oneInt = 0;
  ints: IntSet | null = null;
  texts: Set<string> | null = null;
  distinct = 0;
  // identity, filled by the rule when created
  src: number | string = -1;
  dst: number | string = -1;
  protocol = -1;
  port = -1;

  reset(): void {
    this.records = 0;
    this.packets = 0;
    this.bytes = 0;
    this.first = -1;
    this.last = -1;
    this.windowStart = -1;
    this.evidence = null;
    this.hasOne = false;
    this.ints = null;
    this.texts = null;
    this.distinct = 0;
  }

  /** Adds an int32 value (port key, IPv4 address) to the distinct set; true when it is new. */
  addInt(v: number): boolean {
    if (this.ints === null) {
      if (!this.hasOne) {
        this.hasOne = true;
        this.oneInt = v;
        this.distinct += 1;
        return true;
      }
      if (this.oneInt === v) return false;
      this.ints = new IntSet();
      this.ints.add(this.oneInt);
    }
    if (!this.ints.add(v)) return false;
    this.distinct += 1;
    return true;
  }

  /** Adds a text value (IPv6 address) to the distinct set; true when it is new. */
  addText(v: string): boolean {
    if (this.texts === null) this.texts = new Set();
    else if (this.texts.has(v)) return false;
    this.texts.add(v);
    this.distinct += 1;
    return true;
  }
}

/**
 * Evidence lines copied as bytes into 4 MiB pages instead of one string each: most aggregates
 * that keep evidence never become findings, and a string per line is a long-lived object the
 * garbage collector copies and scans. Lines are at most the scanner's maxLineBytes.
 */
class EvidenceArena {
  private static readonly PAGE_BITS = 22;
  private readonly pages: Buffer[] = [];
  private page: Buffer | null = null;
  private used = 0;

  /** Copies bytes in; returns their position. */
  add(buf: Uint8Array, start: number, len: number): number {
    const size = 1 << EvidenceArena.PAGE_BITS;
    if (this.page === null || this.used + len > size) {
      this.page = Buffer.allocUnsafeSlow(Math.max(size, len));
      this.pages.push(this.page);
      this.used = 0;
    }
    this.page.set(buf.subarray(start, start + len), this.used);
    const pos = (this.pages.length - 1) * size + this.used;
    this.used += len;
    return pos;
  }

  text(pos: number, len: number): string {
    const size = 1 << EvidenceArena.PAGE_BITS;
    const page = this.pages[Math.floor(pos / size)]!;
    const off = pos % size;
    return page.toString('latin1', off, off + len);
  }
}

function isPrivateV4(a: number): boolean {
  const u = a >>> 0;
  const top = u >>> 24;
  if (top === 10) return true;
  const top16 = u >>> 16;
  if (top16 >= 0xac10 && top16 <= 0xac1f) return true; // 172.16.0.0/12
  return top16 === 0xc0a8; // 192.168.0.0/16
}

function isUlaV6(text: string): boolean {
  // fc00::/7: the first group is fcXX or fdXX (the scanner lower-cases IPv6 text)
  return text.indexOf(':') === 4 && text[0] === 'f' && (text[1] === 'c' || text[1] === 'd');
}

export const PROTOCOL_NAMES: Record<number, string> = {
  1: 'icmp',
  4: 'ipip',
  6: 'tcp',
  17: 'udp',
  41: 'ipv6',
  47: 'gre',
  50: 'esp',
  51: 'ah',
  58: 'icmp6',
  115: 'l2tp',
  132: 'sctp',
};

export function protocolName(p: number): string {
  return PROTOCOL_NAMES[p] ?? String(p);
}

export class RuleEngine implements FlowSink {
  readonly config: RulesConfig;
  readonly stats: EngineStats = { untrackedKeys: 0, suppressedFindings: 0, trackedKeys: 0 };
  private readonly maxEvidence: number;
  private readonly maxKeys: number;
  private readonly internalExtra: CidrSet;
  private readonly hasInternalExtraV4: boolean;
  private readonly denyList: CidrSet;
  private readonly egressAllow: CidrSet;
  private readonly rareAllow: CidrSet;
  private readonly rareProtocols = new Uint8Array(256);
  private readonly on: Record<RuleName, boolean>;
  private readonly windows: { scan: number; sweep: number; reject: number; egress: number };

  /** All aggregate state hangs off the source address: one table probe per record (IPv4
   * sources in an int table, IPv6 in a Map; `sourceOrder` keeps creation order for finish). */
  private readonly sources4 = new IntPairTable<SourceState>();
  private readonly sources6 = new Map<string, SourceState>();
  private readonly sourceOrder: SourceState[] = [];
  /** IPv4 (source, destination) → port-scan / egress-volume state. */
  private readonly pairs4 = new IntPairTable<Agg>();
  private readonly egress4 = new IntPairTable<Agg>();
  private readonly onZero: boolean;
  private readonly onRare: boolean;
  private readonly onDeny: boolean;
  private readonly onReject: boolean;
  private readonly onScan: boolean;
  private readonly onSweep: boolean;
  private readonly onEgress: boolean;
  private readonly egressIgnoreAws: boolean;
  private readonly egressEvidenceBytes: number;
  private readonly perRecord = new Map<
    string,
    Agg & { rule: RuleName; fp: string; listed?: string }
  >();
  private readonly found = new Map<string, RawFinding>();
  /** Evidence bytes (one batch's worth; dropped with the engine). */
  private readonly arena = new EvidenceArena();
  // the last source seen (flow logs come in per-interface runs: one source many times)
  private lastSrcV4 = false;
  private lastSrc = 0;
  private lastSrcText: string | null = null;
  private lastSource: SourceState | undefined;
  /** Epoch seconds subtracted from record times while aggregating. */
  private base = -1;

  constructor(config: RulesConfig) {
    this.config = config;
    const r = config.rules;
    this.maxEvidence = config.limits.maxEvidence;
    this.maxKeys = config.limits.maxTrackedKeys;
    const builtIn = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'];
    this.internalExtra = new CidrSet(config.internalCidrs.filter((c) => !builtIn.includes(c)));
    this.hasInternalExtraV4 = this.internalExtra.hasV4();
    this.denyList = new CidrSet(r['deny-list'].cidrs);
    this.egressAllow = new CidrSet(r['egress-volume'].allowDestinations);
    this.rareAllow = new CidrSet(r['rare-protocol'].allowCidrs);
    for (const p of r['rare-protocol'].protocols) this.rareProtocols[p] = 1;
    this.on = {
      'port-zero': r['port-zero'].enabled,
      'port-scan': r['port-scan'].enabled,
      'host-sweep': r['host-sweep'].enabled,
      'reject-burst': r['reject-burst'].enabled,
      'deny-list': r['deny-list'].enabled && this.denyList.size > 0,
      'egress-volume': r['egress-volume'].enabled,
      'rare-protocol': r['rare-protocol'].enabled && r['rare-protocol'].protocols.length > 0,
    };
    this.onZero = this.on['port-zero'];
    this.onRare = this.on['rare-protocol'];
    this.onDeny = this.on['deny-list'];
    this.onReject = this.on['reject-burst'];
    this.onScan = this.on['port-scan'];
    this.onSweep = this.on['host-sweep'];
    this.onEgress = this.on['egress-volume'];
    this.egressIgnoreAws = r['egress-volume'].ignoreAwsServices;
    this.egressEvidenceBytes = r['egress-volume'].minBytes / 4;
    this.windows = {
      scan: r['port-scan'].windowSeconds,
      sweep: r['host-sweep'].windowSeconds,
      reject: r['reject-burst'].windowSeconds,
      egress: r['egress-volume'].windowSeconds,
    };
  }

  /** Internal = RFC 1918 / ULA, or one of the configured internalCidrs. */
  isInternal(key: number | string): boolean {
    if (typeof key === 'number') return this.isInternalV4(key);
    return isUlaV6(key) || this.internalExtra.containsV6(key);
  }

  private isInternalV4(a: number): boolean {
    return isPrivateV4(a) || (this.hasInternalExtraV4 && this.internalExtra.containsV4(a));
  }

  private srcInternal(c: FlowCursor): boolean {
    return c.srcV4 ? this.isInternalV4(c.src) : this.isInternal(c.srcText!);
  }

  private dstInternal(c: FlowCursor): boolean {
    return c.dstV4 ? this.isInternalV4(c.dst) : this.isInternal(c.dstText!);
  }

  observe(c: FlowCursor): void {
    if (!c.hasAddresses()) return;
    if (this.base < 0 && c.start >= 0) this.base = Math.max(0, c.start - 2_592_000);
    const proto = c.protocol;
    const portful = proto === TCP || proto === UDP;

    if (this.onZero && portful && (c.srcport === 0 || c.dstport === 0)) this.portZero(c);
    if (this.onRare && proto >= 0 && this.rareProtocols[proto] === 1) this.rare(c);
    if (this.onDeny) this.deny(c);

    const reject = this.onReject && c.action === ACTION_REJECT;
    const probe = (this.onScan || this.onSweep) && proto >= 0 && !this.isReply(c, portful);
    let egress = false;
    if (this.onEgress && c.bytes > 0) {
      egress =
        this.srcInternal(c) &&
        !this.dstInternal(c) &&
        !(this.egressIgnoreAws && c.dstIsAwsService) &&
        !(this.egressAllow.size > 0 && this.egressAllow.contains(c.dstKey()));
    }
    if (!reject && !probe && !egress) return;

    const source = this.sourceOf(c);
    if (reject) this.reject(source, c);
    if (probe) {
      if (this.onScan && portful && c.dstport >= 0) this.portScan(source, c);
      if (this.onSweep) this.hostSweep(source, c, portful);
    }
    if (egress) this.egressVolume(source, c);
  }

  /** The state of the record's source; flow logs come in per-interface runs, so the last one
   * is tried first. */
  private sourceOf(c: FlowCursor): SourceState {
    if (c.srcV4) {
      const src = c.src;
      if (this.lastSrcV4 && src === this.lastSrc && this.lastSource !== undefined) {
        return this.lastSource;
      }
      let source = this.sources4.get(src, 0);
      if (source === undefined) {
        source = new SourceState();
        this.sources4.set(src, 0, source);
        this.sourceOrder.push(source);
      }
      this.lastSrcV4 = true;
      this.lastSrc = src;
      this.lastSource = source;
      return source;
    }
    const text = c.srcText!;
    if (!this.lastSrcV4 && text === this.lastSrcText && this.lastSource !== undefined) {
      return this.lastSource;
    }
    let source = this.sources6.get(text);
    if (source === undefined) {
      source = new SourceState();
      this.sources6.set(text, source);
      this.sourceOrder.push(source);
    }
    this.lastSrcV4 = false;
    this.lastSrcText = text;
    this.lastSource = source;
    return source;
  }

  /**
   * Replies must not count as probes: a server answering one busy client uses many client
   * ports. With tcp-flags (v3+), a TCP record is a probe only if it carries SYN without SYN-ACK;
   * without flags, a record from a lower port to a port ≥ 1024 is taken as a reply.
   */
  private isReply(c: FlowCursor, portful: boolean): boolean {
    if (!portful) return false;
    if (c.protocol === TCP && c.tcpFlags >= 0) {
      return (c.tcpFlags & SYN) === 0 || (c.tcpFlags & ACK) !== 0;
    }
    return c.srcport >= 0 && c.srcport < c.dstport && c.dstport >= 1024;
  }

  private canTrack(): boolean {
    if (this.stats.trackedKeys >= this.maxKeys) {
      this.stats.untrackedKeys += 1;
      return false;
    }
    this.stats.trackedKeys += 1;
    return true;
  }

  /** Window bookkeeping shared by the aggregate rules; closes the window when it expired. */
  private touch(agg: Agg, c: FlowCursor, which: number, window: number): void {
    // times relative to the batch's first record stay small integers (no boxed doubles)
    const start = c.start >= 0 ? c.start - this.base : -1;
    const end = c.end >= 0 ? c.end - this.base : start;
    const t = start >= 0 ? start : end;
    if (agg.windowStart < 0) agg.windowStart = t;
    else if (t >= 0 && t >= agg.windowStart + window) {
      if (which === W_SCAN) this.closeScan(agg);
      else if (which === W_SWEEP) this.closeSweep(agg);
      else if (which === W_REJECT) this.closeReject(agg);
      else this.closeEgress(agg);
      agg.reset();
      agg.windowStart = t;
    }
    agg.records += 1;
    if (c.packets > 0) agg.packets += c.packets;
    if (c.bytes > 0) agg.bytes += c.bytes;
    if (start >= 0 && (agg.first < 0 || start < agg.first)) agg.first = start;
    if (end > agg.last) agg.last = end;
  }

  private evidence(agg: Agg, c: FlowCursor): void {
    const len = c.lineEnd - c.lineStart;
    if (agg.evidence === null) {
      agg.evidence = [this.arena.add(c.buf, c.lineStart, len), len];
    } else if (agg.evidence.length < 2 * this.maxEvidence) {
      agg.evidence.push(this.arena.add(c.buf, c.lineStart, len), len);
    }
  }

  // ---- per-record rules (aggregated by fingerprint) -------------------------------------

  private perRecordAgg(rule: RuleName, fp: string, c: FlowCursor) {
    let agg = this.perRecord.get(fp);
    if (agg === undefined) {
      if (!this.canTrack()) return undefined;
      agg = Object.assign(new Agg(), { rule, fp });
      agg.src = c.srcKey();
      agg.dst = c.dstKey();
      agg.protocol = c.protocol;
      this.perRecord.set(fp, agg);
    }
    agg.records += 1;
    if (c.packets > 0) agg.packets += c.packets;
    if (c.bytes > 0) agg.bytes += c.bytes;
    const start = c.start >= 0 ? c.start - this.base : -1;
    const end = c.end >= 0 ? c.end - this.base : start;
    if (start >= 0 && (agg.first < 0 || start < agg.first)) agg.first = start;
    if (end > agg.last) agg.last = end;
    this.evidence(agg, c);
    return agg;
  }

  private portZero(c: FlowCursor): void {
    const src = addressKeyToString(c.srcKey());
    const dst = addressKeyToString(c.dstKey());
    // A probe and its reply (RST, ICMP unreachable aside) are one finding: the fingerprint
    // names the address pair in a fixed order, not the direction or the ephemeral port.
    const [lo, hi] = src < dst ? [src, dst] : [dst, src];
    const fp = `port-zero:${protocolName(c.protocol)}:${lo}:${hi}`;
    const agg = this.perRecordAgg('port-zero', fp, c);
    if (agg && agg.records === 1) agg.port = c.dstport === 0 ? 0 : 1; // 0: dst side is zero
  }

  private rare(c: FlowCursor): void {
    const src = c.srcKey();
    const dst = c.dstKey();
    if (this.rareAllow.size > 0 && (this.rareAllow.contains(src) || this.rareAllow.contains(dst)))
      return;
    const fp = `rare-protocol:${protocolName(c.protocol)}:${addressKeyToString(src)}:${addressKeyToString(dst)}`;
    this.perRecordAgg('rare-protocol', fp, c);
  }

  private deny(c: FlowCursor): void {
    const src = c.srcKey();
    const dst = c.dstKey();
    const srcListed = this.denyList.contains(src);
    const dstListed = !srcListed && this.denyList.contains(dst);
    if (!srcListed && !dstListed) return;
    const listed = addressKeyToString(srcListed ? src : dst);
    const peer = addressKeyToString(srcListed ? dst : src);
    const fp = `deny-list:${listed}:${peer}`;
    const agg = this.perRecordAgg('deny-list', fp, c);
    if (agg) agg.listed = listed;
  }

  // ---- aggregate rules -------------------------------------------------------------------

  private portScan(source: SourceState, c: FlowCursor): void {
    let agg: Agg | undefined;
    const v4 = c.srcV4 && c.dstV4;
    if (v4 && source.lastPairV4 && source.lastPairDst === c.dst) {
      agg = source.lastPair;
    } else if (v4) {
      agg = this.pairs4.get(c.src, c.dst);
    } else if (source.pairs6 !== null) {
      agg = source.pairs6.get(c.dstKey());
    }
    if (agg === undefined) {
      if (!this.canTrack()) return;
      agg = new Agg();
      agg.src = c.srcKey();
      agg.dst = c.dstKey();
      if (v4) {
        this.pairs4.set(c.src, c.dst, agg);
      } else {
        if (source.pairs6 === null) source.pairs6 = new Map();
        source.pairs6.set(agg.dst, agg);
      }
      if (source.pairList === null) source.pairList = [agg];
      else source.pairList.push(agg);
    }
    source.lastPairV4 = v4;
    source.lastPairDst = v4 ? c.dst : 0;
    source.lastPair = agg;
    this.touch(agg, c, W_SCAN, this.windows.scan);
    // evidence from the second distinct port on: the one-port pairs of normal traffic
    // (almost all of them) never allocate any
    if (agg.addInt(c.protocol * 65536 + c.dstport) && agg.distinct > 1) this.evidence(agg, c);
  }

  private hostSweep(source: SourceState, c: FlowCursor, portful: boolean): void {
    let services = source.services;
    if (services === null) {
      services = new Map();
      source.services = services;
    }
    const port = portful ? Math.max(c.dstport, 0) : 0;
    const service = c.protocol * 65536 + port;
    let agg = service === source.lastService ? source.lastSweep : services.get(service);
    if (agg === undefined) {
      if (!this.canTrack()) return;
      agg = new Agg();
      agg.src = c.srcKey();
      agg.protocol = c.protocol;
      agg.port = portful ? port : -1;
      services.set(service, agg);
    }
    source.lastService = service;
    source.lastSweep = agg;
    this.touch(agg, c, W_SWEEP, this.windows.sweep);
    const added = c.dstV4 ? agg.addInt(c.dst) : agg.addText(c.dstText!);
    if (added && agg.distinct > 1) this.evidence(agg, c);
  }

  private reject(source: SourceState, c: FlowCursor): void {
    let agg = source.rejects;
    if (agg === null) {
      if (!this.canTrack()) return;
      agg = new Agg();
      agg.src = c.srcKey();
      source.rejects = agg;
    }
    this.touch(agg, c, W_REJECT, this.windows.reject);
    // single rejects (internet background noise) keep no evidence; a burst keeps from #2 on
    if (agg.records > 1) this.evidence(agg, c);
  }

  private egressVolume(source: SourceState, c: FlowCursor): void {
    const v4 = c.srcV4 && c.dstV4;
    let agg = v4 ? this.egress4.get(c.src, c.dst) : source.egress6?.get(c.dstKey());
    if (agg === undefined) {
      if (!this.canTrack()) return;
      agg = new Agg();
      agg.src = c.srcKey();
      agg.dst = c.dstKey();
      if (v4) {
        this.egress4.set(c.src, c.dst, agg);
      } else {
        if (!source.egress6) source.egress6 = new Map();
        source.egress6.set(agg.dst, agg);
      }
      if (source.egressList === null) source.egressList = [agg];
      else source.egressList.push(agg);
    }
    this.touch(agg, c, W_EGRESS, this.windows.egress);
    // evidence once the pair has moved a quarter of the threshold
    if (agg.bytes >= this.egressEvidenceBytes) this.evidence(agg, c);
  }

  // ---- closing windows into findings -----------------------------------------------------

  private closeScan(a: Agg): void {
    if (a.distinct < this.config.rules['port-scan'].distinctPorts) return;
    const src = addressKeyToString(a.src);
    const dst = addressKeyToString(a.dst);
    this.emit(a, {
      rule: 'port-scan',
      fingerprint: `port-scan:${src}:${dst}`,
      srcaddr: src,
      dstaddr: dst,
      srcport: null,
      dstport: null,
      protocol: null,
      distinct: a.distinct,
    });
  }

  private closeSweep(a: Agg): void {
    if (a.distinct < this.config.rules['host-sweep'].distinctHosts) return;
    const src = addressKeyToString(a.src);
    const port = a.port >= 0 ? a.port : null;
    this.emit(a, {
      rule: 'host-sweep',
      fingerprint: `host-sweep:${src}:${protocolName(a.protocol)}${port === null ? '' : `:${port}`}`,
      srcaddr: src,
      dstaddr: null,
      srcport: null,
      dstport: port,
      protocol: a.protocol,
      distinct: a.distinct,
    });
  }

  private closeReject(a: Agg): void {
    if (a.records < this.config.rules['reject-burst'].minRejects) return;
    const src = addressKeyToString(a.src);
    this.emit(a, {
      rule: 'reject-burst',
      fingerprint: `reject-burst:${src}`,
      srcaddr: src,
      dstaddr: null,
      srcport: null,
      dstport: null,
      protocol: null,
      distinct: null,
    });
  }

  private closeEgress(a: Agg): void {
    if (a.bytes < this.config.rules['egress-volume'].minBytes) return;
    const src = addressKeyToString(a.src);
    const dst = addressKeyToString(a.dst);
    this.emit(a, {
      rule: 'egress-volume',
      fingerprint: `egress-volume:${src}:${dst}`,
      srcaddr: src,
      dstaddr: dst,
      srcport: null,
      dstport: null,
      protocol: null,
      distinct: null,
    });
  }

  private emit(
    a: Agg,
    f: Omit<
      RawFinding,
      'records' | 'packets' | 'bytes' | 'start' | 'end' | 'evidence' | 'occurrences'
    >,
  ): void {
    const existing = this.found.get(f.fingerprint);
    if (existing) {
      existing.records += a.records;
      existing.packets += a.packets;
      existing.bytes += a.bytes;
      existing.occurrences += 1;
      const first = this.epoch(a.first, a.last);
      const last = this.epoch(a.last, a.first);
      if (first < existing.start) existing.start = first;
      if (last > existing.end) existing.end = last;
      if (f.distinct !== null) existing.distinct = Math.max(existing.distinct ?? 0, f.distinct);
      for (const line of this.evidenceLines(a)) {
        if (existing.evidence.length >= this.maxEvidence) break;
        existing.evidence.push(line);
      }
      return;
    }
    this.found.set(f.fingerprint, {
      ...f,
      records: a.records,
      packets: a.packets,
      bytes: a.bytes,
      start: this.epoch(a.first, a.last),
      end: this.epoch(a.last, a.first),
      evidence: this.evidenceLines(a),
      occurrences: 1,
    });
  }

  private evidenceLines(a: Agg): string[] {
    const lines: string[] = [];
    const ev = a.evidence;
    if (ev !== null)
      for (let i = 0; i < ev.length; i += 2) lines.push(this.arena.text(ev[i]!, ev[i + 1]!));
    return lines;
  }

  private epoch(relative: number, fallback: number): number {
    const v = Number.isFinite(relative) && relative >= 0 ? relative : fallback;
    return Number.isFinite(v) && v >= 0 ? v + Math.max(this.base, 0) : 0;
  }

  /** Closes every open window and returns the batch's findings (rule order, then time). */
  finish(): RawFinding[] {
    for (const agg of this.perRecord.values()) {
      const src = addressKeyToString(agg.src);
      const dst = addressKeyToString(agg.dst);
      const zero = agg.rule === 'port-zero';
      this.emit(agg, {
        rule: agg.rule,
        fingerprint: agg.fp,
        srcaddr: src,
        dstaddr: dst,
        srcport: zero && agg.port === 1 ? 0 : null,
        dstport: zero && agg.port === 0 ? 0 : null,
        protocol: agg.protocol,
        distinct: null,
        ...(agg.listed ? { listed: agg.listed } : {}),
      });
    }
    this.perRecord.clear();
    for (const source of this.sourceOrder) {
      if (source.pairList) for (const a of source.pairList) this.closeScan(a);
      if (source.services) for (const a of source.services.values()) this.closeSweep(a);
      if (source.rejects) this.closeReject(source.rejects);
      if (source.egressList) for (const a of source.egressList) this.closeEgress(a);
    }
    this.sources4.clear();
    this.sources6.clear();
    this.sourceOrder.length = 0;
    this.pairs4.clear();
    this.egress4.clear();
    this.lastSrcV4 = false;
    this.lastSrcText = null;
    this.lastSource = undefined;
    const order = Object.keys(this.config.rules);
    return capFairly([...this.found.values()], this.config.limits.maxFindings, this.stats).sort(
      (a, b) => order.indexOf(a.rule) - order.indexOf(b.rule) || a.start - b.start,
    );
  }
}

/**
 * At most `max` findings, shared fairly between rules: a flood of one kind (spoofed port-0
 * probes from many sources) cannot crowd out a port scan. Within a rule the biggest first.
 */
function capFairly(findings: RawFinding[], max: number, stats: EngineStats): RawFinding[] {
  if (findings.length <= max) return findings;
  const byRule = new Map<string, RawFinding[]>();
  for (const f of findings) {
    let list = byRule.get(f.rule);
    if (!list) {
      list = [];
      byRule.set(f.rule, list);
    }
    list.push(f);
  }
  for (const list of byRule.values())
    list.sort((a, b) => b.records - a.records || b.bytes - a.bytes);
  const kept: RawFinding[] = [];
  for (let rank = 0; kept.length < max; rank++) {
    let any = false;
    for (const list of byRule.values()) {
      if (rank < list.length && kept.length < max) {
        kept.push(list[rank]!);
        any = true;
      }
    }
    if (!any) break;
  }
  stats.suppressedFindings += findings.length - kept.length;
  return kept;
}
