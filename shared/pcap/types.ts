/**
 * The public shape of Tapline's pcap decoder (shared/pcap). Everything the processing job,
 * the CLI and the tests consume is declared here; the implementation lives next to it.
 *
 * Conventions:
 * - Timestamps are epoch seconds with a fraction (`number`), `null` when there were no packets.
 * - Byte counts are ORIGINAL frame lengths (the pcap `orig_len` / pcapng "original packet
 *   length"), the way tshark's conversation statistics count them, not captured lengths.
 * - Addresses are strings: dotted IPv4, RFC 5952 compressed IPv6.
 */

/** What container the bytes were in. `-gzip` when the stream was gzip-compressed (1f 8b). */
export type PcapFormat = 'pcap' | 'pcap-gzip' | 'pcapng' | 'pcapng-gzip';

export interface Endpoint {
  addr: string;
  /** TCP/UDP port; 0 for protocols without ports (ICMP, others). */
  port: number;
}

/**
 * One bidirectional conversation. TCP/UDP are keyed by 5-tuple (TCP additionally split when a
 * port pair is reused by a new SYN after the previous connection closed, as tshark's
 * tcp.stream does); other protocols by address pair and protocol (ports 0).
 * A is the side that sent the first packet seen (as tshark's conversation table does).
 */
export interface Conversation {
  protocol: 'tcp' | 'udp' | 'icmp' | 'icmpv6' | string;
  a: Endpoint;
  b: Endpoint;
  packetsAtoB: number;
  bytesAtoB: number;
  packetsBtoA: number;
  bytesBtoA: number;
  /** First and last packet timestamps, epoch seconds. */
  start: number;
  end: number;
  /** TCP flags seen in either direction, e.g. ['SYN', 'ACK', 'FIN']; [] for non-TCP. */
  tcpFlags: string[];
  /** Community ID v1 (seed 0), e.g. '1:LQU9qZlK+B5F3KDmev6m5PMibrg='. */
  communityId: string;
  /** TCP only: 0-based stream number in order of first appearance (like tshark tcp.stream). */
  streamIndex?: number;
}

export interface DnsRecord {
  ts: number;
  src: string;
  dst: string;
  /** DNS transaction id. */
  id: number;
  /** First question's name, lower-cased as received is NOT applied (kept as on the wire). */
  qname: string;
  /** Query type mnemonic ('A', 'AAAA', …) or 'TYPE<n>'. */
  qtype: string;
  /** Response code mnemonic ('NOERROR', 'NXDOMAIN', …), responses only. */
  rcode?: string;
  /** Responses only: answer data rendered as text (addresses, names), at most 32. */
  answers?: string[];
  isResponse: boolean;
  transport: 'udp' | 'tcp';
}

export interface TlsRecord {
  ts: number;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  /** server_name extension (host_name), '' when absent. */
  sni: string;
  /** Highest offered version: 'TLS 1.3' when supported_versions offers it, else the
   *  ClientHello legacy version ('TLS 1.2', 'TLS 1.0', 'SSL 3.0', or '0x….'). */
  version: string;
  alpn: string[];
}

export interface HttpRecord {
  ts: number;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  method: string;
  host: string;
  path: string;
  userAgent: string;
}

/** A TCP or UDP packet with source or destination port 0 (ICMP etc. carry no ports). */
export interface PortZeroPacket {
  ts: number;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  protocol: 'tcp' | 'udp';
  /** Original frame length. */
  length: number;
}

/**
 * Typed anomaly kinds. Counted in `PcapAnalysis.anomalies` (kind → count); the first few of
 * each kind are kept in `anomalySamples`. Names are stable (they are Athena columns' values).
 */
