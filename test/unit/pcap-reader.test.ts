import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { CorruptPcapError } from '../../shared/errors.ts';
import { analyzePcap } from '../../shared/pcap/index.ts';
import {
  ACK,
  ascii,
  block,
  chunks,
  concat,
  epb,
  idb,
  opb,
  pcap,
  SYN,
  shb,
  spb,
  tcp4,
  udp4,
} from './pcap-frames.ts';

const frameA = tcp4('10.0.0.1', '10.0.0.2', 40000, 80, SYN);
const frameB = tcp4('10.0.0.2', '10.0.0.1', 80, 40000, SYN | ACK);

describe('classic pcap container', () => {
  it.each([
    ['µs little-endian', { nano: false, be: false }],
    ['µs big-endian', { nano: false, be: true }],
    ['ns little-endian', { nano: true, be: false }],
    ['ns big-endian', { nano: true, be: true }],
  ])('%s: packets, original bytes and timestamps', async (_name, o) => {
    const file = pcap(
      [
        { data: frameA, ts: 1_700_000_000.25 },
        { data: frameB, ts: 1_700_000_001.5, origlen: 1500 },
      ],
      o,
    );
    const r = await analyzePcap(chunks(file, 5));
    expect(r.format).toBe('pcap');
    expect(r.linkTypes).toEqual([1]);
    expect(r.packets).toBe(2);
    expect(r.bytes).toBe(frameA.length + 1500);
    expect(r.firstTs).toBeCloseTo(1_700_000_000.25, 6);
    expect(r.lastTs).toBeCloseTo(1_700_000_001.5, 6);
    expect(r.anomalies).toEqual({});
    expect(r.conversations).toHaveLength(1);
  });

  it('gzip-compressed pcap is inflated in the stream', async () => {
    const file = gzipSync(pcap([{ data: frameA }, { data: frameB }]));
    const r = await analyzePcap(chunks(file, 3));
    expect(r.format).toBe('pcap-gzip');
    expect(r.packets).toBe(2);
  });

  it('a gzip stream that breaks midway keeps what was read and says so', async () => {
    const whole = gzipSync(pcap(Array.from({ length: 200 }, () => ({ data: frameA }))));
    const broken = concat(whole.subarray(0, whole.length - 40), new Uint8Array(40).fill(0x55));
    const r = await analyzePcap(chunks(broken, 64));
    expect(r.anomalies['gzip-corrupt']).toBe(1);
    expect(r.truncated).toBe(true);
    expect(r.packets).toBeGreaterThan(0);
  });

  it('bad magic, empty input, a cut header and gzip of garbage are CorruptPcapError', async () => {
    await expect(
      analyzePcap(chunks(ascii('hello, this is not a pcap at all'))),
    ).rejects.toBeInstanceOf(CorruptPcapError);
    await expect(analyzePcap(chunks(new Uint8Array(0)))).rejects.toBeInstanceOf(CorruptPcapError);
    await expect(analyzePcap(chunks(pcap([]).subarray(0, 10)))).rejects.toBeInstanceOf(
      CorruptPcapError,
    );
    await expect(analyzePcap(chunks(gzipSync(ascii('garbage garbage'))))).rejects.toBeInstanceOf(
      CorruptPcapError,
    );
    await expect(
      analyzePcap(chunks(Uint8Array.of(0x1f, 0x8b, 8, 0, 1, 2, 3))),
    ).rejects.toBeInstanceOf(CorruptPcapError);
  });

  it('caplen above 262144 is an anomaly and the reader resynchronises on the next record', async () => {
    const file = pcap([
      { data: frameA },
      { data: frameB, caplen: 0x7fffffff },
      { data: frameA },
      { data: frameB },
    ]);
    const r = await analyzePcap(chunks(file, 7));
    expect(r.anomalies['caplen-exceeds-max']).toBe(1);
    expect(r.anomalies['record-length-repaired']).toBe(1);
    expect(r.packets).toBe(4);
  });

  it('caplen above the snaplen and above the original length are anomalies, still decoded', async () => {
    const file = pcap([{ data: frameA, origlen: 20 }], { snaplen: 40 });
    const r = await analyzePcap(chunks(file));
    expect(r.anomalies).toMatchObject({ 'caplen-exceeds-snaplen': 1, 'caplen-exceeds-origlen': 1 });
    expect(r.packets).toBe(1);
  });

  it('a record cut short at the end is a truncated-record anomaly', async () => {
    const file = pcap([{ data: frameA }, { data: frameB }]);
    const r = await analyzePcap(chunks(file.subarray(0, file.length - 5), 11));
    expect(r.packets).toBe(1);
    expect(r.truncated).toBe(true);
    expect(r.anomalies['truncated-record']).toBe(1);
  });
});

