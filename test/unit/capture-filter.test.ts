import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkBpfExpression,
  compileStructuredFilter,
  filterToBpf,
  MAX_FILTER_LENGTH,
} from '../../shared/capture/filter.ts';
import { InvalidFilterError } from '../../shared/errors.ts';
import { HOSTILE_FILTERS } from '../fixtures/capture/injection-corpus.ts';

const run = promisify(execFile);
const tcpdump = ['/usr/bin/tcpdump', '/usr/sbin/tcpdump'];

/** libpcap's own verdict: compile the expression for an Ethernet savefile (no root needed). */
let dir: string;
let pcap: string;
async function libpcapAccepts(expression: string): Promise<boolean> {
  const file = join(dir, 'filter.bpf');
  await writeFile(file, `${expression}\n`);
  for (const bin of tcpdump) {
    try {
      await run(bin, ['-d', '-r', pcap, '-F', file]);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      return false;
    }
  }
  throw new Error('tcpdump is not installed');
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tlcap-filter-'));
  pcap = join(dir, 'empty.pcap');
  // pcap global header: magic, v2.4, thiszone 0, sigfigs 0, snaplen 262144, linktype 1 (Ethernet)
  await writeFile(
    pcap,
    Buffer.from('d4c3b2a1020004000000000000000000000004000100000000', 'hex').subarray(0, 24),
  );
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('compileStructuredFilter', () => {
  it('compiles hosts, networks, ports, ranges, protocols and direction to BPF libpcap accepts', async () => {
    const cases = [
      [
        { hosts: ['10.1.2.3'], ports: [], portRanges: [], protocols: [], direction: 'both' },
        'host 10.1.2.3',
      ],
      [
        {
          hosts: ['10.0.0.0/8', '2001:db8::/32'],
          ports: [0],
          portRanges: [],
          protocols: ['tcp', 'udp'],
          direction: 'both',
        },
        '(net 10.0.0.0/8 or net 2001:db8::/32) and (tcp or udp) and port 0',
      ],
      [
        {
          hosts: ['192.0.2.1/32'],
          ports: [53],
          portRanges: [{ from: 1000, to: 2000 }],
          protocols: [],
          direction: 'dst',
        },
        'dst host 192.0.2.1 and (dst port 53 or dst portrange 1000-2000)',
      ],
      [
        {
          hosts: [],
          ports: [],
          portRanges: [],
          protocols: ['gre', 'esp', 'icmp6', 'ipv6-in-ipv4'],
          direction: 'src',
        },
        '((ip proto 47 or ip6 proto 47) or (ip proto 50 or ip6 proto 50) or icmp6 or ip proto 41)',
      ],
    ] as const;
    for (const [input, expected] of cases) {
      const bpf = compileStructuredFilter({
        ...input,
        hosts: [...input.hosts],
        ports: [...input.ports],
        portRanges: [...input.portRanges],
        protocols: [...input.protocols],
      });
      expect(bpf).toBe(expected);
      expect(await libpcapAccepts(bpf), bpf).toBe(true);
    }
  });

  it('applies ports to the protocols that have them and refuses ports with only port-less ones', async () => {
    const mixed = compileStructuredFilter({
      hosts: [],
      ports: [0],
      portRanges: [],
      protocols: ['tcp', 'icmp'],
      direction: 'both',
    });
    expect(mixed).toBe('((tcp and port 0) or icmp)');
    expect(await libpcapAccepts(mixed)).toBe(true);
    expect(() =>
      compileStructuredFilter({
        hosts: [],
        ports: [53],
        portRanges: [],
        protocols: ['icmp', 'gre'],
        direction: 'both',
      }),
    ).toThrow(/none of the protocols \(icmp, gre\) has ports/);
  });

  it('compiles an empty filter to "" (everything) and passes its own output through the checker', () => {
    expect(
      filterToBpf({
        kind: 'structured',
        hosts: [],
        ports: [],
        portRanges: [],
        protocols: [],
        direction: 'both',
      }),
    ).toBe('');
    expect(filterToBpf(undefined)).toBe('');
  });

  it('always produces BPF that libpcap accepts (property)', async () => {
    const octet = fc.integer({ min: 0, max: 255 });
    const v4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'));
    const cidr = fc.tuple(v4, fc.integer({ min: 8, max: 32 })).map(([a, b]) => {
      const n = a
        .split('.')
        .map(Number)
        .reduce((x, y) => x * 256 + y, 0);
      const masked = b === 32 ? n : n - (n % 2 ** (32 - b));
      const addr = [24, 16, 8, 0].map((s) => Math.floor(masked / 2 ** s) % 256).join('.');
      return `${addr}/${b}`;
    });
    const filters = fc.record({
      hosts: fc.array(fc.oneof(v4, cidr), { maxLength: 3 }),
      ports: fc.array(fc.integer({ min: 0, max: 65535 }), { maxLength: 3 }),
      portRanges: fc.array(
        fc
          .tuple(fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 65535 }))
          .map(([a, b]) => ({ from: Math.min(a, b), to: Math.max(a, b) })),
        { maxLength: 2 },
      ),
      protocols: fc.subarray(['tcp', 'udp', 'icmp', 'gre', 'esp']),
      direction: fc.constantFrom('both', 'src', 'dst') as fc.Arbitrary<'both' | 'src' | 'dst'>,
    });
    const samples = fc.sample(filters, { numRuns: 25, seed: 7 });
    for (const f of samples) {
      const portsWithoutPortProtocols =
        (f.ports.length > 0 || f.portRanges.length > 0) &&
        f.protocols.length > 0 &&
        !f.protocols.some((p) => p === 'tcp' || p === 'udp');
      if (portsWithoutPortProtocols) {
        expect(() => compileStructuredFilter(f)).toThrow(InvalidFilterError);
        continue;
      }
      const bpf = compileStructuredFilter(f);
      if (bpf === '') continue;
      expect(await libpcapAccepts(bpf), bpf).toBe(true);
    }
  });
});