export type AnomalyKind =
  | 'caplen-exceeds-snaplen'
  | 'caplen-exceeds-max'
  | 'caplen-exceeds-origlen'
  | 'truncated-record'
  | 'truncated-block'
  | 'bad-block-length'
  | 'bad-block-trailer'
  | 'unknown-block'
  | 'block-before-shb'
  | 'unknown-interface'
  | 'timestamp-usec-overflow'
  | 'unknown-link-type'
  | 'unsupported-link-type'
  | 'truncated-link-header'
  | 'vlan-depth-exceeded'
  | 'bad-ip-version'
  | 'bad-ipv4-header-length'
  | 'bad-ipv4-total-length'
  | 'bad-ipv6-payload-length'
  | 'truncated-ip-header'
  | 'truncated-ipv6-extension'
  | 'ipv4-fragment'
  | 'ipv6-fragment'
  | 'truncated-l4-header'
  | 'bad-tcp-header-length'
  | 'bad-udp-length'
  | 'tunnel-depth-exceeded'
  | 'bad-dns'
  | 'bad-tls-client-hello'
  | 'gzip-corrupt'
  | 'trailing-garbage'
  | 'conversation-limit'
  | 'carve-link-type-mismatch'
  | (string & {});

export interface AnomalySample {
  kind: AnomalyKind;
  /** 0-based index of the packet record (or block) the anomaly was found in. */
  packetIndex: number;
  /** Byte offset in the (decompressed) capture stream of that record/block. */
  offset: number;
  detail: string;
}

export interface TopTalker {
  addr: string;
  /** Packets and original bytes sent or received by this address. */
  packets: number;
  bytes: number;
}

export interface RecordsDropped {
  dns: number;
  tls: number;
  http: number;
  portZero: number;
  conversations: number;
}

export interface PcapAnalysis {
  format: PcapFormat;
  /** Distinct link types seen (pcap: the header's; pcapng: every IDB's), in order. */
  linkTypes: number[];
  /** Packet records read (including those that could not be decoded). */
  packets: number;
  /** Sum of original lengths. */
  bytes: number;
  firstTs: number | null;
  lastTs: number | null;
  /** Packet counts per protocol layer seen: 'eth', 'vlan', 'ipv4', 'ipv6', 'tcp', 'udp',
   *  'icmp', 'icmpv6', 'arp', 'vxlan', 'geneve', 'dns', 'tls', 'http', 'other-ip',
   *  'other-link', 'ip-fragment'… (a packet counts once per layer it contains). */
  protocols: Record<string, number>;
  /** Top 20 addresses by bytes. */
  topTalkers: TopTalker[];
  /** Every conversation, unless `AnalyzeOptions.onConversations` took them (then []). */
  conversations: Conversation[];
  /** How many conversations there were (whether listed here or streamed). */
  conversationCount: number;
  dns: DnsRecord[];
  tls: TlsRecord[];
  http: HttpRecord[];
  portZero: PortZeroPacket[];
  /** Records not kept because a list reached its limit (still counted in packets/protocols). */
  dropped: RecordsDropped;
  anomalies: Record<string, number>;
  anomalySamples: AnomalySample[];
  /** True when the capture ended inside a record/block (cut short) or the gzip stream broke. */
  truncated: boolean;
  /** Number of TCP streams seen (tcp.stream count). */
  streams: number;
  /** Carving counters; absent when carving was off. */
  carve?: CarveStats;
}

/** Identifies a carved TCP stream; given to the `streams` filter and to the sink. */
export interface StreamInfo {
  /** tcp.stream-style index (0-based). */
  index: number;
  /** A = the side that sent the stream's first packet. */
  a: Endpoint;
  b: Endpoint;
  communityId: string;
  /** First packet's timestamp, epoch seconds. */
  start: number;
}

/**
 * One piece of a carved stream. `pcap` is ALWAYS a complete, standalone classic pcap file
 * (24-byte global header + records, nanosecond magic, the stream's link type), so each piece
 * can be stored as its own object. Most streams arrive as a single piece (`part` 0,
 * `final` true). A stream whose buffered bytes exceed `partBytes`, or that is evicted under
 * the global memory budget, arrives as several pieces `part` 0, 1, 2… in order, the last with
 * `final` true; to rebuild one file, concatenate part 0 with parts ≥ 1 minus their first 24
 * bytes (`PCAP_HEADER_BYTES`).
 */
