import type {
  Conversation,
  DnsRecord,
  HttpRecord,
  PcapAnalysis,
  PortZeroPacket,
  TlsRecord,
} from '../pcap/index.ts';
import type { IntegrityResult } from './integrity.ts';
import type { ManifestFacts } from './manifest.ts';
import type { SourceObjectInfo } from './source.ts';

/**
 * The rows of the Athena tables (resources/athena.yml declares the same columns; a test reads
 * the files this job writes and checks both ways). Column names are snake_case; every row
 * carries every column (null when unknown), so a missing key never hides a renamed one.
 * Timestamps are epoch seconds with a fraction (`from_unixtime(start_ts)` in Athena).
 */

/** Identifies the source file on every row, so one query can span many captures. */
export interface FileColumns {
  capture_id: string;
  instance_id: string;
  file: string;
  version_id: string;
}

export function conversationRows(
  ctx: FileColumns,
  conversations: Iterable<Conversation>,
): Iterable<Record<string, unknown>> {
  return mapIterable(conversations, (c) => ({
    ...ctx,
    protocol: c.protocol,
    a_addr: c.a.addr,
    a_port: c.a.port,
    b_addr: c.b.addr,
    b_port: c.b.port,
    packets_a_to_b: c.packetsAtoB,
    bytes_a_to_b: c.bytesAtoB,
    packets_b_to_a: c.packetsBtoA,
    bytes_b_to_a: c.bytesBtoA,
    packets: c.packetsAtoB + c.packetsBtoA,
    bytes: c.bytesAtoB + c.bytesBtoA,
    start_ts: c.start,
    end_ts: c.end,
    duration_seconds: Math.max(0, c.end - c.start),
    tcp_flags: c.tcpFlags,
    community_id: c.communityId,
    stream_index: c.streamIndex ?? null,
    port_zero: (c.protocol === 'tcp' || c.protocol === 'udp') && (c.a.port === 0 || c.b.port === 0),
  }));
}

export function dnsRows(ctx: FileColumns, records: Iterable<DnsRecord>) {
  return mapIterable(records, (r) => ({
    ...ctx,
    ts: r.ts,
    src: r.src,
    dst: r.dst,
    transport: r.transport,
    dns_id: r.id,
    is_response: r.isResponse,
    qname: r.qname,
    qtype: r.qtype,
    rcode: r.rcode ?? null,
    answers: r.answers ?? [],
  }));
}

export function tlsRows(ctx: FileColumns, records: Iterable<TlsRecord>) {
  return mapIterable(records, (r) => ({
    ...ctx,
    ts: r.ts,
    src: r.src,
    dst: r.dst,
    sport: r.sport,
    dport: r.dport,
    sni: r.sni,
    version: r.version,
    alpn: r.alpn,
  }));
}

export function httpRows(ctx: FileColumns, records: Iterable<HttpRecord>) {
  return mapIterable(records, (r) => ({
    ...ctx,
    ts: r.ts,
    src: r.src,
    dst: r.dst,
    sport: r.sport,
    dport: r.dport,
    method: r.method,
    host: r.host,
    path: r.path,
    user_agent: r.userAgent,
  }));
}

export function portZeroRows(ctx: FileColumns, records: Iterable<PortZeroPacket>) {
  return mapIterable(records, (r) => portZeroColumns(ctx, r));
}

function portZeroColumns(ctx: FileColumns | null, r: PortZeroPacket) {
  return {
    ...(ctx ?? {}),
    ts: r.ts,
    src: r.src,
    dst: r.dst,
    sport: r.sport,
    dport: r.dport,
    protocol: r.protocol,
    length: r.length,
  };
}

export const PORT_ZERO_SAMPLE = 20;

export interface SummaryInput {
  ctx: FileColumns;
  source: SourceObjectInfo;
  /** null when the file could not be decoded at all (see decode_error). */
  analysis: PcapAnalysis | null;
  decodeError: { code: string; message: string } | null;
  integrity: IntegrityResult;
  manifest: ManifestFacts;
  carveMode: string;
}

const num = (value: string | undefined): number | null => {
  if (value === undefined || !/^\d{1,12}(\.\d{1,9})?$/.test(value.trim())) return null;
  return Number(value);
};

