import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { conversationJson } from '../../bin/commands/summarize.ts';
import { ipv4ToString } from '../../shared/pcap/address.ts';
import { PcapAnalyzer } from '../../shared/pcap/analyze.ts';
import { communityId, communityIdFromWords } from '../../shared/pcap/community-id.ts';
import { ConversationTable } from '../../shared/pcap/conversations.ts';
import { analyzePcap, readFileChunks } from '../../shared/pcap/index.ts';
import type { Conversation, TopTalker } from '../../shared/pcap/types.ts';
import { chunks, eth, ipv4, pcap, udp } from './pcap-frames.ts';

// The fast output paths (conversation JSON text, Community ID from address words, the
// typed top-talker table) against the straightforward code they replace, on every corpus file
// and on random tables.

const CORPUS = join(import.meta.dirname, '../../../shared/corpus');
const files = readdirSync(CORPUS).filter((f) => /\.(pcap|pcapng)$/.test(f));

/** The obvious top talkers: one object per address in a Map, a stable sort, a slice. */
function referenceTopTalkers(t: ConversationTable, n: number): TopTalker[] {
  const v4 = new Map<number, { packets: number; bytes: number }>();
  const v6 = new Map<string, { packets: number; bytes: number }>();
  for (let i = 0; i < t.count; i++) {
    const packets = t.pAB[i]! + t.pBA[i]!;
    const bytes = t.bAB[i]! + t.bBA[i]!;
    for (const side of [0, 1] as const) {
      const map = t.v6[i] ? v6 : v4;
      const key = t.v6[i] ? t.addrString(i, side) : t.addr[i * 8 + side * 4 + 3]!;
      const e = (map as Map<unknown, { packets: number; bytes: number }>).get(key) ?? {
        packets: 0,
        bytes: 0,
      };
      e.packets += packets;
      e.bytes += bytes;
      (map as Map<unknown, { packets: number; bytes: number }>).set(key, e);
    }
  }
  const all = [
    ...[...v4].map(([k, e]) => ({ addr: ipv4ToString(k), ...e })),
    ...[...v6].map(([k, e]) => ({ addr: k, ...e })),
  ];
  return all
    .sort((x, y) => y.bytes - x.bytes || y.packets - x.packets)
    .slice(0, n)
    .sort((x, y) => y.bytes - x.bytes || y.packets - x.packets || (x.addr < y.addr ? -1 : 1));
}

describe('conversation output fast paths on the corpus', () => {
  it.each(files)('%s', async (file) => {
    const conversations: ReturnType<ConversationTable['toConversation']>[] = [];
    let analyzer: PcapAnalyzer | undefined;
    try {
      const r = await analyzePcap(readFileChunks(join(CORPUS, file)), {
        onConversations: (batch) => {
          conversations.push(...batch);
        },
      });
      expect(conversations).toHaveLength(r.conversationCount);
    } catch {
      return; // unreadable files (bad magic) have no conversations: covered elsewhere
    }
    // the table itself: feed the same bytes to an analyzer we keep
    analyzer = new PcapAnalyzer({});
    for await (const chunk of readFileChunks(join(CORPUS, file))) analyzer.reader.push(chunk);
    analyzer.reader.end();
    const table = analyzer.conversations;
    for (let i = 0; i < table.count; i++) {
      expect(table.compactJson(i)).toBe(JSON.stringify(conversationJson(table.toConversation(i))));
    }
    // the text batches analyzePcap hands out join to the same list
    let text = '';
    let counted = 0;
    await analyzePcap(readFileChunks(join(CORPUS, file)), {
      onConversationsJson: (json, count) => {
        text += text === '' ? json : `,${json}`;
        counted += count;
      },
    });
    expect(JSON.parse(`[${text}]`)).toEqual(conversations.map(conversationJson));
    expect(counted).toBe(conversations.length);
    for (const n of [1, 3, 20, 1000]) {
      expect(table.topTalkers(n)).toEqual(referenceTopTalkers(table, n));
    }
  });
});

