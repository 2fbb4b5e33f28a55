/**
 * The processing job takes conversations from the decoder in batches (`onConversations`)
 * and streams them through gzip into the multipart upload of its conversations table: the
 * analysis it keeps never holds the list, the table on moto has every conversation (the same
 * rows the decoder reports), a table past one part is uploaded while it is produced, and
 * duplicate or failed attempts still leave exactly one version of it.
 */
import { ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { type AnalyzeOptions, analyzePcap, type PcapAnalysis } from '../../shared/pcap/index.ts';
import {
  DecoderFailedError,
  processPcapObject,
  ResultWriteError,
} from '../../shared/processing/index.ts';
import { PART_BYTES } from '../../shared/processing/result-store.ts';
import {
  coreDeps,
  createProcessingStack,
  getJson,
  getJsonLines,
  type ProcessingStack,
} from '../fixtures/processing/stack.ts';
import { motoClients } from '../support/aws.ts';
import { captureResultVersions, uploadPcapForProcessing } from '../support/pcap-results.ts';
import { interceptedS3 } from '../support/s3-interception.ts';
import { eth, ipv4, pcap, udp } from '../unit/pcap-frames.ts';

let stack: ProcessingStack;

beforeAll(async () => {
  stack = await createProcessingStack(motoClients());
});

/** `flows` UDP conversations (more than one decoder batch of 1,000), two packets each. */
function manyFlows(flows: number): Buffer {
  const files: Buffer[] = [];
  for (let start = 0; start < flows; start += 5000) {
    const records = [];
    for (let i = start; i < Math.min(flows, start + 5000); i++) {
      const client = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
      const query = udp(20_000 + (i % 30_000), 53, new Uint8Array(12));
      const reply = udp(53, 20_000 + (i % 30_000), new Uint8Array(12));
      records.push({ data: eth(0x0800, ipv4(client, '192.0.2.53', 17, query)) });
      records.push({ data: eth(0x0800, ipv4('192.0.2.53', client, 17, reply)) });
    }
    const file = Buffer.from(pcap(records));
    files.push(start === 0 ? file : file.subarray(24)); // one global header
  }
  return Buffer.concat(files);
}

const resultVersions = (cap: string) => captureResultVersions(stack, cap);

/** Uploads `bytes` as `name` of a new capture: its capture ID and the object the job takes. */
async function uploadFlows(name: string, bytes: Buffer) {
  const { cap, bucket, key, versionId } = await uploadPcapForProcessing(stack, name, bytes);
  return { cap, ref: { bucket, key, versionId } };
}

async function pendingUploads(prefix: string): Promise<number> {
  const out = await stack.clients.s3.send(
    new ListMultipartUploadsCommand({ Bucket: stack.bucket, Prefix: prefix }),
  );
  return (out.Uploads ?? []).length;
}

/** An S3 client that forwards to moto, except where `fault` throws. */
function faultyS3(fault: (name: string, input: any) => void): S3Client {
  return interceptedS3(stack.clients.s3, (name, input, send) => {
    fault(name, input);
    return send();
  });
}

describe('process-pcap conversations table', () => {
  it('streams 2,500 conversations in batches into the table, none kept in the analysis', async () => {
    const bytes = manyFlows(2500);
    const { cap, ref } = await uploadFlows('flows.pcap', bytes);

    const seen: { options?: AnalyzeOptions; result?: PcapAnalysis; batches: number[] } = {
      batches: [],
    };
    const outcome = await processPcapObject(
      ref,
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

  it('fails a decoder that counts conversations it did not stream, and writes no results', async () => {
    const { cap, ref } = await uploadFlows('unstreamed.pcap', manyFlows(10));
    const outcome = processPcapObject(
      ref,
      coreDeps(stack, {
        // a decoder that lists its conversations instead of streaming them
        analyze: (source, { onConversations: _dropped, ...options } = {}) =>
          analyzePcap(source, options),
      }),
    );
    await expect(outcome).rejects.toBeInstanceOf(DecoderFailedError);
    await expect(outcome).rejects.toThrow(/reported 10 conversations .* but streamed 0/);
    expect((await resultVersions(cap)).size).toBe(0);
  });

  describe('a conversations table past one upload part', () => {
    // 280,000 flows: about 10 MB of gzip, more than one part
    const flows = 280_000;
    const limits = { maxConversations: 300_000 };
    let bytes: Buffer;

    beforeAll(() => {
      bytes = manyFlows(flows);
    });

    it('is uploaded as multipart, and concurrent duplicate deliveries leave one version', async () => {
      const { cap, ref } = await uploadFlows('big-table.pcap', bytes);
      const outcomes = await Promise.all([
        processPcapObject(ref, coreDeps(stack, { limits })),
        processPcapObject(ref, coreDeps(stack, { limits })),
      ]);
      const statuses = outcomes.map((o) => o.status).sort();
      expect(statuses).toEqual(['completed-concurrently', 'processed']);
      const table = outcomes[0]!.tables!.conversations!;
      expect(table.records).toBe(flows);
      expect(table.bytes).toBeGreaterThan(PART_BYTES);
      expect(table.checksumSha256).toMatch(/-2$/);
      expect(outcomes[1]!.tables!.conversations!.versionId).toBe(table.versionId);

      const versions = await resultVersions(cap);
      expect(versions.size).toBe(7); // completion record + 6 tables
      for (const [k, n] of versions) expect(n, k).toBe(1);
      expect(await pendingUploads(`results/`)).toBe(0);
      const record = await getJson(stack, outcomes[0]!.completionKey);
      expect(record.summary.conversations).toBe(flows);
      expect(record.tables.conversations).toMatchObject({
        records: flows,
        versionId: table.versionId,
      });
      const rows = await getJsonLines(stack, table.key);
      expect(rows).toHaveLength(flows);
      expect(rows[flows - 1]).toMatchObject({
        capture_id: cap,
        a_port: 20_000 + ((flows - 1) % 30_000),
      });
    });

    it('fails the record when a part upload fails mid-stream, leaves no partial table, and the retry writes it', async () => {
      const { cap, ref } = await uploadFlows('part-fails.pcap', bytes);
      const failing = faultyS3((name, input) => {
        if (name === 'UploadPartCommand' && String(input.Key).endsWith('conversations.jsonl.gz')) {
          throw Object.assign(new Error('connection reset'), { name: 'NetworkingError' });
        }
      });
      await expect(
        processPcapObject(ref, coreDeps(stack, { s3: failing, limits })),
      ).rejects.toBeInstanceOf(ResultWriteError);
      expect((await resultVersions(cap)).size).toBe(0);
      expect(await pendingUploads(`results/`)).toBe(0);

      const retry = await processPcapObject(ref, coreDeps(stack, { limits }));
      expect(retry.status).toBe('processed');
      expect(retry.tables!.conversations).toMatchObject({ outcome: 'created', records: flows });
      for (const [k, n] of await resultVersions(cap)) expect(n, k).toBe(1);
    });
  });
});
