import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { TaplineError } from '../../shared/errors.ts';
import type { AnalyzeOptions, Conversation, PcapAnalysis } from '../../shared/pcap/index.ts';
import { analyzePcap, directoryCarveSink, readFileChunks } from '../../shared/pcap/index.ts';

/**
 * `tapline summarize FILE [--json] [--carve DIR]`: the processing job's decoder on a local
 * pcap, pcap.gz or pcapng. A progress bar goes to stderr when stderr is a terminal.
 */
export function register(program: Command): void {
  program
    .command('summarize')
    .description(
      'summarize a local pcap / pcap.gz / pcapng: conversations, DNS, TLS SNI, HTTP, anomalies',
    )
    .argument('<file>', 'capture file')
    .option('--json', 'print one JSON document')
    .option('--carve <dir>', 'write every TCP stream as its own pcap into DIR')
    .action(async (file: string, opts: { json?: boolean; carve?: string }) => {
      // a closed pipe (| head) ends the output quietly
      process.stdout.on('error', (e: NodeJS.ErrnoException) => {
        if (e.code === 'EPIPE') process.exit(0);
      });
      if (opts.json) {
        await summarizeJson(file, opts, process.stdout);
      } else {
        process.stdout.write(render(file, await summarizeFile(file, opts)));
      }
    });
}

export async function summarizeFile(
  file: string,
  opts: {
    carve?: string;
    progress?: boolean;
    onConversations?: AnalyzeOptions['onConversations'];
    onConversationsJson?: AnalyzeOptions['onConversationsJson'];
  } = {},
): Promise<PcapAnalysis> {
  let size: number;
  try {
    const st = await stat(file);
    if (!st.isFile()) throw new Error('not a regular file');
    size = st.size;
  } catch (error) {
    throw new TaplineError(`cannot read ${file}: ${(error as Error).message}`, {
      code: 'INPUT_UNREADABLE',
      details: { file },
    });
  }
  const tty = opts.progress ?? process.stderr.isTTY === true;
  const options: AnalyzeOptions = {};
  if (opts.onConversations) options.onConversations = opts.onConversations;
  if (opts.onConversationsJson) options.onConversationsJson = opts.onConversationsJson;
  if (opts.carve) options.carve = { mode: 'all', sink: directoryCarveSink(opts.carve) };
  if (tty) options.onProgress = (n) => drawProgress(n, size);
  try {
    return await analyzePcap(readFileChunks(file), options);
  } finally {
    if (tty) process.stderr.write('\r\x1b[K');
  }
}

function drawProgress(done: number, total: number): void {
  const frac = total > 0 ? Math.min(1, done / total) : 1;
  const width = 30;
  const filled = Math.round(frac * width);
  process.stderr.write(
    `\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ${(done / 1048576).toFixed(0)} MiB`,
  );
}

/**
 * `--json`: the document is written as the decoder streams conversations out, so memory stays
 * flat however many flows the capture holds (no array of them, no giant string).
 */
export async function summarizeJson(
  file: string,
  opts: { carve?: string; progress?: boolean },
  out: NodeJS.WritableStream,
): Promise<PcapAnalysis> {
  const write = (text: string) =>
    out.write(text)
      ? Promise.resolve()
      : new Promise<void>((res) => out.once('drain', () => res()));
  let tail = '';
  let first = true;
  const head = async (summary: PcapAnalysis) => {
    const whole = JSON.stringify(toJsonDocument(file, { ...summary, conversations: [] }));
    const marker = '"conversations":[]';
    const at = whole.indexOf(marker);
    tail = `]${whole.slice(at + marker.length)}\n`;
    await write(`${whole.slice(0, at)}"conversations":[`);
  };
  const result = await summarizeFile(file, {
    ...opts,
    // conversations come as text straight from the decoder's table: no object per flow
    onConversationsJson: async (json, _count, summary) => {
      if (first) await head(summary);
      await write(first ? json : `,${json}`);
      first = false;
    },
  });
  if (first) await head(result); // no conversations: the callback never ran
  await write(tail);
  return result;
}

/** One conversation in the `--json` document: exactly the keys. */
export function conversationJson(c: Conversation): Record<string, unknown> {
  return {
    protocol: c.protocol,
    a: c.a,
    b: c.b,
    packetsAtoB: c.packetsAtoB,
    bytesAtoB: c.bytesAtoB,
    packetsBtoA: c.packetsBtoA,
    bytesBtoA: c.bytesBtoA,
    start: c.start,
    end: c.end,
    communityId: c.communityId,
  };
}

