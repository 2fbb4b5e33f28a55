/**
 * Tapline's streaming pcap/pcapng decoder. Entry point: `analyzePcap(source, options)`.
 * See docs/pcap.md and ./types.ts for the result shape.
 */
import type { AnalyzeOptions, PcapAnalysis } from './types.ts';

export { boundedConcurrencySink, directoryCarveSink, PCAP_HEADER_BYTES } from './carve-sinks.ts';

export type * from './types.ts';

/**
 * Read a pcap, pcapng or gzip-compressed pcap/pcapng from chunks of any size and summarise it.
 * Recoverable damage becomes counted anomalies; only `CorruptPcapError` (not a capture at all,
 * e.g. bad magic) or errors thrown by the source or the carve sink escape.
 */
export async function analyzePcap(
  source: AsyncIterable<Uint8Array>,
  options: AnalyzeOptions = {},
): Promise<PcapAnalysis> {
  void source;
  void options;
  throw new Error('analyzePcap: not implemented yet');
}
