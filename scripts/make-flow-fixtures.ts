// Real flow records from real packets. Builds two network namespaces (prefix tldet,
// 10.202.1.0/24 and fd00:202::/64 only), sends normal traffic (HTTP, DNS-like UDP, ICMP), TCP
// and UDP probes to port 0 (hping3, scapy for IPv6), a short port scan and a host sweep
// (nmap), captures it with tcpdump, turns the pcap into flows with Debian's softflowd
// (`-r FILE -c none -v 10 -A milli`) exporting IPFIX to nfcapd on loopback, reads them back
// with `nfdump -o csv` and writes VPC flow-log lines (shared/lab/flows-from-pcap.ts, the
// converter the lab uses too).
//
//   node scripts/make-flow-fixtures.ts [OUTDIR]   (root; default test/fixtures/flowlogs)
//
// The lab test (test/lab/flowlog-real-packets.test.ts) runs the same pipeline end to end.
import { execFile, type spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  type NfdumpFlow,
  nfdumpFlowsFromPcap,
  toFlowLogLines,
} from '../shared/lab/flows-from-pcap.ts';
import { Topology } from '../shared/lab/netns.ts';

const run = promisify(execFile);
export const LAB_TOOLS = ['tcpdump', 'softflowd', 'nfcapd', 'nfdump', 'hping3', 'nmap'] as const;

export const LAB = {
  prefix: 'tldet',
  client: '10.202.1.1',
  server: '10.202.1.2',
  client6: 'fd00:202::1',
  server6: 'fd00:202::2',
  /** Extra addresses on the server namespace, the host-sweep's targets. */
  sweep: Array.from({ length: 24 }, (_, i) => `10.202.1.${10 + i}`),
  scanPorts: '1-40',
  eni: 'eni-0202000000000001a',
  instance: 'i-0202000000000001a',
  account: '123456789012',
} as const;

export async function missingTools(): Promise<string[]> {
  const missing: string[] = [];
  for (const tool of [...LAB_TOOLS, 'ip']) {
    try {
      await run('sh', ['-c', `command -v ${tool}`]);
    } catch {
      missing.push(tool);
    }
  }
  try {
    await run('/usr/bin/python3', ['-c', 'import scapy.all']);
  } catch {
    missing.push('python3-scapy');
  }
  return missing;
}

export type { NfdumpFlow };

/** nfdump flows → default-format (v2) records and the custom v5 format with tcp-flags. */
export function toFlowLogs(flows: NfdumpFlow[]): { v2: string[]; v5: string[]; v5Format: string } {
  return toFlowLogLines(flows, {
    account: LAB.account,
    eniId: LAB.eni,
    instanceId: LAB.instance,
    localAddresses: [LAB.client, LAB.client6],
  });
}

/** A plain HTTP GET with the system Python (no curl needed on CI). */
function httpGet(url: string, timeout = 5): string {
  return `import urllib.request; urllib.request.urlopen(${JSON.stringify(url)}, timeout=${timeout}).read()`;
}

