import { BlockList, isIP } from 'node:net';
import { z } from 'zod';
import type { CarveChunk, CarveOptions, StreamInfo } from '../pcap/index.ts';
import { boundedConcurrencySink } from '../pcap/index.ts';
import { putResultBytes, type ResultStore, type WriteOutcome } from './result-store.ts';

/**
 * Per-TCP-stream carving into S3: every piece the decoder hands over becomes its own pcap
 * object under the file's `streams/` prefix, at most CARVE_CONCURRENCY uploads in flight
 * (the decoder waits for a free slot, so memory stays bounded).
 *
 * CARVE_MODE: `off`; `all` (every TCP stream); `findings` (streams with port 0 on either side,
 * and, when the capture was started for a finding, streams touching the finding's hosts/ports
 * as recorded in the capture request's structured filter).
 */

export const CARVE_CONCURRENCY = 8;
export type CarveMode = 'off' | 'all' | 'findings';

const SAFE_NAME = /^[A-Za-z0-9._-]{1,200}$/;

export interface CarveTally {
  created: number;
  existing: number;
  replaced: number;
}

const indicatorSchema = z
  .object({
    source: z.string().optional(),
    finding: z.unknown().optional(),
    filter: z
      .object({
        kind: z.literal('structured'),
        hosts: z.array(z.string()).max(64).default([]),
        ports: z.array(z.number().int().min(0).max(65535)).max(64).default([]),
      })
      .loose()
      .optional(),
  })
  .loose();

/** The finding's indicators from the recorded capture request (or none). */
export interface Indicators {
  hosts: BlockList | null;
  ports: Set<number>;
}

export function indicatorsFromRequest(request: unknown): Indicators {
  const parsed = indicatorSchema.safeParse(request);
  if (!parsed.success) return { hosts: null, ports: new Set() };
  const fromFinding = parsed.data.finding !== undefined || parsed.data.source === 'detector';
  const filter = parsed.data.filter;
  if (!fromFinding || !filter) return { hosts: null, ports: new Set() };
  let hosts: BlockList | null = null;
  for (const entry of filter.hosts) {
    const [addr, bits] = entry.split('/');
    const family = addr ? isIP(addr) : 0;
    if (!addr || family === 0) continue;
    const prefix = bits === undefined ? (family === 4 ? 32 : 128) : Number(bits);
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)) continue;
    hosts ??= new BlockList();
    hosts.addSubnet(addr, prefix, family === 4 ? 'ipv4' : 'ipv6');
  }
  return { hosts, ports: new Set(filter.ports) };
}

/** The per-stream predicate for CARVE_MODE=findings (called once per stream, at its start). */
export function findingsPredicate(indicators: Indicators): (stream: StreamInfo) => boolean {
  const hasIndicators = indicators.hosts !== null || indicators.ports.size > 0;
  const inHosts = (addr: string) => {
    if (!indicators.hosts) return true;
    const family = isIP(addr);
    return family !== 0 && indicators.hosts.check(addr, family === 4 ? 'ipv4' : 'ipv6');
  };
  const inPorts = (port: number) => indicators.ports.size === 0 || indicators.ports.has(port);
  return (s) => {
    if (s.a.port === 0 || s.b.port === 0) return true;
    if (!hasIndicators) return false;
    return (inHosts(s.a.addr) || inHosts(s.b.addr)) && (inPorts(s.a.port) || inPorts(s.b.port));
  };
}

/** Object name for a piece: the decoder's suggestion when it is a plain file name. */
export function pieceName(chunk: CarveChunk): string {
  if (SAFE_NAME.test(chunk.fileName) && chunk.fileName !== '.' && chunk.fileName !== '..') {
    return chunk.fileName;
  }
  const index = String(chunk.stream.index).padStart(6, '0');
  return chunk.part === 0 && chunk.final
    ? `tcp-stream-${index}.pcap`
    : `tcp-stream-${index}.part-${chunk.part}.pcap`;
}

/** Decoder carve options for a mode, uploading into `prefix`; null when carving is off. */
export function s3CarveOptions(
  mode: CarveMode,
  store: ResultStore,
  prefix: string,
  request: unknown,
  tally: CarveTally,
): CarveOptions | null {
  if (mode === 'off') return null;
  const sink = boundedConcurrencySink(async (chunk) => {
    const written = await putResultBytes(
      store,
      `${prefix}${pieceName(chunk)}`,
      chunk.pcap,
      'application/vnd.tcpdump.pcap',
    );
    tally[written.outcome satisfies WriteOutcome] += 1;
  }, CARVE_CONCURRENCY);
  if (mode === 'all') return { mode: 'all', sink };
  return { mode: 'streams', streams: findingsPredicate(indicatorsFromRequest(request)), sink };
}
