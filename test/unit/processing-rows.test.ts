import { describe, expect, it } from 'vitest';
import {
  conversationRows,
  dnsRows,
  httpRows,
  PORT_ZERO_SAMPLE,
  portZeroRows,
  type SummaryInput,
  summaryRow,
  tlsRows,
} from '../../shared/processing/rows.ts';
import {
  conversation,
  dnsRecord,
  fileColumns,
  httpRecord,
  manifestFacts,
  pcapAnalysis,
  portZeroPacket,
  sourceInfo,
  tlsRecord,
  verifiedIntegrity,
} from './processing-factories.ts';

const ctx = fileColumns();

function summaryInput(overrides: Partial<SummaryInput> = {}): SummaryInput {
  return {
    ctx,
    source: sourceInfo(),
    analysis: pcapAnalysis(),
    decodeError: null,
    integrity: verifiedIntegrity(),
    manifest: manifestFacts(),
    carveMode: 'off',
    ...overrides,
  };
}

describe('conversation rows', () => {
  it('carries the file columns and every conversation column, totals both ways', () => {
    const [row] = [...conversationRows(ctx, [conversation()])];
    expect(row).toEqual({
      ...ctx,
      protocol: 'tcp',
      a_addr: '10.20.0.5',
      a_port: 51000,
      b_addr: '203.0.113.80',
      b_port: 443,
      packets_a_to_b: 6,
      bytes_a_to_b: 420,
      packets_b_to_a: 4,
      bytes_b_to_a: 1300,
      packets: 10,
      bytes: 1720,
      start_ts: 1795423200.25,
      end_ts: 1795423201.75,
      duration_seconds: 1.5,
      tcp_flags: ['SYN', 'ACK', 'FIN'],
      community_id: '1:LQU9qZlK+B5F3KDmev6m5PMibrg=',
      stream_index: 0,
      port_zero: false,
    });
  });

  it('gives non-TCP conversations a null stream index and flags TCP/UDP port 0 only', () => {
    const { streamIndex: _none, ...udp } = conversation({
      protocol: 'udp',
      a: { addr: '203.0.113.9', port: 0 },
      b: { addr: '10.20.0.5', port: 53 },
      tcpFlags: [],
    });
    const icmp = conversation({
      protocol: 'icmp',
      a: { addr: '10.20.0.5', port: 0 },
      b: { addr: '10.20.0.1', port: 0 },
      tcpFlags: [],
    });
    const rows = [...conversationRows(ctx, [udp, icmp])];
    expect(rows[0]).toMatchObject({ stream_index: null, port_zero: true });
    expect(rows[1]).toMatchObject({ port_zero: false });
  });

  it('never reports a negative duration', () => {
    const [row] = [...conversationRows(ctx, [conversation({ start: 10, end: 9 })])];
    expect(row?.duration_seconds).toBe(0);
  });
});

describe('dns, tls, http and port-0 rows', () => {
  it('gives a DNS query null rcode and no answers, and keeps a response as decoded', () => {
    const query = dnsRecord();
    const response = dnsRecord({ isResponse: true, rcode: 'NOERROR', answers: ['192.0.2.1'] });
    const rows = [...dnsRows(ctx, [query, response])];
    expect(rows[0]).toEqual({
      ...ctx,
      ts: 1795423200.5,
      src: '10.20.0.5',
      dst: '10.20.0.2',
      transport: 'udp',
      dns_id: 4660,
      is_response: false,
      qname: 'example.com',
      qtype: 'A',
      rcode: null,
      answers: [],
    });
    expect(rows[1]).toMatchObject({ is_response: true, rcode: 'NOERROR', answers: ['192.0.2.1'] });
  });

  it('maps TLS and HTTP records column for column', () => {
    // a row is the file columns and the record's own fields under the same names (HTTP's
    // userAgent becomes user_agent)
    const tls = tlsRecord();
    const http = httpRecord();
    const portZero = portZeroPacket();
    const { userAgent, ...httpColumns } = http;
    expect([...tlsRows(ctx, [tls])]).toEqual([{ ...ctx, ...tls }]);
    expect([...httpRows(ctx, [http])]).toEqual([{ ...ctx, ...httpColumns, user_agent: userAgent }]);
    expect([...portZeroRows(ctx, [portZero])]).toEqual([{ ...ctx, ...portZero }]);
    // the factories give each field a distinct value, so a swapped column cannot pass
    for (const record of [tls, http, portZero]) {
      expect(new Set(Object.values(record).map(String)).size).toBe(Object.keys(record).length);
    }
  });
});

