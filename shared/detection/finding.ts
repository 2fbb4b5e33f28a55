import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import type { CaptureRequestInput, StructuredFilter } from '../capture/request.ts';
import type { FlowLogFormat } from '../flowlogs/format.ts';
import { type FlowRecord, recordFromText } from '../flowlogs/record.ts';
import { CidrSet } from '../rules/cidr.ts';
import type { RuleName, RulesConfig } from '../rules/config.ts';
import { protocolName, type RawFinding } from '../rules/engine.ts';

/**
 * A finding as Tapline publishes it, prints it (`tapline detect --json`) and turns it into a
 * capture request: what fired, on which addresses, over which time range, with the evidence
 * records (bounded) and a suggested capture (where, what, how long).
 */
export interface Finding {
  rule: RuleName;
  severity: 'low' | 'medium' | 'high' | 'critical';
  fingerprint: string;
  summary: string;
  srcaddr: string | null;
  dstaddr: string | null;
  srcport: number | null;
  dstport: number | null;
  protocol: number | null;
  /** Matching flow records (all of them, not only the evidence sample). */
  records: number;
  packets: number;
  bytes: number;
  /** Distinct destination ports (port-scan) or hosts (host-sweep). */
  distinct: number | null;
  /** Identical findings folded into this one within the batch. */
  occurrences: number;
  /** ISO-8601 UTC time range of the matching records. */
  start: string;
  end: string;
  /** Where the records came from: `cwl:<group>/<stream>`, `s3://bucket/key`, a file name. */
  source: string;
  /**
   * Set when the source was damaged part-way (a gzip object cut short, a Parquet row group that
   * cannot be read): the finding comes from the records before the damage, which are exactly
   * what was written, so its counts are lower bounds. Says what broke.
   */
  sourceDamaged?: string;
  evidence: FlowRecord[];
  /** Whether this rule starts a capture by itself. */
  autoCapture: boolean;
  capture: SuggestedCapture;
}

export interface SuggestedCapture {
  /**
   * Where the evidence records say the traffic was logged, for target resolution: the request's
   * targets use the interface (else the address). A v3+ record's `instance-id` is not carried
   * here: target resolution takes no instance hint (it finds the instance through its ENI when
   * that is the right host), and an instance ID in the suggestion would invite capturing on it
   * directly. It stays in the evidence records.
   */
  where: {
    interfaceIds: string[];
    vpcIds: string[];
    subnetIds: string[];
    addresses: string[];
  };
  /** A request that passes parseCaptureRequest (source "detector"). */
  request: CaptureRequestInput;
}

const ENI = /^eni-[0-9a-f]{8,17}$/;
const VPC = /^vpc-[0-9a-f]{8,17}$/;
const SUBNET = /^subnet-[0-9a-f]{8,17}$/;

const FILTER_PROTOCOLS: Record<number, StructuredFilter['protocols'][number]> = {
  1: 'icmp',
  6: 'tcp',
  17: 'udp',
  41: 'ipv6-in-ipv4',
  47: 'gre',
  50: 'esp',
  58: 'icmp6',
};

function distinctValues(records: FlowRecord[], field: string, pattern: RegExp, max = 5): string[] {
  const out: string[] = [];
  for (const r of records) {
    const v = r[field];
    if (typeof v === 'string' && pattern.test(v) && !out.includes(v)) out.push(v);
    if (out.length >= max) break;
  }
  return out;
}

function iso(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString();
}

function summaryOf(f: RawFinding): string {
  const proto = f.protocol === null ? '' : ` ${protocolName(f.protocol)}`;
  switch (f.rule) {
    case 'port-zero':
      return `${proto.trim()} traffic with port 0 from ${f.srcaddr} to ${f.dstaddr} (${f.records} records)`;
    case 'port-scan':
      return `${f.srcaddr} probed ${f.distinct} ports on ${f.dstaddr}`;
    case 'host-sweep':
      return `${f.srcaddr} probed ${f.distinct} hosts on${proto}${f.dstport === null ? '' : ` port ${f.dstport}`}`;
    case 'reject-burst':
      return `${f.records} rejected flows from ${f.srcaddr}`;
    case 'deny-list':
      return `traffic between deny-listed ${f.listed} and ${f.srcaddr === f.listed ? f.dstaddr : f.srcaddr}`;
    case 'egress-volume':
      return `${f.bytes} bytes from internal ${f.srcaddr} to external ${f.dstaddr}`;
    case 'rare-protocol':
      return `unexpected protocol${proto} between ${f.srcaddr} and ${f.dstaddr}`;
  }
}

export interface FindingContext {
  rules: RulesConfig;
  format: FlowLogFormat;
  source: string;
  /** Epoch seconds "now", for sizing the look-back. */
  now: number;
  /** What damaged the source part-way, when it was (see Finding.sourceDamaged). */
  sourceDamaged?: string;
}

/**
 * The look-back a capture should upload first: it must reach back to the finding's start,
 * which flow-log delivery delay (≈5 min CloudWatch, ≈10 min S3) already puts in the past,
 * plus a margin; capped per rule. A fixed per-rule lookbackSeconds wins.
 */