async function waitFor(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Runs the whole pipeline; returns the nfdump flows and the pcap size. */
export async function captureRealFlows(): Promise<{
  flows: NfdumpFlow[];
  pcapBytes: number;
  csv: string;
}> {
  const topo = new Topology(LAB.prefix);
  const work = await mkdtemp(join(tmpdir(), 'tldet-'));
  const children: Array<ReturnType<typeof spawn>> = [];
  try {
    const a = await topo.addHost('a');
    const b = await topo.addHost('b');
    await topo.link({
      a: { ns: a.name, ifname: 'eth0', address: `${LAB.client}/24` },
      b: { ns: b.name, ifname: 'eth0', address: `${LAB.server}/24` },
    });
    await a.exec('ip', ['-6', 'addr', 'add', `${LAB.client6}/64`, 'dev', 'eth0', 'nodad']);
    await b.exec('ip', ['-6', 'addr', 'add', `${LAB.server6}/64`, 'dev', 'eth0', 'nodad']);
    for (const addr of LAB.sweep) await b.exec('ip', ['addr', 'add', `${addr}/24`, 'dev', 'eth0']);

    // services in b: HTTP on 8080 (v4+v6) and a DNS-like UDP echo on 5353
    const http = b.spawn(
      '/usr/bin/python3',
      [
        '-c',
        [
          'import http.server, socket',
          'class S(http.server.ThreadingHTTPServer): address_family = socket.AF_INET6',
          'def b(self):',
          '  self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0); http.server.HTTPServer.server_bind(self)',
          'S.server_bind = b',
          'S(("::", 8080), http.server.SimpleHTTPRequestHandler).serve_forever()',
        ].join('\n'),
      ],
      { cwd: work, stdio: 'ignore' },
    );
    children.push(http);
    const udp = b.spawn(
      '/usr/bin/python3',
      [
        '-c',
        [
          'import socket',
          's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 5353))',
          'while True:',
          '  d, p = s.recvfrom(2048); s.sendto(d, p)',
        ].join('\n'),
      ],
      { stdio: 'ignore' },
    );
    children.push(udp);
    await waitFor(
      async () => {
        try {
          await a.exec('/usr/bin/python3', ['-c', httpGet(`http://${LAB.server}:8080/`, 1)]);
          return true;
        } catch {
          return false;
        }
      },
      10_000,
      'the HTTP server in the lab',
    );

    const pcap = join(work, 'lab.pcap');
    const dump = a.spawn('tcpdump', ['-i', 'eth0', '-n', '-U', '-w', pcap, 'not arp'], {
      stdio: 'ignore',
    });
    children.push(dump);
    await new Promise((r) => setTimeout(r, 1000));

    // normal traffic
    for (let i = 0; i < 3; i++)
      await a.exec('/usr/bin/python3', ['-c', httpGet(`http://${LAB.server}:8080/`)]);
    await a.exec('/usr/bin/python3', ['-c', httpGet(`http://[${LAB.server6}]:8080/`)]);
    await a.exec('/usr/bin/python3', [
      '-c',
      [
        'import socket',
        's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)',
        `s.sendto(b"\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x07example\\x03com\\x00\\x00\\x01\\x00\\x01", ("${LAB.server}", 5353)); s.recvfrom(2048)`,
      ].join('\n'),
    ]);
    // ICMP: the false-positive case (ports are 0 for ICMP, must not fire port-zero)
    await a.exec('hping3', ['-1', '-c', '3', '-i', 'u100000', LAB.server]).catch(() => undefined);
    // port 0: TCP SYN and UDP, IPv4 (hping3) and IPv6 (scapy)
    await a
      .exec('hping3', [
        '-S',
        '-p',
        '0',
        '-s',
        '40000',
        '-k',
        '-c',
        '3',
        '-i',
        'u100000',
        LAB.server,
      ])
      .catch(() => undefined);
    await a
      .exec('hping3', [
        '--udp',
        '-p',
        '0',
        '-s',
        '40001',
        '-k',
        '-c',
        '3',
        '-i',
        'u100000',
        LAB.server,
      ])
      .catch(() => undefined);
    await a.exec('/usr/bin/python3', [
      '-c',
      [
        'from scapy.all import IPv6, UDP, TCP, send, conf',
        'conf.verb = 0',
        `send(IPv6(dst="${LAB.server6}")/UDP(sport=40002, dport=0)/b"x", count=2, iface="eth0")`,
        `send(IPv6(dst="${LAB.server6}")/TCP(sport=40003, dport=0, flags="S"), count=2, iface="eth0")`,
      ].join('\n'),
    ]);
    // a short port scan and a host sweep
    await a.exec(
      'nmap',
      ['-n', '-Pn', '-sS', '-p', LAB.scanPorts, '--max-retries', '0', LAB.server],
      { timeoutMs: 60_000 },
    );
    await a.exec('nmap', ['-n', '-Pn', '-sS', '-p', '22', '--max-retries', '0', ...LAB.sweep], {
      timeoutMs: 60_000,
    });
    await new Promise((r) => setTimeout(r, 1000));
    dump.kill('SIGINT');
    await new Promise((r) => dump.once('exit', r));

    // pcap → IPFIX (softflowd) → nfcapd on loopback → nfdump csv: the shared converter
    const { flows, csv } = await nfdumpFlowsFromPcap(pcap);
    const { size } = await import('node:fs/promises').then((fs) => fs.stat(pcap));
    return { flows, pcapBytes: size, csv };
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await topo.destroy();
    await rm(work, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const out = process.argv[2] ?? new URL('../test/fixtures/flowlogs/', import.meta.url).pathname;
  const { flows } = await captureRealFlows();
  const { v2, v5, v5Format } = toFlowLogs(flows);
  // how these were made: test/fixtures/flowlogs/README.md
  await writeFile(join(out, 'lab-real-v2.log'), `${v2.join('\n')}\n`);
  await writeFile(join(out, 'lab-real-v5.log'), `${v5Format}\n${v5.join('\n')}\n`);
  console.log(`wrote ${flows.length} flows to ${out}lab-real-v2.log and lab-real-v5.log`);
}
