/**
 * Per-TCP-stream carving into S3 (CARVE_MODE all / findings): one pass writes each stream as
 * its own pcap object under the file's streams/ prefix; tshark reads every carve back.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processPcapObject } from '../../shared/processing/index.ts';
import {
  coreDeps,
  corpusFile,
  createProcessingStack,
  fixtureFile,
  getBytes,
  getJson,
  type ProcessingStack,
  putCaptureManifest,
  versionsUnder,
} from '../fixtures/processing/stack.ts';
import { motoClients } from '../support/aws.ts';
import { uploadPcapForProcessing } from '../support/pcap-results.ts';

const run = promisify(execFile);
let stack: ProcessingStack;
let dir: string;

beforeAll(async () => {
  stack = await createProcessingStack(motoClients());
  dir = await mkdtemp(join(tmpdir(), 'tapline-carve-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const upload = (name: string, bytes: Buffer) => uploadPcapForProcessing(stack, name, bytes);

/** tshark's view of one carved object: packets and the set of TCP 4-tuples in it. */
async function tsharkView(bytes: Buffer, name: string) {
  const path = join(dir, name);
  await writeFile(path, bytes);
  const { stdout } = await run('tshark', [
    '-r',
    path,
    '-T',
    'fields',
    '-e',
    'ip.src',
    '-e',
    'ipv6.src',
    '-e',
    'tcp.srcport',
    '-e',
    'ip.dst',
    '-e',
    'ipv6.dst',
    '-e',
    'tcp.dstport',
  ]);
  const lines = stdout.split('\n').filter((l) => l.length > 0);
  const pairs = new Set(
    lines.map((l) => {
      const [s4, s6, sp, d4, d6, dp] = l.split('\t');
      const a = `${s4 || s6}:${sp}`;
      const b = `${d4 || d6}:${dp}`;
      return [a, b].sort().join(' ');
    }),
  );
  return { packets: lines.length, pairs: [...pairs] };
}

async function carves(prefix: string) {
  const keys = [...(await versionsUnder(stack, prefix)).keys()].sort();
  return Promise.all(
    keys.map(async (key) => ({
      key,
      view: await tsharkView(await getBytes(stack, key), key.split('/').pop()!),
    })),
  );
}

describe('per-stream carving', () => {
  it('CARVE_MODE=all writes every TCP stream as its own readable pcap', async () => {
    const up = await upload('all.pcap', await fixtureFile('port-zero.pcap'));
    const outcome = await processPcapObject(up, coreDeps(stack, { carveMode: 'all' }));
    expect(outcome.carve).toMatchObject({ mode: 'all', created: 3 });
    const got = await carves(up.layout.streams);
    expect(got.map((c) => c.view)).toEqual([
      { packets: 2, pairs: ['10.20.0.5:40000 198.51.100.7:0'] },
      { packets: 5, pairs: ['10.20.0.5:51000 203.0.113.80:443'] },
      { packets: 1, pairs: ['2001:db8::5:41000 2001:db8::7:0'] },
    ]);
    const record = await getJson(stack, up.layout.completion);
    expect(record.summary.carve).toMatchObject({ mode: 'all', streams: 3, packets: 8 });
  });

  it('CARVE_MODE=findings carves port-0 streams, plus the finding hosts from the manifest', async () => {
    const plain = await upload('findings.pcap', await fixtureFile('port-zero.pcap'));
    await processPcapObject(plain, coreDeps(stack, { carveMode: 'findings' }));
    expect((await carves(plain.layout.streams)).map((c) => c.view.pairs[0])).toEqual([
      '10.20.0.5:40000 198.51.100.7:0',
      '2001:db8::5:41000 2001:db8::7:0',
    ]);

    const flagged = await upload('finding.pcap', await fixtureFile('port-zero.pcap'));
    await putCaptureManifest(stack, flagged.cap, {
      captureId: flagged.cap,
      request: {
        source: 'detector',
        finding: { rule: 'deny-listed-peer', fingerprint: 'fp-1' },
        filter: { kind: 'structured', hosts: ['203.0.113.80/32'], ports: [] },
      },
      hosts: {},
    });
    await processPcapObject(flagged, coreDeps(stack, { carveMode: 'findings' }));
    expect((await carves(flagged.layout.streams)).length).toBe(3);
  });

  it('carves hundreds of streams with bounded concurrency, and a re-run reuses them', async () => {
    const up = await upload('http.pcap', await corpusFile('http_650_responses.pcap'));
    const outcome = await processPcapObject(up, coreDeps(stack, { carveMode: 'all' }));
    const record = await getJson(stack, up.layout.completion);
    expect(record.summary.tcp_streams).toBe(284);
    expect(outcome.carve!.created).toBe(record.summary.carve.pieces);
    expect(record.summary.carve.streams).toBe(284);
    const keys = await versionsUnder(stack, up.layout.streams);
    expect(keys.size).toBe(record.summary.carve.pieces);
    // A re-delivery finds the completion record and uploads nothing again.
    const again = await processPcapObject(up, coreDeps(stack, { carveMode: 'all' }));
    expect(again.status).toBe('already-processed');
    expect((await versionsUnder(stack, up.layout.streams)).size).toBe(keys.size);
  });
});
