/**
 * Tapline's streaming pcap/pcapng decoder. Entry point: `analyzePcap(source, options)`.
 * See docs/pcap.md and ./types.ts for the result shape.
 */
export { analyzePcap, PcapAnalyzer } from './analyze.ts';
export { boundedConcurrencySink, directoryCarveSink, PCAP_HEADER_BYTES } from './carve-sinks.ts';
export { communityId } from './community-id.ts';
export { readFileChunks } from './file-source.ts';
export type * from './types.ts';
