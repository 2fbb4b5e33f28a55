/**
 * Factories for the domain objects the processing job consumes: complete objects with
 * plausible values, so tests state only what they are about (`overrides`) and the production
 * code never needs fallbacks for partial ones.
 */
import type {
  Conversation,
  DnsRecord,
  HttpRecord,
  PcapAnalysis,
  PortZeroPacket,
  TlsRecord,
} from '../../shared/pcap/index.ts';
import type { IntegrityResult } from '../../shared/processing/integrity.ts';
import type { ManifestFacts } from '../../shared/processing/manifest.ts';
import type { FileColumns } from '../../shared/processing/rows.ts';
import type { SourceObjectInfo } from '../../shared/processing/source.ts';

export const CAPTURE = 'cap-20261123T084000Z-1a2b3c4d';
export const INSTANCE = 'i-0a1b2c3d4e5f60718';
export const SHA256 = 'a'.repeat(64);

export function fileColumns(overrides: Partial<FileColumns> = {}): FileColumns {
  return {
    capture_id: CAPTURE,
    instance_id: INSTANCE,
    file: 'eth0-0001.pcap',
    version_id: 'v-1',
    ...overrides,
  };
}

export function conversation(overrides: Partial<Conversation> = {}): Conversation {
  return {
    protocol: 'tcp',
    a: { addr: '10.20.0.5', port: 51000 },
    b: { addr: '203.0.113.80', port: 443 },
    packetsAtoB: 6,
    bytesAtoB: 420,
    packetsBtoA: 4,
    bytesBtoA: 1300,
    start: 1795423200.25,
    end: 1795423201.75,
    tcpFlags: ['SYN', 'ACK', 'FIN'],
    communityId: '1:LQU9qZlK+B5F3KDmev6m5PMibrg=',
    streamIndex: 0,
    ...overrides,
  };
}

export function dnsRecord(overrides: Partial<DnsRecord> = {}): DnsRecord {
  return {
    ts: 1795423200.5,
    src: '10.20.0.5',
    dst: '10.20.0.2',
    id: 4660,
    qname: 'example.com',
    qtype: 'A',
    isResponse: false,
    transport: 'udp',
    ...overrides,
  };
}

export function tlsRecord(overrides: Partial<TlsRecord> = {}): TlsRecord {
  return {
    ts: 1795423200.6,
    src: '10.20.0.5',
    dst: '203.0.113.80',
    sport: 51000,
    dport: 443,
    sni: 'example.com',
    version: 'TLS 1.3',
    alpn: ['h2', 'http/1.1'],
    ...overrides,
  };
}

export function httpRecord(overrides: Partial<HttpRecord> = {}): HttpRecord {
  return {
    ts: 1795423200.7,
    src: '10.20.0.5',
    dst: '203.0.113.81',
    sport: 51001,
    dport: 80,
    method: 'GET',
    host: 'example.com',
    path: '/index.html',
    userAgent: 'curl/8.5.0',
    ...overrides,
  };
}

export function portZeroPacket(overrides: Partial<PortZeroPacket> = {}): PortZeroPacket {
  return {
    ts: 1795423200.8,
    src: '10.20.0.5',
    dst: '198.51.100.7',
    sport: 40000,
    dport: 0,
    protocol: 'tcp',
    length: 54,
    ...overrides,
  };
}

/** A finished analysis whose conversations were streamed (`conversations` [], as the job
 *  gets it from analyzePcap with `onConversations`). */
export function pcapAnalysis(overrides: Partial<PcapAnalysis> = {}): PcapAnalysis {
  return {
    format: 'pcap',
    linkTypes: [1],
    packets: 10,
    bytes: 1720,
    firstTs: 1795423200.25,
    lastTs: 1795423201.75,
    protocols: { eth: 10, ipv4: 10, tcp: 10 },
    topTalkers: [
      { addr: '10.20.0.5', packets: 10, bytes: 1720 },
      { addr: '203.0.113.80', packets: 10, bytes: 1720 },
    ],
    conversations: [],
    conversationCount: 1,
    dns: [],
    tls: [],
    http: [],
    portZero: [],
    dropped: { dns: 0, tls: 0, http: 0, portZero: 0, conversations: 0 },
    anomalies: {},
    anomalySamples: [],
    truncated: false,
    streams: 1,
    ...overrides,
  };
}

export function sourceInfo(overrides: Partial<SourceObjectInfo> = {}): SourceObjectInfo {
  return {
    bucket: 'evidence',
    key: `pcaps/${CAPTURE}/${INSTANCE}/eth0-0001.pcap`,
    versionId: 'v-1',
    size: 1744,
    lastModified: new Date('2026-11-23T08:45:00Z'),
    etag: '"0123456789abcdef0123456789abcdef"',
    metadata: {
      sha256: SHA256,
      'capture-id': CAPTURE,
      'instance-id': INSTANCE,
      'time-start': '1795423200.25',
      'time-end': '1795423500',
      lookback: 'false',
    },
    checksumSha256: Buffer.from(SHA256, 'hex').toString('base64'),
    checksumType: 'FULL_OBJECT',
    parts: null,
    partPlan: null,
    ...overrides,
  };
}

export function verifiedIntegrity(overrides: Partial<IntegrityResult> = {}): IntegrityResult {
  return {
    verdict: 'verified',
    sha256: SHA256,
    bytesRead: 1744,
    host: { status: 'match', expected: SHA256 },
    s3: {
      status: 'match',
      expected: Buffer.from(SHA256, 'hex').toString('base64'),
      kind: 'FULL_OBJECT',
      parts: null,
    },
    manifest: { status: 'match', expected: SHA256 },
    problems: [],
    ...overrides,
  };
}

export function manifestFacts(overrides: Partial<ManifestFacts> = {}): ManifestFacts {
  return {
    status: 'read',
    packetsDroppedByKernel: 0,
    packetsCaptured: 10,
    file: { sha256: SHA256 },
    hostStatus: 'success',
    hostCommandSeen: true,
    request: undefined,
    finding: undefined,
    ...overrides,
  };
}
