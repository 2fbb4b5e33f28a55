import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { ip, type NetnsHost, requireRoot, Topology } from './netns.ts';

/**
 * The lab's network, all inside namespaces this process creates:
 *
 *   workload 10.203.1.10 ──(private subnet 10.203.1.0/24)── 10.203.1.1 NAT 10.203.2.1 (public subnet)
 *                                                                 NAT 10.203.64.1 ──── 10.203.64.100 internet server
 *
 * The VPC is 10.203.0.0/18; the internet host is outside it, so the private subnet's route
 * table sends its traffic to the NAT. The NAT namespace routes between the two (as a NAT
 * instance would; no address translation is needed for the lab). The internet host serves
 * HTTP on :80 and DNS on :53/udp.
 */
export const LAB_ADDRESSES = {
  vpcCidr: '10.203.0.0/18',
  privateSubnet: '10.203.1.0/24',
  publicSubnet: '10.203.2.0/24',
  workload: '10.203.1.10',
  natPrivate: '10.203.1.1',
  natPublic: '10.203.2.1',
  /** The NAT's address on the internet side (outside the VPC). */
  natInternet: '10.203.64.1',
  internet: '10.203.64.100',
  /** The interface on the NAT that sees the workload's traffic. */
  natCaptureInterface: 'priv0',
} as const;

export interface LabNetwork {
  workload: NetnsHost;
  nat: NetnsHost;
  internet: NetnsHost;
  destroy(): Promise<void>;
}

const DNS_SERVER = `
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('${LAB_ADDRESSES.internet}', 53))
while True:
    data, peer = s.recvfrom(2048)
    if len(data) < 12:
        continue
    qid = data[:2]
    end = 12
    while end < len(data) and data[end] != 0:
        end += data[end] + 1
    question = data[12:end + 5]
    answer = b'\\xc0\\x0c' + struct.pack('>HHIH', 1, 1, 60, 4) + socket.inet_aton('${LAB_ADDRESSES.internet}')
    s.sendto(qid + b'\\x81\\x80' + struct.pack('>HHHH', 1, 1, 0, 0) + question + answer, peer)
`;

const DNS_QUERY = `
import socket, struct, sys
name = sys.argv[1]
q = b''.join(bytes([len(p)]) + p.encode() for p in name.split('.')) + b'\\x00'
msg = struct.pack('>HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0) + q + struct.pack('>HH', 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(msg, ('${LAB_ADDRESSES.internet}', 53))
print(len(s.recvfrom(2048)[0]))
`;

export async function buildLabNetwork(prefix = 'tllab'): Promise<LabNetwork> {
  requireRoot('the lab');
  const topology = new Topology(prefix);
  const servers: ChildProcess[] = [];
  const destroy = async () => {
    for (const server of servers) server.kill('SIGKILL');
    await topology.destroy();
  };
  try {
    const workload = await topology.addHost('work');
    const nat = await topology.addHost('nat');
    const internet = await topology.addHost('inet');
    await topology.link({
      a: { ns: workload.name, ifname: 'eth0', address: `${LAB_ADDRESSES.workload}/24` },
      b: {
        ns: nat.name,
        ifname: LAB_ADDRESSES.natCaptureInterface,
        address: `${LAB_ADDRESSES.natPrivate}/24`,
      },
    });
    await topology.link({
      a: { ns: nat.name, ifname: 'pub0', address: `${LAB_ADDRESSES.natPublic}/24` },
      b: { ns: internet.name, ifname: 'eth0', address: `${LAB_ADDRESSES.internet}/24` },
    });
    await ip('-n', nat.name, 'addr', 'add', `${LAB_ADDRESSES.natInternet}/24`, 'dev', 'pub0');
    await topology.enableForwarding(nat.name);
    await topology.route(workload.name, 'default', LAB_ADDRESSES.natPrivate);
    await topology.route(internet.name, LAB_ADDRESSES.privateSubnet, LAB_ADDRESSES.natInternet);
    // As on a NAT instance, the default route leads out to the internet (the capture document's
    // Interface=auto picks the default-route interface).
    await topology.route(nat.name, 'default', LAB_ADDRESSES.internet);

    servers.push(
      internet.spawn('python3', ['-m', 'http.server', '80', '--bind', LAB_ADDRESSES.internet], {
        stdio: 'ignore',
      }),
      internet.spawn('/usr/bin/python3', ['-c', DNS_SERVER], { stdio: 'ignore' }),
    );
    await waitForHttp(workload);
    return { workload, nat, internet, destroy };
  } catch (error) {
    await destroy();
    throw error;
  }
}

async function waitForHttp(workload: NetnsHost): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    try {
      await workload.exec('curl', [
        '-sf',
        '-o',
        '/dev/null',
        '--max-time',
        '1',
        `http://${LAB_ADDRESSES.internet}/`,
      ]);
      return;
    } catch {
      await sleep(100);
    }
  }
  throw new Error('lab: the internet host’s HTTP server did not come up');
}

/** Ordinary traffic: a few HTTP requests and DNS lookups from the workload. */
export async function normalTraffic(workload: NetnsHost): Promise<void> {
  for (let i = 0; i < 3; i += 1) {
    await workload.exec('curl', [
      '-sf',
      '-o',
      '/dev/null',
      '--max-time',
      '2',
      `http://${LAB_ADDRESSES.internet}/`,
    ]);
    await workload.exec('/usr/bin/python3', ['-c', DNS_QUERY, `host${i}.lab.example`]);
  }
}

/** The suspicious part: TCP and UDP probes to port 0, then a short SYN scan. */
export async function suspiciousTraffic(workload: NetnsHost): Promise<void> {
  const target = LAB_ADDRESSES.internet;
  await workload
    .exec('hping3', ['-q', '-c', '3', '-i', 'u20000', '-S', '-p', '0', '-s', '40000', '-k', target])
    .catch(hping3Exit);
  await workload
    .exec('hping3', [
      '-q',
      '-c',
      '3',
      '-i',
      'u20000',
      '--udp',
      '-p',
      '0',
      '-s',
      '40001',
      '-k',
      target,
    ])
    .catch(hping3Exit);
  await workload.exec('nmap', [
    '-n',
    '-Pn',
    '-sS',
    '-T5',
    '--max-retries',
    '0',
    '-p',
    '1-120',
    target,
  ]);
}

/** hping3 exits 1 when no reply came back, which is what a probe to port 0 often gets. */
function hping3Exit(error: unknown): void {
  const code = (error as { code?: number }).code;
  if (code !== 1) throw error;
}