export function lookbackFor(
  rule: RulesConfig['rules'][RuleName],
  startEpoch: number,
  now: number,
): number {
  const c = rule.capture;
  if (c.lookbackSeconds !== undefined) return c.lookbackSeconds;
  const needed = Math.ceil(Math.max(0, now - startEpoch)) + c.lookbackMarginSeconds;
  return Math.min(needed, c.maxLookbackSeconds);
}

/** Fingerprints double as cooldown keys: [A-Za-z0-9:._-], ≤ 128 characters, else hashed. */
export function safeFingerprint(rule: string, text: string): string {
  if (/^[A-Za-z0-9:._-]{1,128}$/.test(text)) return text;
  return `${rule}:${createHash('sha256').update(text).digest('hex').slice(0, 32)}`;
}

export function toFinding(raw: RawFinding, ctx: FindingContext): Finding {
  const rule = ctx.rules.rules[raw.rule];
  const fingerprint = safeFingerprint(raw.rule, raw.fingerprint);
  const evidence = raw.evidence.map((line) => recordFromText(ctx.format, line));
  const internal = new CidrSet(ctx.rules.internalCidrs);
  const addresses = [raw.srcaddr, raw.dstaddr, raw.listed].filter(
    (a, i, all): a is string => typeof a === 'string' && isIP(a) !== 0 && all.indexOf(a) === i,
  );
  const where = {
    interfaceIds: distinctValues(evidence, 'interface-id', ENI),
    vpcIds: distinctValues(evidence, 'vpc-id', VPC),
    subnetIds: distinctValues(evidence, 'subnet-id', SUBNET),
    addresses,
  };

  // Where: the design's resolution order (the instance when tagged for capture, else the NAT or
  // appliance its route table sends the peer's traffic through, else a sensor in the VPC) runs
  // from the interface that logged the records, or from the internal address. A record's
  // instance-id (v3+ formats) is never a target by itself: naming it would skip the capture
  // tag, the route and the sensor (an untagged workload would be captured on, or the request
  // fail instead of reaching the NAT that sees the traffic). It stays in the evidence records;
  // resolution finds the same instance through its ENI when it is the right host.
  const internalAddr = addresses.find((a) => internal.containsText(a));
  const peer = addresses.find((a) => a !== internalAddr);
  let targets: CaptureRequestInput['targets'];
  if (where.interfaceIds.length > 0) {
    targets = {
      kind: 'eni',
      eniId: where.interfaceIds[0]!,
      ...(peer ? { peerAddress: peer } : {}),
    };
  } else {
    const address = internalAddr ?? raw.dstaddr ?? raw.srcaddr ?? addresses[0]!;
    targets = {
      kind: 'address',
      address,
      ...(where.vpcIds[0] ? { vpcId: where.vpcIds[0] } : {}),
      ...(peer && peer !== address ? { peerAddress: peer } : {}),
    };
  }

  // What: the peers that define the finding.
  const hosts =
    raw.rule === 'deny-list'
      ? [raw.listed!]
      : raw.rule === 'host-sweep' || raw.rule === 'reject-burst'
        ? [raw.srcaddr!]
        : addresses;
  const ports =
    raw.rule === 'port-zero'
      ? [0]
      : raw.rule === 'host-sweep' && raw.dstport !== null
        ? [raw.dstport]
        : [];
  const proto = raw.protocol === null ? undefined : FILTER_PROTOCOLS[raw.protocol];
  const filter: StructuredFilter = {
    kind: 'structured',
    hosts: hosts.filter((h) => isIP(h) !== 0),
    ports,
    portRanges: [],
    protocols: proto ? [proto] : [],
    direction: 'both',
  };

  const summary = summaryOf(raw);
  const request: CaptureRequestInput = {
    targets,
    durationSeconds: rule.capture.durationSeconds,
    ...(rule.capture.snaplen !== undefined ? { snaplen: rule.capture.snaplen } : {}),
    filter,
    lookbackSeconds: lookbackFor(rule, raw.start, ctx.now),
    reason:
      `Flow anomaly ${raw.rule}: ${summary}${ctx.sourceDamaged !== undefined ? ' (source damaged part-way: counts are lower bounds)' : ''}`
        .replace(/[^\x20-\x7e]/g, '?')
        .slice(0, 500),
    requestedBy: 'tapline-detector',
    source: 'detector',
    fingerprint,
    finding: {
      rule: raw.rule,
      fingerprint,
      severity: rule.severity,
      start: iso(raw.start),
      end: iso(raw.end),
    },
  };

  return {
    rule: raw.rule,
    severity: rule.severity,
    fingerprint,
    summary,
    srcaddr: raw.srcaddr,
    dstaddr: raw.dstaddr,
    srcport: raw.srcport,
    dstport: raw.dstport,
    protocol: raw.protocol,
    records: raw.records,
    packets: raw.packets,
    bytes: raw.bytes,
    distinct: raw.distinct,
    occurrences: raw.occurrences,
    start: iso(raw.start),
    end: iso(raw.end),
    source: ctx.source,
    ...(ctx.sourceDamaged !== undefined ? { sourceDamaged: ctx.sourceDamaged } : {}),
    evidence,
    autoCapture: rule.autoCapture,
    capture: { where, request },
  };
}