/**
 * The summary row (one JSON line in the summary table; the completion record embeds it too).
 * Deterministic for a given object version: no processing time in it, so a retry writes the
 * same bytes.
 */
export function summaryRow(input: SummaryInput): Record<string, unknown> {
  const { ctx, source, analysis: a, integrity, manifest } = input;
  const lookback = source.metadata.lookback;
  return {
    ...ctx,
    source_bucket: source.bucket,
    source_key: source.key,
    source_size: source.size,
    source_last_modified: source.lastModified ? source.lastModified.toISOString() : null,
    host_time_start: num(source.metadata['time-start']),
    host_time_end: num(source.metadata['time-end']),
    lookback: lookback === 'true' ? true : lookback === 'false' ? false : null,
    decode_status: a ? (a.truncated ? 'truncated' : 'ok') : 'unreadable',
    decode_error: input.decodeError
      ? `${input.decodeError.code}: ${input.decodeError.message}`
      : null,
    format: a?.format ?? null,
    link_types: a?.linkTypes ?? [],
    packets: a?.packets ?? 0,
    bytes: a?.bytes ?? 0,
    first_ts: a?.firstTs ?? null,
    last_ts: a?.lastTs ?? null,
    duration_seconds:
      a && a.firstTs !== null && a.lastTs !== null ? Math.max(0, a.lastTs - a.firstTs) : null,
    protocols: Object.entries(a?.protocols ?? {})
      .sort((x, y) => y[1] - x[1] || x[0].localeCompare(y[0]))
      .map(([name, packets]) => ({ name, packets })),
    top_talkers: (a?.topTalkers ?? []).map((t) => ({
      addr: t.addr,
      packets: t.packets,
      bytes: t.bytes,
    })),
    conversations: a ? a.conversationCount : 0,
    tcp_streams: a?.streams ?? 0,
    dns_records: a?.dns.length ?? 0,
    tls_records: a?.tls.length ?? 0,
    http_records: a?.http.length ?? 0,
    port_zero_packets: (a?.portZero.length ?? 0) + (a?.dropped.portZero ?? 0),
    port_zero_sample: (a?.portZero ?? [])
      .slice(0, PORT_ZERO_SAMPLE)
      .map((p) => portZeroColumns(null, p)),
    records_dropped: {
      conversations: a?.dropped.conversations ?? 0,
      dns: a?.dropped.dns ?? 0,
      tls: a?.dropped.tls ?? 0,
      http: a?.dropped.http ?? 0,
      port_zero: a?.dropped.portZero ?? 0,
    },
    anomalies: Object.entries(a?.anomalies ?? {})
      .sort((x, y) => x[0].localeCompare(y[0]))
      .map(([kind, count]) => ({ kind, count })),
    anomaly_total: Object.values(a?.anomalies ?? {}).reduce((s, n) => s + n, 0),
    truncated: a?.truncated ?? false,
    integrity_verdict: integrity.verdict,
    integrity: {
      verdict: integrity.verdict,
      sha256: integrity.sha256,
      bytes_read: integrity.bytesRead,
      host: { status: integrity.host.status, expected: integrity.host.expected },
      s3: {
        status: integrity.s3.status,
        expected: integrity.s3.expected,
        kind: integrity.s3.kind,
        parts: integrity.s3.parts,
      },
      manifest: { status: integrity.manifest.status, expected: integrity.manifest.expected },
      provenance: integrity.provenance
        ? { status: integrity.provenance.status, detail: integrity.provenance.detail }
        : null,
      problems: integrity.problems,
    },
    manifest_status: manifest.status,
    kernel_drops: manifest.packetsDroppedByKernel,
    host_packets_captured: manifest.packetsCaptured,
    carve: {
      mode: input.carveMode,
      streams: a?.carve?.streamsCarved ?? 0,
      pieces: a?.carve?.piecesWritten ?? 0,
      packets: a?.carve?.packetsWritten ?? 0,
      bytes: a?.carve?.bytesWritten ?? 0,
    },
  };
}

function* mapIterable<T, R>(items: Iterable<T>, f: (item: T) => R): Generator<R> {
  for (const item of items) yield f(item);
}
