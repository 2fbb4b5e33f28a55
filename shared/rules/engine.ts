import {
  ACTION_REJECT,
  addressKeyToString,
  type FlowCursor,
  type FlowSink,
} from '../flowlogs/scanner.ts';
import { grown } from '../typed-arrays.ts';
import { CidrSet } from './cidr.ts';
import type { RuleName, RulesConfig } from './config.ts';
import { IntPairTable, IntTripleSet } from './int-table.ts';

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
  /** Aggregate rows of this source, one list per rule, in creation order (linked through
   * AggStore.next; -1 ends a list). IPv4 pairs are indexed in the engine's pair tables,
   * services in its service table; pairs involving IPv6 in `pairs6`/`egress6`. */
  pairHead = -1;
  pairTail = -1;
  pairs6: Map<number | string, number> | null = null;
  serviceHead = -1;
  serviceTail = -1;
  /** reject-burst. */
  rejects = -1;
  egressHead = -1;
  egressTail = -1;
  egress6: Map<number | string, number> | null = null;
  // the last pair and service seen from this source (runs of one conversation)
  lastPairV4 = false;
  lastPairDst = 0;
  lastPair = -1;
  lastService = -1;
  lastSweep = -1;
  readonly id: number;
  constructor(id: number) {
    this.id = id;
  }
}

const W_SCAN = 0;
const W_SWEEP = 1;
const W_REJECT = 2;
const W_EGRESS = 3;

/** Slots of an aggregate's hot row (see AggStore.hot). */
const HOT = 8;
const H_WINDOW = 0;
const H_RECORDS = 1;
const H_PACKETS = 2;
const H_BYTES = 3;
const H_FIRST = 4;
const H_LAST = 5;
const H_ONE = 6;
const H_DISTINCT = 7;

/**
 * The aggregates (one per pair, service, rejecting source, egress pair or per-record
 * fingerprint) as rows of typed-array columns. Ordinary traffic makes well over 100,000 of
 * them per 2 M records; as objects, each with its own distinct-value set and evidence list,
 * they were most of what the garbage collector traced, several times per batch.
 */
class AggStore {
  size = 0;
  /**
   * What every record updates, HOT doubles per row so that one row is one cache line (rows are
   * reached in hash order, and a column per field cost a cache miss per field): the window's
   * start, records, packets, bytes, first and last time (seconds since the engine's base; -1
   * until set), the first distinct integer (NaN until set) and the distinct count.
   */
  hot = new Float64Array(0);
  /** Distinct values beyond the first are in the engine's IntTripleSet under (row,
   * generation); IPv6 text in `textSets`. A closed window bumps the generation. */
  generation = new Int32Array(0);
  /** Identity: IPv4 keys here, IPv6 keys (text) in `texts` under row * 2 (src) / row * 2 + 1. */
  src = new Int32Array(0);
  dst = new Int32Array(0);
  protocol = new Int32Array(0);
  port = new Int32Array(0);
  /** Next row in the owner's list. */
  next = new Int32Array(0);
  /** Evidence: a list of entries in the engine's EvidenceArena. */
  evidenceHead = new Int32Array(0);
  evidenceTail = new Int32Array(0);
  evidenceCount = new Int32Array(0);
  readonly texts = new Map<number, string>();
  readonly textSets = new Map<number, Set<string>>();

  /** A new row with no records; src/dst unset (-1), protocol and port -1. */
  add(): number {
    if (this.size === this.src.length) this.grow(Math.max(1024, this.size * 2));
    const row = this.size++;
    this.reset(row);
    this.src[row] = -1;
    this.dst[row] = -1;
    this.protocol[row] = -1;
    this.port[row] = -1;
    this.next[row] = -1;
    return row;
  }

  reset(row: number): void {
    const h = this.hot;
    const at = row * HOT;
    h[at + H_WINDOW] = -1;
    h[at + H_RECORDS] = 0;
    h[at + H_PACKETS] = 0;
    h[at + H_BYTES] = 0;
    h[at + H_FIRST] = -1;
    h[at + H_LAST] = -1;
    h[at + H_ONE] = Number.NaN;
    h[at + H_DISTINCT] = 0;
    this.generation[row] += 1;
    this.evidenceHead[row] = -1;
    this.evidenceTail[row] = -1;
    this.evidenceCount[row] = 0;
    if (this.textSets.size > 0) this.textSets.delete(row);
  }

  setSrc(row: number, key: number | string): void {
    if (typeof key === 'number') this.src[row] = key;
    else this.texts.set(row * 2, key);
  }

