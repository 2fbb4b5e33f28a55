/**
 * The processing job takes conversations from the decoder in batches (`onConversations`)
 * straight into the gzip of its conversations table: the analysis it keeps never holds the
 * list, and the table on moto has every conversation, the same rows the decoder reports.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { type AnalyzeOptions, analyzePcap, type PcapAnalysis } from '../../shared/pcap/index.ts';
import { processPcapObject } from '../../shared/processing/index.ts';
import {
  captureId,
  coreDeps,
  createProcessingStack,
  getJson,
  getJsonLines,
  hostUpload,
  INSTANCE,
  type ProcessingStack,
} from '../fixtures/processing/stack.ts';
import { motoClients } from '../support/aws.ts';
import { eth, ipv4, pcap, udp } from '../unit/pcap-frames.ts';

let stack: ProcessingStack;

beforeAll(async () => {
  stack = await createProcessingStack(motoClients());
});

/** `flows` UDP conversations (more than one decoder batch of 1,000), two packets each. */
function manyFlows(flows: number): Buffer {
  const records = [];
  for (let i = 0; i < flows; i++) {
    const client = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const query = udp(20_000 + (i % 30_000), 53, new Uint8Array(12));
    const reply = udp(53, 20_000 + (i % 30_000), new Uint8Array(12));
    records.push({ data: eth(0x0800, ipv4(client, '192.0.2.53', 17, query)) });
    records.push({ data: eth(0x0800, ipv4('192.0.2.53', client, 17, reply)) });
  }
  return Buffer.from(pcap(records));
}

describe('process-pcap conversations table', () => {
  it('streams 2,500 conversations in batches into the table, none kept in the analysis', async () => {
    const bytes = manyFlows(2500);
    const cap = captureId();
    const key = `pcaps/${cap}/${INSTANCE}/flows.pcap`;
    const upload = await hostUpload(stack, key, bytes);

    const seen: { options?: AnalyzeOptions; result?: PcapAnalysis; batches: number[] } = {
      batches: [],
    };
    const outcome = await processPcapObject(
      { bucket: stack.bucket, key, versionId: upload.versionId },
      coreDeps(stack, {
        analyze: async (source, options = {}) => {
          seen.options = options;
          const result = await analyzePcap(source, {
            ...options,
            onConversations: async (batch, summary) => {
              seen.batches.push(batch.length);
              await options.onConversations?.(batch, summary);
            },
          });
          seen.result = result;
          return result;
        },
      }),
    );
    expect(outcome.status).toBe('processed');
    expect(seen.options?.onConversations).toBeTypeOf('function');
    expect(seen.batches).toEqual([1000, 1000, 500]);
    expect(seen.result?.conversations).toEqual([]);
    expect(seen.result?.conversationCount).toBe(2500);

    const record = await getJson(stack, outcome.completionKey);
    expect(record.summary.conversations).toBe(2500);
    expect(record.tables.conversations.records).toBe(2500);
    const rows = await getJsonLines(stack, record.tables.conversations.key);
    expect(rows).toHaveLength(2500);

    // the same conversations, in the same order, as the decoder lists them in one go
    const listed = await analyzePcap(
      (async function* () {
        yield new Uint8Array(bytes);
      })(),
    );
    expect(rows.map((r) => [r.a_addr, r.a_port, r.b_addr, r.b_port, r.packets, r.bytes])).toEqual(
      listed.conversations.map((c) => [
        c.a.addr,
        c.a.port,
        c.b.addr,
        c.b.port,
        c.packetsAtoB + c.packetsBtoA,
        c.bytesAtoB + c.bytesBtoA,
      ]),
    );
    expect(rows.map((r) => r.community_id)).toEqual(listed.conversations.map((c) => c.communityId));
    for (const r of rows) expect(r).toMatchObject({ capture_id: cap, file: 'flows.pcap' });
  });
});