describe('conversation batches', () => {
  it('as text and as objects: the same 2,500 conversations in the same batches', async () => {
    const records = [];
    for (let i = 0; i < 2500; i++) {
      const client = `10.0.${i >> 8}.${i & 255}`;
      records.push({
        data: eth(0x0800, ipv4(client, '192.0.2.1', 17, udp(1024 + i, 53, new Uint8Array(4)))),
      });
    }
    const input = pcap(records);
    const texts: [number, string][] = [];
    const objects: Conversation[][] = [];
    await analyzePcap(chunks(input, 4096), {
      onConversationsJson: (json, n) => void texts.push([n, json]),
    });
    await analyzePcap(chunks(input, 4096), {
      onConversations: (batch) => void objects.push(batch),
    });
    expect(texts.map(([n]) => n)).toEqual([1000, 1000, 500]);
    expect(objects.map((b) => b.length)).toEqual([1000, 1000, 500]);
    texts.forEach(([, json], k) => {
      expect(`[${json}]`).toBe(JSON.stringify(objects[k]!.map(conversationJson)));
    });
  });
});

describe('top talkers', () => {
  it('equal the reference for random tables (ties, IPv4 and IPv6 mixed)', () => {
    const word = fc.integer({ min: 0, max: 7 }); // few distinct addresses: many ties
    const conv = fc.record({
      v6: fc.boolean(),
      a: word,
      b: word,
      packets: fc.integer({ min: 1, max: 3 }),
      bytes: fc.constantFrom(60, 100, 1500),
    });
    fc.assert(
      fc.property(fc.array(conv, { maxLength: 60 }), fc.integer({ min: 1, max: 25 }), (cs, n) => {
        const t = new ConversationTable(1000);
        const x = new Uint32Array(9);
        cs.forEach((c, k) => {
          x.fill(0);
          x[3] = c.a;
          x[7] = c.b;
          if (c.v6) {
            x[0] = 0x20010db8;
            x[4] = 0x20010db8;
          }
          const i = t.lookup(17, c.v6 ? 1 : 0, x, 0, 1000 + k, 53, 0);
          for (let p = 0; p < c.packets; p++) t.count1(i, t.reversed, c.bytes, 0);
        });
        expect(t.topTalkers(n)).toEqual(referenceTopTalkers(t, n));
      }),
      { numRuns: 500 },
    );
  });
});

describe('Community ID from address words', () => {
  it('equals communityId on the same tuple as bytes', () => {
    const bytesOf = (x: Uint32Array, at: number, v6: boolean) => {
      const out = new Uint8Array(v6 ? 16 : 4);
      const first = v6 ? 0 : 3;
      for (let k = first; k < 4; k++) {
        const w = x[at + k]!;
        out.set([w >>> 24, (w >>> 16) & 255, (w >>> 8) & 255, w & 255], (k - first) * 4);
      }
      return out;
    };
    const w32 = fc.integer({ min: 0, max: 0xffffffff });
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.array(w32, { minLength: 8, maxLength: 8 }),
        fc.boolean(),
        fc.constantFrom(6, 17, 1, 58, 132, 47),
        fc.integer({ min: 0, max: 65535 }),
        fc.integer({ min: 0, max: 65535 }),
        (v6, words, sameAddr, proto, p1, p2) => {
          const x = Uint32Array.from(words);
          if (sameAddr) x.copyWithin(4, 0, 4);
          const icmp = proto === 1 || proto === 58;
          const sport = icmp ? p1 & 255 : p1;
          const dport = icmp ? p2 & 255 : p2;
          const expected = communityId({
            proto,
            src: bytesOf(x, 0, v6),
            dst: bytesOf(x, 4, v6),
            sport,
            dport,
          });
          expect(communityIdFromWords(proto, v6, x, 0, 4, sport, dport)).toBe(expected);
        },
      ),
      { numRuns: 5000 },
    );
  });
});
