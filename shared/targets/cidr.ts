import { isIP } from 'node:net';

/** Address arithmetic for longest-prefix route matching (IPv4 and IPv6, BigInt). */

function ipv4ToBigInt(address: string): bigint {
  return address.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

function ipv6ToBigInt(address: string): bigint {
  let text = address;
  // An embedded IPv4 tail (::ffff:10.0.0.1) becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const n = ipv4ToBigInt(v4[1]!);
    text = `${text.slice(0, -v4[1]!.length)}${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const missing = 8 - headGroups.length - tailGroups.length;
  const groups =
    tail === undefined
      ? headGroups
      : [...headGroups, ...Array.from({ length: missing }, () => '0'), ...tailGroups];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(Number.parseInt(g || '0', 16)), 0n);
}

export interface ParsedCidr {
  family: 4 | 6;
  network: bigint;
  prefix: number;
}

export function parseCidr(cidr: string): ParsedCidr | undefined {
  const [addr, bits] = cidr.split('/');
  if (addr === undefined) return undefined;
  const family = isIP(addr);
  if (family !== 4 && family !== 6) return undefined;
  const width = family === 4 ? 32 : 128;
  const prefix = bits === undefined ? width : Number(bits);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > width) return undefined;
  const value = family === 4 ? ipv4ToBigInt(addr) : ipv6ToBigInt(addr);
  const shift = BigInt(width - prefix);
  return { family, network: (value >> shift) << shift, prefix };
}

/** Whether `address` lies inside `cidr` (same family only). */
export function cidrContains(cidr: string, address: string): boolean {
  const net = parseCidr(cidr);
  const host = parseCidr(address);
  if (!net || !host || net.family !== host.family) return false;
  const width = net.family === 4 ? 32 : 128;
  const shift = BigInt(width - net.prefix);
  return host.network >> shift === net.network >> shift;
}