describe('pcapng container', () => {
  it('several IDBs with different link types and timestamp resolutions; EPB, SPB and OPB', async () => {
    const raw = frameA.subarray(14); // IPv4 without Ethernet
    const file = concat(
      shb(),
      idb(1), // µs default
      idb(101, 9), // ns
      idb(1, 0x80 | 20), // 2^-20 s
      epb(0, 1_700_000_000_000_000n + 250_000n, frameA),
      epb(1, 1_700_000_001_000_000_000n + 5n, raw),
      epb(2, 1_700_000_002n * 1048576n + 524288n, frameB),
      spb(frameB),
      opb(0, 1_700_000_003_000_000n, frameA),
      block(0x00000bad, ascii('custom block, skipped')),
      block(0x12345678, ascii('unknown block')),
    );
    const r = await analyzePcap(chunks(file, 13));
    expect(r.format).toBe('pcapng');
    expect(r.linkTypes).toEqual([1, 101]);
    expect(r.packets).toBe(5);
    expect(r.firstTs).toBeCloseTo(1_700_000_000.25, 6);
    expect(r.lastTs).toBeCloseTo(1_700_000_003, 6);
    expect(r.anomalies).toEqual({ 'unknown-block': 1 });
    expect(r.protocols.tcp).toBe(5);
  });

  it('sections of either byte order in one file', async () => {
    const file = concat(
      shb(false),
      idb(1),
      epb(0, 1n, frameA),
      shb(true),
      idb(1, undefined, true),
      epb(0, 2n, frameB, true),
    );
    const r = await analyzePcap(chunks(file, 9));
    expect(r.packets).toBe(2);
    expect(r.anomalies).toEqual({});
  });

  it('a packet on an undescribed interface and a block with a bad trailer are anomalies, not errors', async () => {
    const bad = epb(0, 3n, frameA);
    bad[bad.length - 1] = 0x7f; // trailer length no longer matches
    const file = concat(shb(), idb(1), epb(5, 1n, frameA), bad, epb(0, 4n, frameB));
    const r = await analyzePcap(chunks(file, 4));
    expect(r.anomalies['unknown-interface']).toBe(1);
    expect(r.anomalies['bad-block-trailer']).toBe(1);
    expect(r.anomalies.resync).toBe(1);
    expect(r.packets).toBe(2);
  });

  it('an unused block far larger than any buffer is skipped without buffering it', async () => {
    const big = block(4, new Uint8Array(3 * 1024 * 1024)); // NRB of 3 MiB
    const file = concat(
      shb(),
      idb(1),
      big,
      epb(0, 1n, udp4('10.0.0.1', '10.0.0.2', 1, 2, ascii('x'))),
    );
    const r = await analyzePcap(chunks(file, 4096));
    expect(r.packets).toBe(1);
    expect(r.anomalies).toEqual({});
  });

  it('a pcapng cut mid-block is truncated-block; gzip pcapng is pcapng-gzip', async () => {
    const file = concat(shb(), idb(1), epb(0, 1n, frameA), epb(0, 2n, frameB));
    const cut = await analyzePcap(chunks(file.subarray(0, file.length - 9)));
    expect(cut.anomalies['truncated-block']).toBe(1);
    expect(cut.truncated).toBe(true);
    expect(cut.packets).toBe(1);
    const gz = await analyzePcap(chunks(gzipSync(file), 10));
    expect(gz.format).toBe('pcapng-gzip');
    expect(gz.packets).toBe(2);
  });
});