  setDst(row: number, key: number | string): void {
    if (typeof key === 'number') this.dst[row] = key;
    else this.texts.set(row * 2 + 1, key);
  }

  srcKey(row: number): number | string {
    return this.texts.get(row * 2) ?? this.src[row]!;
  }

  dstKey(row: number): number | string {
    return this.texts.get(row * 2 + 1) ?? this.dst[row]!;
  }

  private grow(capacity: number): void {
    this.hot = grown(this.hot, capacity * HOT);
    this.generation = grown(this.generation, capacity);
    this.src = grown(this.src, capacity);
    this.dst = grown(this.dst, capacity);
    this.protocol = grown(this.protocol, capacity);
    this.port = grown(this.port, capacity);
    this.next = grown(this.next, capacity);
    this.evidenceHead = grown(this.evidenceHead, capacity);
    this.evidenceTail = grown(this.evidenceTail, capacity);
    this.evidenceCount = grown(this.evidenceCount, capacity);
  }
}

/** A per-record rule's aggregate (port-zero, rare-protocol, deny-list), by fingerprint. */
interface RecordAggregate {
  row: number;
  rule: RuleName;
  fp: string;
  listed?: string;
}

/**
 * Evidence lines copied as bytes into 4 MiB pages instead of one string each: most aggregates
 * that keep evidence never become findings, and a string per line is a long-lived object the
 * garbage collector copies and scans. Each line is an entry (position, length, and the next
 * entry of the same aggregate: -1 ends a list). Lines are at most the scanner's maxLineBytes.
 */
class EvidenceArena {
  private static readonly PAGE_BITS = 22;
  private readonly pages: Buffer[] = [];
  private page: Buffer | null = null;
  private used = 0;
  private entries = 0;
  private position = new Float64Array(4096);
  private length = new Int32Array(4096);
  next = new Int32Array(4096);

  /** Copies a line in; returns its entry. */
  add(buf: Uint8Array, start: number, len: number): number {
    const size = 1 << EvidenceArena.PAGE_BITS;
    if (this.page === null || this.used + len > size) {
      this.page = Buffer.allocUnsafeSlow(Math.max(size, len));
      this.pages.push(this.page);
      this.used = 0;
    }
    this.page.set(buf.subarray(start, start + len), this.used);
    const entry = this.entries++;
    if (entry === this.next.length) {
      this.position = grown(this.position, entry * 2);
      this.length = grown(this.length, entry * 2);
      this.next = grown(this.next, entry * 2);
    }
    this.position[entry] = (this.pages.length - 1) * size + this.used;
    this.length[entry] = len;
    this.next[entry] = -1;
    this.used += len;
    return entry;
  }