export interface CarveChunk {
  stream: StreamInfo;
  /** Suggested file name: `tcp-stream-<index, 6+ digits>.pcap`, or with `.part-<n>` before
   *  `.pcap` when the stream came in several parts (parts ≥ 1 only; part 0 keeps the plain name
   *  only if it is also final). */
  fileName: string;
  part: number;
  final: boolean;
  /** Packets in this piece. */
  packets: number;
  pcap: Uint8Array;
}

/**
 * Where carved streams go. The analyzer calls `write` for each piece and AWAITS the returned
 * promise before reading further input: a sink that wants N uploads in flight resolves as soon
 * as fewer than N are pending (see `boundedConcurrencySink`), and finishes them in `close`.
 * The analyzer calls `close` once at the end (also after an error in the input). Memory held
 * by the analyzer for carving is bounded by `maxBufferedBytes` whatever the stream count
 * (`boundedConcurrencySink` also bounds the bytes of pieces its uploads hold, 16 MiB).
 * The `pcap` buffer is owned by the sink after the call (the analyzer does not reuse it).
 */
export interface CarveSink {
  write(chunk: CarveChunk): Promise<void> | void;
  close?(): Promise<void> | void;
}

export interface CarveOptions {
  /** 'off': nothing carved; 'all': every TCP stream; 'streams': those `streams` accepts. */
  mode: 'off' | 'all' | 'streams';
  /** Evaluated once per stream, at its first packet. Required for mode 'streams'. */
  streams?: (stream: StreamInfo) => boolean;
  sink: CarveSink;
  /** Size of the arena that holds carved records not yet handed to the sink (min 1 MiB);
   *  when it is full the least recently active streams are flushed (closed ones first, open
   *  ones as parts). Default 16 MiB, whatever the number of streams. */
  maxBufferedBytes?: number;
  /** A single stream is flushed as a part once it holds this many bytes. Default 4 MiB (at
   *  most a quarter of `maxBufferedBytes`). */
  partBytes?: number;
}

export interface CarveStats {
  streamsCarved: number;
  piecesWritten: number;
  packetsWritten: number;
  bytesWritten: number;
}

export interface AnalyzeLimits {
  /** Conversations tracked (beyond: counted in `dropped.conversations`, anomaly
   *  'conversation-limit'). Default 250,000. */
  maxConversations?: number;
  /** Per list (dns, tls, http, portZero). Default 10,000. */
  maxRecords?: number;
  /** Anomaly samples kept per kind. Default 5. */
  maxAnomalySamplesPerKind?: number;
  /** Top talkers reported. Default 20. */
  topTalkers?: number;
}

export interface AnalyzeOptions {
  carve?: CarveOptions;
  /**
   * Stream conversations instead of returning them: called at the end of the capture with
   * batches of up to 1,000 (in stream order), each awaited; `PcapAnalysis.conversations` is
   * then []. Keeps memory flat for captures with 100,000s of flows (write them to a gzip
   * JSONL stream as they come). `summary` is the finished analysis (all other fields final,
   * `conversations` []), the same object `analyzePcap` then resolves with.
   */
  onConversations?(batch: Conversation[], summary: PcapAnalysis): void | Promise<void>;
  /**
   * Like `onConversations` (and instead of it), but each batch comes as text: up to 1,000
   * conversations as the compact JSON objects of `tapline summarize --json`, separated by
   * commas; `count` says how many. Built straight from the decoder's table (no object per
   * conversation), for writers that only print them.
   */
  onConversationsJson?(json: string, count: number, summary: PcapAnalysis): void | Promise<void>;
  limits?: AnalyzeLimits;
  /** Called now and then (about every 4 MiB and at the end) with the bytes read from
   *  `source` so far (compressed bytes for a gzip input, so it compares to the file size). */
  onProgress?(bytesRead: number): void;
}