describe('summary row', () => {
  it('counts conversations the decoder streamed (its list is empty then)', () => {
    const analysis = pcapAnalysis({ conversations: [], conversationCount: 250_000 });
    expect(summaryRow(summaryInput({ analysis })).conversations).toBe(250_000);
  });

  it('describes a decoded file: counts, protocols by packets, integrity, manifest, host times', () => {
    const analysis = pcapAnalysis({
      protocols: { eth: 10, ipv4: 10, tcp: 7, udp: 3 },
      dns: [dnsRecord()],
      tls: [tlsRecord(), tlsRecord({ sni: 'other.example' })],
      http: [httpRecord()],
      anomalies: { 'truncated-record': 1, 'bad-dns': 2 },
      dropped: { dns: 4, tls: 0, http: 0, portZero: 0, conversations: 0 },
    });
    const row = summaryRow(summaryInput({ analysis }));
    expect(row).toMatchObject({
      ...ctx,
      source_bucket: 'evidence',
      source_size: 1744,
      source_last_modified: '2026-11-23T08:45:00.000Z',
      host_time_start: 1795423200.25,
      host_time_end: 1795423500,
      lookback: false,
      decode_status: 'ok',
      decode_error: null,
      format: 'pcap',
      packets: 10,
      bytes: 1720,
      duration_seconds: 1.5,
      conversations: 1,
      tcp_streams: 1,
      dns_records: 1,
      tls_records: 2,
      http_records: 1,
      records_dropped: { conversations: 0, dns: 4, tls: 0, http: 0, port_zero: 0 },
      anomalies: [
        { kind: 'bad-dns', count: 2 },
        { kind: 'truncated-record', count: 1 },
      ],
      anomaly_total: 3,
      integrity_verdict: 'verified',
      manifest_status: 'read',
      kernel_drops: 0,
      host_packets_captured: 10,
      carve: { mode: 'off', streams: 0, pieces: 0, packets: 0, bytes: 0 },
    });
    expect(row.protocols).toEqual([
      { name: 'eth', packets: 10 },
      { name: 'ipv4', packets: 10 },
      { name: 'tcp', packets: 7 },
      { name: 'udp', packets: 3 },
    ]);
  });

  it('counts port-0 packets kept and dropped, and samples at most PORT_ZERO_SAMPLE', () => {
    const portZero = Array.from({ length: PORT_ZERO_SAMPLE + 5 }, (_, i) =>
      portZeroPacket({ sport: 40000 + i }),
    );
    const analysis = pcapAnalysis({
      portZero,
      dropped: { dns: 0, tls: 0, http: 0, portZero: 7, conversations: 0 },
    });
    const row = summaryRow(summaryInput({ analysis }));
    expect(row.port_zero_packets).toBe(PORT_ZERO_SAMPLE + 5 + 7);
    expect(row.port_zero_sample).toHaveLength(PORT_ZERO_SAMPLE);
    expect((row.port_zero_sample as unknown[])[0]).not.toHaveProperty('capture_id');
  });

  it('marks a capture cut short as truncated', () => {
    const row = summaryRow(summaryInput({ analysis: pcapAnalysis({ truncated: true }) }));
    expect(row).toMatchObject({ decode_status: 'truncated', truncated: true });
  });

  it('records an unreadable file with its error and zero counts, never a missing column', () => {
    const decoded = summaryRow(summaryInput());
    const unreadable = summaryRow(
      summaryInput({
        analysis: null,
        decodeError: { code: 'PCAP_CORRUPT', message: 'unknown magic 0x00000000' },
      }),
    );
    expect(Object.keys(unreadable).sort()).toEqual(Object.keys(decoded).sort());
    expect(unreadable).toMatchObject({
      decode_status: 'unreadable',
      decode_error: 'PCAP_CORRUPT: unknown magic 0x00000000',
      format: null,
      packets: 0,
      conversations: 0,
      first_ts: null,
      duration_seconds: null,
      port_zero_packets: 0,
      anomaly_total: 0,
    });
  });

  it('reads only well-formed host times and lookback flags from the metadata', () => {
    const source = sourceInfo({
      metadata: { 'time-start': '1e9', 'time-end': ' 1795423500.5 ', lookback: 'yes' },
    });
    expect(summaryRow(summaryInput({ source }))).toMatchObject({
      host_time_start: null,
      host_time_end: 1795423500.5,
      lookback: null,
    });
  });

  it('is the same for the same input (a retry writes the same bytes)', () => {
    expect(JSON.stringify(summaryRow(summaryInput()))).toBe(
      JSON.stringify(summaryRow(summaryInput())),
    );
  });
});
