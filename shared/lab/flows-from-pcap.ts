import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Real flow records from real packets, the way the detector's tests and the lab make them:
 * Debian's softflowd reads a pcap (`-r FILE -c none -v 10 -A milli`) and exports IPFIX to
 * nfcapd on this machine's loopback; `nfdump -o csv` reads the flows back; they become VPC
 * Flow Log lines (default v2 or a custom v5 format).
 */
export interface NfdumpFlow {
  /** Epoch milliseconds. */
  start: number;
  end: number;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  proto: number;
  /** nfdump's flag letters, e.g. "...AP.S." */
  flags: string;
  packets: number;
  bytes: number;
}

const PROTO: Record<string, number> = {
  ICMP: 1,
  TCP: 6,
  UDP: 17,
  ICMP6: 58,
  IPV6: 41,
  GRE: 47,
  ESP: 50,
};

/** Parses `nfdump -o csv` output (its header line names the columns). */
export function parseNfdumpCsv(text: string): NfdumpFlow[] {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const header = lines.findIndex((l) => l.startsWith('ts,') || l.includes(',sa,'));
  if (header < 0) throw new Error(`nfdump csv without a header: ${text.slice(0, 200)}`);
  const cols = lines[header]!.split(',');
  const at = (name: string) => {
    const i = cols.indexOf(name);
    if (i < 0) throw new Error(`nfdump csv has no ${name} column`);
    return i;
  };
  const [ts, te, sa, da, sp, dp, pr, flg, ipkt, ibyt] = [
    'ts',
    'te',
    'sa',
    'da',
    'sp',
    'dp',
    'pr',
    'flg',
    'ipkt',
    'ibyt',
  ].map(at) as number[];
  const flows: NfdumpFlow[] = [];
  for (const line of lines.slice(header + 1)) {
    const f = line.split(',');
    if (f.length < cols.length || !/^\d{4}-/.test(f[ts!] ?? '')) continue; // summary lines
    const proto = PROTO[(f[pr!] ?? '').trim().toUpperCase()] ?? Number(f[pr!]);
    flows.push({
      start: Date.parse(`${f[ts!]!.replace(' ', 'T')}Z`),
      end: Date.parse(`${f[te!]!.replace(' ', 'T')}Z`),
      src: f[sa!]!,
      dst: f[da!]!,
      sport: Number(f[sp!]),
      dport: Number(f[dp!]),
      proto,
      flags: f[flg!] ?? '',
      packets: Number(f[ipkt!]),
      bytes: Number(f[ibyt!]),
    });
  }
  return flows;
}

/** VPC tcp-flags from nfdump's flag letters: AWS reports FIN 1, SYN 2, RST 4, SYN-ACK 18. */
export function vpcTcpFlags(flags: string): number {
  let v = 0;
  if (flags.includes('F')) v |= 1;
  if (flags.includes('R')) v |= 4;
  if (flags.includes('S')) v |= flags.includes('A') ? 18 : 2;
  return v;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** pcap → softflowd → nfcapd (loopback) → nfdump csv → flows. */
export async function nfdumpFlowsFromPcap(
  pcapPath: string,
): Promise<{ flows: NfdumpFlow[]; csv: string }> {
  const work = await mkdtemp(join(tmpdir(), 'tapline-flows-'));
  const port = await freePort();
  const collector = spawn(
    'nfcapd',
    ['-b', '127.0.0.1', '-p', String(port), '-w', work, '-t', '3600'],
    {
      stdio: 'ignore',
    },
  );
  try {
    await new Promise((r) => setTimeout(r, 700));
    if (collector.exitCode !== null) throw new Error(`nfcapd exited with ${collector.exitCode}`);
    await run(
      'softflowd',
      ['-r', pcapPath, '-c', 'none', '-v', '10', '-A', 'milli', '-6', '-n', `127.0.0.1:${port}`],
      {
        timeout: 60_000,
      },
    );
    await new Promise((r) => setTimeout(r, 700));
    const exited = new Promise((r) => collector.once('exit', r));
    collector.kill('SIGTERM');
    await exited;
    const files = (await readdir(work, { recursive: true }))
      .map(String)
      .filter((f) => /nfcapd\.\d+/.test(f));
    if (files.length === 0) throw new Error('nfcapd wrote no flow file');
    let csv = '';
    for (const file of files) {
      const { stdout } = await run('nfdump', ['-r', join(work, file), '-o', 'csv'], {
        maxBuffer: 16 << 20,
        env: { ...process.env, TZ: 'UTC' },
      });
      csv += stdout;
    }
    return { flows: parseNfdumpCsv(csv), csv };
  } finally {
    if (collector.exitCode === null) collector.kill('SIGKILL');
    await rm(work, { recursive: true, force: true });
  }
}

export const V5_FORMAT =
  'version account-id interface-id instance-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status tcp-flags flow-direction traffic-path';

export interface FlowLogContext {
  account: string;
  /** The ENI and instance the flow log is attached to (the workload's). */
  eniId: string;
  instanceId: string;
  /** Addresses that belong to that interface: their flows are egress. */
  localAddresses: string[];
}

/** nfdump flows → flow-log lines in the default v2 format and the custom v5 format above. */
export function toFlowLogLines(
  flows: NfdumpFlow[],
  ctx: FlowLogContext,
): { v2: string[]; v5: string[]; v5Format: string } {
  const v2: string[] = [];
  const v5: string[] = [];
  for (const f of flows) {
    const portless = f.proto !== 6 && f.proto !== 17;
    const sport = portless ? 0 : f.sport;
    const dport = portless ? 0 : f.dport;
    const start = Math.floor(f.start / 1000);
    const end = Math.max(start, Math.ceil(f.end / 1000));
    const egress = ctx.localAddresses.includes(f.src);
    v2.push(
      `2 ${ctx.account} ${ctx.eniId} ${f.src} ${f.dst} ${sport} ${dport} ${f.proto} ${f.packets} ${f.bytes} ${start} ${end} ACCEPT OK`,
    );
    v5.push(
      `5 ${ctx.account} ${ctx.eniId} ${ctx.instanceId} ${f.src} ${f.dst} ${sport} ${dport} ${f.proto} ${f.packets} ${f.bytes} ${start} ${end} ACCEPT OK ${f.proto === 6 ? vpcTcpFlags(f.flags) : '-'} ${egress ? 'egress' : 'ingress'} ${egress ? 1 : '-'}`,
    );
  }
  return { v2, v5, v5Format: V5_FORMAT };
}