  text(entry: number): string {
    const size = 1 << EvidenceArena.PAGE_BITS;
    const pos = this.position[entry]!;
    const page = this.pages[Math.floor(pos / size)]!;
    const off = pos % size;
    return page.toString('latin1', off, off + this.length[entry]!);
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

  /** Each source address's state (IPv4 sources in an int table, IPv6 in a Map; `sourceOrder`
   * keeps creation order for finish): the heads of its aggregate rows' lists. The rows live in
   * `aggs`, found through the pair, service and egress tables below. */
  private sources4 = new IntPairTable<SourceState>();
  private sources6 = new Map<string, SourceState>();
  private sourceOrder: SourceState[] = [];
  private aggs = new AggStore();
  /** Distinct values of the aggregates beyond their first: (row, generation, value). */
  private distinctValues = this.newDistinctValues();
  /** IPv4 (source, destination) → port-scan / egress-volume row; (source id, service) →
   * host-sweep row. */
  private pairs4 = new IntPairTable<number>();
  private egress4 = new IntPairTable<number>();
  private services = new IntPairTable<number>();
  private readonly onZero: boolean;
  private readonly onRare: boolean;
  private readonly onDeny: boolean;
  private readonly onReject: boolean;
  private readonly onScan: boolean;
  private readonly onSweep: boolean;
  private readonly onEgress: boolean;
  private readonly egressIgnoreAws: boolean;
  private readonly egressEvidenceBytes: number;
  private readonly perRecord = new Map<string, RecordAggregate>();
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
        source = new SourceState(this.sourceOrder.length);
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
      source = new SourceState(this.sourceOrder.length);
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

  /** Entries of closed windows (an older generation of their row) are dropped on growth. */
  private newDistinctValues(): IntTripleSet {
    return new IntTripleSet(1024, (row, generation) => this.aggs.generation[row] === generation);
  }

  /** Adds an int32 value (port key, IPv4 address) to a row's distinct values; true when new. */
  private addInt(row: number, v: number): boolean {
    const a = this.aggs;
    const at = row * HOT;
    const one = a.hot[at + H_ONE]!;
    if (Number.isNaN(one)) {
      a.hot[at + H_ONE] = v;
      a.hot[at + H_DISTINCT] += 1;
      return true;
    }
    if (one === v) return false;
    if (!this.distinctValues.add(row, a.generation[row]!, v)) return false;
    a.hot[at + H_DISTINCT] += 1;
    return true;
  }

  /** Adds a text value (IPv6 address) to a row's distinct values; true when it is new. */
  private addText(row: number, v: string): boolean {
    const a = this.aggs;
    let texts = a.textSets.get(row);
    if (texts === undefined) {
      texts = new Set();
      a.textSets.set(row, texts);
    } else if (texts.has(v)) return false;
    texts.add(v);
    a.hot[row * HOT + H_DISTINCT] += 1;
    return true;
  }

  /** Window bookkeeping shared by the aggregate rules; closes the window when it expired. */
  private touch(row: number, c: FlowCursor, which: number, window: number): void {
    const h = this.aggs.hot;
    const at = row * HOT;
    // times relative to the batch's first record stay small integers (no boxed doubles)
    const start = c.start >= 0 ? c.start - this.base : -1;
    const end = c.end >= 0 ? c.end - this.base : start;
    const t = start >= 0 ? start : end;
    const windowStart = h[at + H_WINDOW]!;
    if (windowStart < 0) h[at + H_WINDOW] = t;
    else if (t >= 0 && t >= windowStart + window) {
      if (which === W_SCAN) this.closeScan(row);
      else if (which === W_SWEEP) this.closeSweep(row);
      else if (which === W_REJECT) this.closeReject(row);
      else this.closeEgress(row);
      this.aggs.reset(row);
      h[at + H_WINDOW] = t;
    }
    this.count(h, at, c, start, end);
  }

  /**
   * Adds the record to a row's records, packets, bytes and time range (`start`/`end`: its
   * times relative to the batch's base, -1 when absent; `end` falls back to `start`).
   */
  private count(h: Float64Array, at: number, c: FlowCursor, start: number, end: number): void {
    h[at + H_RECORDS] += 1;
    if (c.packets > 0) h[at + H_PACKETS] += c.packets;
    if (c.bytes > 0) h[at + H_BYTES] += c.bytes;
    const first = h[at + H_FIRST]!;
    if (start >= 0 && (first < 0 || start < first)) h[at + H_FIRST] = start;
    if (end > h[at + H_LAST]!) h[at + H_LAST] = end;
  }

  private evidence(row: number, c: FlowCursor): void {
    const a = this.aggs;
    const count = a.evidenceCount[row]!;
    if (count > 0 && count >= this.maxEvidence) return;
    const len = c.lineEnd - c.lineStart;
    const entry = this.arena.add(c.buf, c.lineStart, len);
    if (count === 0) a.evidenceHead[row] = entry;
    else this.arena.next[a.evidenceTail[row]!] = entry;
    a.evidenceTail[row] = entry;
    a.evidenceCount[row] = count + 1;
  }

  // ---- per-record rules (aggregated by fingerprint) -------------------------------------

  private perRecordAgg(rule: RuleName, fp: string, c: FlowCursor): RecordAggregate | undefined {
    const a = this.aggs;
    let agg = this.perRecord.get(fp);
    if (agg === undefined) {
      if (!this.canTrack()) return undefined;
      const row = this.newRow(c, -1);
      a.setDst(row, c.dstKey());
      a.protocol[row] = c.protocol;
      agg = { row, rule, fp };
      this.perRecord.set(fp, agg);
    }
    const row = agg.row;
    const start = c.start >= 0 ? c.start - this.base : -1;
    this.count(a.hot, row * HOT, c, start, c.end >= 0 ? c.end - this.base : start);
    this.evidence(row, c);
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
    // port: 0 when the destination side is zero, 1 when the source side is
    if (agg && this.aggs.hot[agg.row * HOT + H_RECORDS] === 1)
      this.aggs.port[agg.row] = c.dstport === 0 ? 0 : 1;
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

  /** A new row at the end of one of a source's lists. */
  private newRow(c: FlowCursor, tail: number): number {
    const row = this.aggs.add();
    this.aggs.setSrc(row, c.srcKey());
    if (tail >= 0) this.aggs.next[tail] = row;
    return row;
  }

  private portScan(source: SourceState, c: FlowCursor): void {
    let row: number | undefined;
    const v4 = c.srcV4 && c.dstV4;
    if (v4 && source.lastPairV4 && source.lastPairDst === c.dst) {
      row = source.lastPair;
    } else if (v4) {
      row = this.pairs4.get(c.src, c.dst);
    } else if (source.pairs6 !== null) {
      row = source.pairs6.get(c.dstKey());
    }
    if (row === undefined) {
      if (!this.canTrack()) return;
      row = this.newRow(c, source.pairTail);
      const dst = c.dstKey();
      this.aggs.setDst(row, dst);
      if (v4) {
        this.pairs4.set(c.src, c.dst, row);
      } else {
        if (source.pairs6 === null) source.pairs6 = new Map();
        source.pairs6.set(dst, row);
      }
      if (source.pairHead < 0) source.pairHead = row;
      source.pairTail = row;
    }
    source.lastPairV4 = v4;
    source.lastPairDst = v4 ? c.dst : 0;
    source.lastPair = row;
    this.touch(row, c, W_SCAN, this.windows.scan);
    // evidence from the second distinct port on: the one-port pairs of normal traffic
    // (almost all of them) never keep any
    if (
      this.addInt(row, c.protocol * 65536 + c.dstport) &&
      this.aggs.hot[row * HOT + H_DISTINCT]! > 1
    )
      this.evidence(row, c);
  }

  private hostSweep(source: SourceState, c: FlowCursor, portful: boolean): void {
    const port = portful ? Math.max(c.dstport, 0) : 0;
    const service = c.protocol * 65536 + port;
    let row =
      service === source.lastService ? source.lastSweep : this.services.get(source.id, service);
    if (row === undefined) {
      if (!this.canTrack()) return;
      row = this.newRow(c, source.serviceTail);
      this.aggs.protocol[row] = c.protocol;
      this.aggs.port[row] = portful ? port : -1;
      this.services.set(source.id, service, row);
      if (source.serviceHead < 0) source.serviceHead = row;
      source.serviceTail = row;
    }
    source.lastService = service;
    source.lastSweep = row;
    this.touch(row, c, W_SWEEP, this.windows.sweep);
    const added = c.dstV4 ? this.addInt(row, c.dst) : this.addText(row, c.dstText!);
    if (added && this.aggs.hot[row * HOT + H_DISTINCT]! > 1) this.evidence(row, c);
  }

  private reject(source: SourceState, c: FlowCursor): void {
    let row = source.rejects;
    if (row < 0) {
      if (!this.canTrack()) return;
      row = this.newRow(c, -1);
      source.rejects = row;
    }
    this.touch(row, c, W_REJECT, this.windows.reject);
    // single rejects (internet background noise) keep no evidence; a burst keeps from #2 on
    if (this.aggs.hot[row * HOT + H_RECORDS]! > 1) this.evidence(row, c);
  }

  private egressVolume(source: SourceState, c: FlowCursor): void {
    const v4 = c.srcV4 && c.dstV4;
    let row = v4 ? this.egress4.get(c.src, c.dst) : source.egress6?.get(c.dstKey());
    if (row === undefined) {
      if (!this.canTrack()) return;
      row = this.newRow(c, source.egressTail);
      const dst = c.dstKey();
      this.aggs.setDst(row, dst);
      if (v4) {
        this.egress4.set(c.src, c.dst, row);
      } else {
        if (!source.egress6) source.egress6 = new Map();
        source.egress6.set(dst, row);
      }
      if (source.egressHead < 0) source.egressHead = row;
      source.egressTail = row;
    }
    this.touch(row, c, W_EGRESS, this.windows.egress);
    // evidence once the pair has moved a quarter of the threshold
    if (this.aggs.hot[row * HOT + H_BYTES]! >= this.egressEvidenceBytes) this.evidence(row, c);
  }

  // ---- closing windows into findings -----------------------------------------------------

  private closeScan(row: number): void {
    const distinct = this.aggs.hot[row * HOT + H_DISTINCT]!;
    if (distinct < this.config.rules['port-scan'].distinctPorts) return;
    const src = addressKeyToString(this.aggs.srcKey(row));
    const dst = addressKeyToString(this.aggs.dstKey(row));
    this.emit(row, {
      rule: 'port-scan',
      fingerprint: `port-scan:${src}:${dst}`,
      srcaddr: src,
      dstaddr: dst,
      srcport: null,
      dstport: null,
      protocol: null,
      distinct,
    });
  }

  private closeSweep(row: number): void {
    const distinct = this.aggs.hot[row * HOT + H_DISTINCT]!;
    if (distinct < this.config.rules['host-sweep'].distinctHosts) return;
    const src = addressKeyToString(this.aggs.srcKey(row));
    const protocol = this.aggs.protocol[row]!;
    const port = this.aggs.port[row]! >= 0 ? this.aggs.port[row]! : null;
    this.emit(row, {
      rule: 'host-sweep',
      fingerprint: `host-sweep:${src}:${protocolName(protocol)}${port === null ? '' : `:${port}`}`,
      srcaddr: src,
      dstaddr: null,
      srcport: null,
      dstport: port,
      protocol,
      distinct,
    });
  }

  private closeReject(row: number): void {
    if (this.aggs.hot[row * HOT + H_RECORDS]! < this.config.rules['reject-burst'].minRejects)
      return;
    const src = addressKeyToString(this.aggs.srcKey(row));
    this.emit(row, {
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

  private closeEgress(row: number): void {
    if (this.aggs.hot[row * HOT + H_BYTES]! < this.config.rules['egress-volume'].minBytes) return;
    const src = addressKeyToString(this.aggs.srcKey(row));
    const dst = addressKeyToString(this.aggs.dstKey(row));
    this.emit(row, {
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
    row: number,
    f: Omit<
      RawFinding,
      'records' | 'packets' | 'bytes' | 'start' | 'end' | 'evidence' | 'occurrences'
    >,
  ): void {
    const a = this.aggs;
    const records = a.hot[row * HOT + H_RECORDS]!;
    const packets = a.hot[row * HOT + H_PACKETS]!;
    const bytes = a.hot[row * HOT + H_BYTES]!;
    const first = this.epoch(a.hot[row * HOT + H_FIRST]!, a.hot[row * HOT + H_LAST]!);
    const last = this.epoch(a.hot[row * HOT + H_LAST]!, a.hot[row * HOT + H_FIRST]!);
    const existing = this.found.get(f.fingerprint);
    if (existing) {
      existing.records += records;
      existing.packets += packets;
      existing.bytes += bytes;
      existing.occurrences += 1;
      if (first < existing.start) existing.start = first;
      if (last > existing.end) existing.end = last;
      if (f.distinct !== null) existing.distinct = Math.max(existing.distinct ?? 0, f.distinct);
      for (const line of this.evidenceLines(row)) {
        if (existing.evidence.length >= this.maxEvidence) break;
        existing.evidence.push(line);
      }
      return;
    }
    this.found.set(f.fingerprint, {
      ...f,
      records,
      packets,
      bytes,
      start: first,
      end: last,
      evidence: this.evidenceLines(row),
      occurrences: 1,
    });
  }

  private evidenceLines(row: number): string[] {
    const lines: string[] = [];
    const arena = this.arena;
    for (let e = this.aggs.evidenceHead[row]!; e >= 0; e = arena.next[e]!)
      lines.push(arena.text(e));
    return lines;
  }

  private epoch(relative: number, fallback: number): number {
    const v = Number.isFinite(relative) && relative >= 0 ? relative : fallback;
    return Number.isFinite(v) && v >= 0 ? v + Math.max(this.base, 0) : 0;
  }

  /** Closes every open window and returns the batch's findings (rule order, then time). */
  finish(): RawFinding[] {
    const a = this.aggs;
    for (const agg of this.perRecord.values()) {
      const row = agg.row;
      const src = addressKeyToString(a.srcKey(row));
      const dst = addressKeyToString(a.dstKey(row));
      const zero = agg.rule === 'port-zero';
      this.emit(row, {
        rule: agg.rule,
        fingerprint: agg.fp,
        srcaddr: src,
        dstaddr: dst,
        srcport: zero && a.port[row] === 1 ? 0 : null,
        dstport: zero && a.port[row] === 0 ? 0 : null,
        protocol: a.protocol[row]!,
        distinct: null,
        ...(agg.listed ? { listed: agg.listed } : {}),
      });
    }
    this.perRecord.clear();
    for (const source of this.sourceOrder) {
      for (let row = source.pairHead; row >= 0; row = a.next[row]!) this.closeScan(row);
      for (let row = source.serviceHead; row >= 0; row = a.next[row]!) this.closeSweep(row);
      if (source.rejects >= 0) this.closeReject(source.rejects);
      for (let row = source.egressHead; row >= 0; row = a.next[row]!) this.closeEgress(row);
    }
    this.sources4 = new IntPairTable<SourceState>();
    this.sources6 = new Map();
    this.sourceOrder = [];
    this.aggs = new AggStore();
    this.distinctValues = this.newDistinctValues();
    this.pairs4 = new IntPairTable<number>();
    this.egress4 = new IntPairTable<number>();
    this.services = new IntPairTable<number>();
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