describe('checkBpfExpression (strict raw BPF grammar)', () => {
  it('accepts ordinary BPF: addresses, CIDRs, byte offsets, flags, IPv6, MACs', async () => {
    for (const expression of [
      'tcp port 0 or udp port 0',
      '(tcp or udp) and port 0 and not net 10.0.0.0/8',
      'host 2001:db8::1 and ip6',
      'tcp[13] & 2 != 0',
      'tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn',
      'icmp[icmptype] == icmp-echo',
      'ether host 00:11:22:33:44:55',
      'vlan and host 192.0.2.1',
      'greater 1000 and src portrange 1024-65535',
      '!(ip proto 47)',
      'tcp[12:1] & 0xf0 > 0x50',
    ]) {
      expect(checkBpfExpression(expression)).toBe(expression);
      expect(await libpcapAccepts(expression), expression).toBe(true);
    }
  });

  it('refuses every hostile filter with an InvalidFilterError naming the token and position', () => {
    for (const { expression, token } of HOSTILE_FILTERS) {
      let error: unknown;
      try {
        checkBpfExpression(expression);
      } catch (e) {
        error = e;
      }
      expect(error, expression).toBeInstanceOf(InvalidFilterError);
      const details = (error as InvalidFilterError).details;
      expect(details.part).toBe('filter.expression');
      expect(typeof details.position).toBe('number');
      if (expression.length <= MAX_FILTER_LENGTH) expect(details.token, expression).toBe(token);
    }
  });

  it('names the position of the offending token', () => {
    const error = (() => {
      try {
        checkBpfExpression('host 10.0.0.1 and port http');
      } catch (e) {
        return e as InvalidFilterError;
      }
    })();
    expect(error?.details).toMatchObject({ token: 'http', position: 23 });
    expect(error?.message).toMatch(/"http" at 23 is not a BPF keyword/);
  });
});
