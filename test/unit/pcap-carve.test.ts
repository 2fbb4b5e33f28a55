import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  analyzePcap,
  boundedConcurrencySink,
  type CarveChunk,
  directoryCarveSink,
  PCAP_HEADER_BYTES,
} from '../../shared/pcap/index.ts';
import { ACK, chunks, FIN, PSH, pcap, SYN, tcp4, udp4 } from './pcap-frames.ts';

/** n interleaved TCP streams of `per` data packets each, closed with FINs. */
function capture(n: number, per: number, payload = 600): Uint8Array {
  const frames: Uint8Array[] = [];
  const data = new Uint8Array(payload).fill(0x61);
  for (let i = 0; i < n; i++) frames.push(tcp4(`10.0.0.${i + 1}`, '10.9.9.9', 20000 + i, 443, SYN));
  for (let k = 0; k < per; k++) {
    for (let i = 0; i < n; i++)
      frames.push(
        tcp4('10.9.9.9', `10.0.0.${i + 1}`, 443, 20000 + i, PSH | ACK, data, 1 + k * payload),
      );
  }
  for (let i = 0; i < n; i++) {
    frames.push(tcp4(`10.0.0.${i + 1}`, '10.9.9.9', 20000 + i, 443, FIN | ACK));
    frames.push(tcp4('10.9.9.9', `10.0.0.${i + 1}`, 443, 20000 + i, FIN | ACK));
  }
  frames.push(udp4('10.0.0.1', '10.0.0.2', 1, 2, new Uint8Array(10))); // not carved
  return pcap(frames.map((d, i) => ({ data: d, ts: 1_700_000_000 + i * 0.001 })));
}

function joinParts(parts: CarveChunk[]): Uint8Array {
  const sorted = [...parts].sort((a, b) => a.part - b.part);
  return Buffer.concat(
    sorted.map((p, i) => (i === 0 ? p.pcap : p.pcap.subarray(PCAP_HEADER_BYTES))),
  );
}

/** A carve sink that keeps every chunk in `got`, in arrival order. */
const collectInto = (got: CarveChunk[]) => ({ write: (c: CarveChunk) => void got.push(c) });

/** The memory budget of the streaming tests: a 1 MiB arena, 64 KiB parts. */
const SMALL_BUDGET = { maxBufferedBytes: 1 << 20, partBytes: 64 * 1024 };