/** The `--json` document, exactly the keys the issue specifies. */
export function toJsonDocument(file: string, r: PcapAnalysis): Record<string, unknown> {
  return {
    file,
    format: r.format,
    linkTypes: r.linkTypes,
    packets: r.packets,
    bytes: r.bytes,
    firstTs: r.firstTs,
    lastTs: r.lastTs,
    conversations: r.conversations.map(conversationJson),
    dns: r.dns,
    tls: r.tls,
    http: r.http,
    portZero: r.portZero,
    anomalies: r.anomalies,
  };
}

function iso(ts: number | null): string {
  if (ts === null) return '-';
  const d = new Date(ts * 1000);
  return Number.isNaN(d.getTime()) ? String(ts) : d.toISOString();
}

function endpoint(e: { addr: string; port: number }): string {
  return e.addr.includes(':') ? `[${e.addr}]:${e.port}` : `${e.addr}:${e.port}`;
}

export function render(file: string, r: PcapAnalysis): string {
  const out: string[] = [];
  out.push(`${file}: ${r.format}, link types ${r.linkTypes.join(', ') || '-'}`);
  out.push(`  packets ${r.packets}, bytes ${r.bytes}, ${iso(r.firstTs)} .. ${iso(r.lastTs)}`);
  out.push(
    `  TCP streams ${r.streams}, conversations ${r.conversations.length}${r.truncated ? ', TRUNCATED' : ''}`,
  );
  const protos = Object.entries(r.protocols).map(([k, v]) => `${k} ${v}`);
  if (protos.length) out.push(`  protocols: ${protos.join(', ')}`);
  const anomalies = Object.entries(r.anomalies);
  if (anomalies.length) {
    out.push('  anomalies:');
    for (const [k, v] of anomalies) out.push(`    ${k}: ${v}`);
  }
  if (r.topTalkers.length) {
    out.push('  top talkers (bytes):');
    for (const t of r.topTalkers.slice(0, 10))
      out.push(`    ${t.addr}  ${t.packets} pkts  ${t.bytes} B`);
  }
  const convs = [...r.conversations]
    .sort((x, y) => y.bytesAtoB + y.bytesBtoA - (x.bytesAtoB + x.bytesBtoA))
    .slice(0, 20);
  if (convs.length) {
    out.push('  top conversations (bytes):');
    for (const c of convs) {
      out.push(
        `    ${c.protocol} ${endpoint(c.a)} -> ${endpoint(c.b)}  ${c.packetsAtoB}/${c.bytesAtoB}B  <- ${c.packetsBtoA}/${c.bytesBtoA}B  ${c.tcpFlags.join(',')}`,
      );
    }
  }
  const names = new Map<string, number>();
  for (const d of r.dns) if (!d.isResponse) names.set(d.qname, (names.get(d.qname) ?? 0) + 1);
  if (names.size) {
    out.push(`  DNS queries (${names.size} names):`);
    for (const [n, c] of [...names].sort((a, b) => b[1] - a[1]).slice(0, 20))
      out.push(`    ${n}  x${c}`);
  }
  if (r.tls.length) {
    out.push('  TLS ClientHello:');
    for (const t of r.tls.slice(0, 20))
      out.push(
        `    ${t.sni || '(no SNI)'}  ${t.version}  ${t.alpn.join(',')}  ${t.src} -> ${t.dst}:${t.dport}`,
      );
  }
  if (r.http.length) {
    out.push('  HTTP requests:');
    for (const h of r.http.slice(0, 20))
      out.push(`    ${h.method} ${h.host}${h.path}  ${h.userAgent}`);
  }
  if (r.portZero.length) {
    out.push(`  port-0 packets: ${r.portZero.length}`);
    for (const z of r.portZero.slice(0, 10))
      out.push(`    ${z.protocol} ${z.src}:${z.sport} -> ${z.dst}:${z.dport}`);
  }
  if (r.carve) {
    out.push(
      `  carved ${r.carve.streamsCarved} streams (${r.carve.piecesWritten} files, ${r.carve.packetsWritten} packets)`,
    );
  }
  return `${out.join('\n')}\n`;
}