describe('per-TCP-stream carving, one pass', () => {
  it('every stream becomes a standalone pcap holding exactly its packets', async () => {
    const got: CarveChunk[] = [];
    const r = await analyzePcap(chunks(capture(5, 4), 999), {
      carve: { mode: 'all', sink: collectInto(got) },
    });
    expect(r.carve).toMatchObject({ streamsCarved: 5, piecesWritten: 5 });
    expect(got.every((c) => c.part === 0 && c.final)).toBe(true);
    for (const c of got) {
      const sub = await analyzePcap(chunks(c.pcap));
      expect(sub.packets).toBe(c.packets);
      expect(sub.packets).toBe(1 + 4 + 2);
      expect(sub.conversations).toHaveLength(1);
      expect(sub.conversations[0]!.communityId).toBe(c.stream.communityId);
      expect(c.fileName).toBe(`tcp-stream-${String(c.stream.index).padStart(6, '0')}.pcap`);
    }
  });

  it('under a small memory budget streams arrive in ordered parts that join to the same packets', async () => {
    const got: CarveChunk[] = [];
    await analyzePcap(chunks(capture(30, 60, 1400)), {
      carve: { mode: 'all', ...SMALL_BUDGET, sink: collectInto(got) },
    });
    const byStream = Map.groupBy(got, (c) => c.stream.index);
    expect(byStream.size).toBe(30);
    expect(got.some((c) => c.part > 0)).toBe(true);
    for (const parts of byStream.values()) {
      expect(parts.map((p) => p.part)).toEqual(parts.map((_, i) => i));
      expect(parts.at(-1)!.final).toBe(true);
      const joined = await analyzePcap(chunks(joinParts(parts)));
      expect(joined.packets).toBe(1 + 60 + 2);
    }
  });

  it('a 1 MiB arena shared by 200 open streams: every byte of every stream comes out, in order', async () => {
    // 200 streams × 20 × 1,200 B ≈ 4.8 MB through a 1 MiB arena: constant eviction as parts
    const input = capture(200, 20, 1200);
    const got: CarveChunk[] = [];
    const r = await analyzePcap(chunks(input, 65_536), {
      carve: { mode: 'all', ...SMALL_BUDGET, sink: collectInto(got) },
    });
    expect(r.carve!.streamsCarved).toBe(200);
    expect(got.some((c) => c.part > 0)).toBe(true);
    // the reference: each stream's records cut straight out of the input, by conversation
    const expected = new Map<number, Uint8Array[]>();
    const dv = new DataView(input.buffer, input.byteOffset);
    for (let o = 24; o < input.length; ) {
      const caplen = dv.getUint32(o + 8, true);
      const frame = input.subarray(o + 16, o + 16 + caplen);
      o += 16 + caplen;
      if (frame[23] !== 6) continue; // IPv4 protocol byte: TCP only
      const client = frame[14 + 12 + 3] === 9 ? frame[14 + 16 + 3]! : frame[14 + 12 + 3]!;
      const list = expected.get(client) ?? [];
      list.push(frame);
      expected.set(client, list);
    }
    const byStream = Map.groupBy(got, (c) => c.stream.index);
    expect(byStream.size).toBe(200);
    for (const parts of byStream.values()) {
      expect(parts.map((p) => p.part)).toEqual(parts.map((_, i) => i));
      expect(parts.at(-1)!.final).toBe(true);
      const joined = joinParts(parts);
      const frames: Uint8Array[] = [];
      const jv = new DataView(joined.buffer, joined.byteOffset);
      for (let o = 24; o < joined.length; ) {
        const caplen = jv.getUint32(o + 8, true);
        frames.push(joined.subarray(o + 16, o + 16 + caplen));
        o += 16 + caplen;
      }
      const client = Number(parts[0]!.stream.a.addr.split('.')[3]);
      expect(frames.map((f) => Buffer.from(f).toString('hex'))).toEqual(
        expected.get(client)!.map((f) => Buffer.from(f).toString('hex')),
      );
    }
  });

  it("mode 'streams' carves only what the filter accepts", async () => {
    const got: CarveChunk[] = [];
    await analyzePcap(chunks(capture(6, 2)), {
      carve: {
        mode: 'streams',
        streams: (s) => s.a.addr === '10.0.0.3' || s.b.addr === '10.0.0.3',
        sink: collectInto(got),
      },
    });
    expect(got.map((c) => c.stream.a.addr)).toEqual(['10.0.0.3']);
  });

  it('boundedConcurrencySink keeps at most N uploads in flight and surfaces a failure', async () => {
    let inFlight = 0;
    let peak = 0;
    const uploaded: string[] = [];
    const sink = boundedConcurrencySink(async (c) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setTimeout(r, 2));
      uploaded.push(c.fileName);
      inFlight--;
    }, 3);
    await analyzePcap(chunks(capture(12, 1)), { carve: { mode: 'all', sink } });
    expect(uploaded).toHaveLength(12);
    expect(peak).toBeLessThanOrEqual(3);

    const failing = boundedConcurrencySink(async () => {
      throw new Error('S3 said no');
    }, 2);
    await expect(
      analyzePcap(chunks(capture(4, 1)), { carve: { mode: 'all', sink: failing } }),
    ).rejects.toThrow('S3 said no');
  });

  it('directoryCarveSink writes one file per stream that tshark reads as that stream', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tapline-carve-'));
    try {
      await analyzePcap(chunks(capture(3, 5, 1400)), {
        carve: {
          mode: 'all',
          ...SMALL_BUDGET,
          sink: directoryCarveSink(dir),
        },
      });
      const files = readdirSync(dir).sort();
      expect(files).toEqual([
        'tcp-stream-000000.pcap',
        'tcp-stream-000001.pcap',
        'tcp-stream-000002.pcap',
      ]);
      const mine = await analyzePcap(chunks(new Uint8Array(readFileSync(join(dir, files[1]!)))));
      expect(mine.packets).toBe(1 + 5 + 2);
      const frames = execFileSync(
        'tshark',
        ['-r', join(dir, files[1]!), '-T', 'fields', '-e', 'tcp.stream'],
        {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'ignore'],
        },
      );
      expect(frames.trim().split('\n')).toEqual(Array(8).fill('0'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
