import { isIP } from 'node:net';
import { ConfigError } from '../errors.ts';

/**
 * CIDR membership for the hot path. IPv4 addresses arrive as uint32 numbers (no strings): one
 * Set per prefix length in the list, so a lookup costs one Set probe per distinct length.
 * IPv6 arrives as canonical text and is compared as four 32-bit words.
 */

export function parseIPv4Text(text: string): number {
  const parts = text.split('.');
  if (parts.length !== 4) return -1;
  let v = 0;
  for (const p of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(p) || Number(p) > 255) return -1;
    v = v * 256 + Number(p);
  }
  return v;
}

/** IPv6 text to four uint32 words; null when it is not IPv6. */
export function parseIPv6Words(text: string): Uint32Array | null {
  if (isIP(text) !== 6) return null;
  let t = text.toLowerCase();
  const zone = t.indexOf('%');
  if (zone >= 0) t = t.slice(0, zone);
  // embedded IPv4 tail (::ffff:1.2.3.4)
  const lastColon = t.lastIndexOf(':');
  const tail = t.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = parseIPv4Text(tail);
    if (v4 < 0) return null;
    t = `${t.slice(0, lastColon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const [head, rest] = t.split('::') as [string, string | undefined];
  const headParts = head === '' ? [] : head.split(':');
  const restParts = rest === undefined || rest === '' ? [] : rest.split(':');
  const fill = rest === undefined ? 0 : 8 - headParts.length - restParts.length;
  const groups = [...headParts, ...Array<string>(fill).fill('0'), ...restParts];
  if (groups.length !== 8) return null;
  const words = new Uint32Array(4);
  for (let i = 0; i < 4; i++) {
    words[i] =
      ((Number.parseInt(groups[2 * i]!, 16) << 16) | Number.parseInt(groups[2 * i + 1]!, 16)) >>> 0;
  }
  return words;
}

function maskWord(word: number, bits: number): number {
  if (bits <= 0) return 0;
  if (bits >= 32) return word >>> 0;
  return (word & (0xffffffff << (32 - bits))) >>> 0;
}

interface V6Block {
  words: Uint32Array;
  bits: number;
}

export class CidrSet {
  private readonly v4 = new Map<number, Set<number>>();
  private v4Lengths: number[] = [];
  private readonly v6: V6Block[] = [];
  readonly size: number;

  constructor(cidrs: readonly string[]) {
    for (const cidr of cidrs) this.add(cidr);
    this.v4Lengths = [...this.v4.keys()].sort((a, b) => b - a);
    this.size = cidrs.length;
  }

  private add(cidr: string): void {
    const [addr = '', bitsText, extra] = cidr.trim().split('/');
    const family = isIP(addr);
    const maxBits = family === 4 ? 32 : 128;
    const bits = bitsText === undefined ? maxBits : Number(bitsText);
    if (
      family === 0 ||
      extra !== undefined ||
      (bitsText !== undefined && !/^\d{1,3}$/.test(bitsText)) ||
      bits > maxBits
    ) {
      throw new ConfigError(`Not an IPv4/IPv6 address or CIDR block: ${JSON.stringify(cidr)}`, {
        cidr,
      });
    }
    if (family === 4) {
      const net = bits === 0 ? 0 : parseIPv4Text(addr) - (parseIPv4Text(addr) % 2 ** (32 - bits));
      let set = this.v4.get(bits);
      if (!set) {
        set = new Set();
        this.v4.set(bits, set);
      }
      set.add(net);
    } else {
      const words = parseIPv6Words(addr)!;
      for (let i = 0; i < 4; i++) words[i] = maskWord(words[i]!, bits - 32 * i);
      this.v6.push({ words, bits });
    }
  }

  hasV4(): boolean {
    return this.v4.size > 0;
  }

  /** Membership for an IPv4 address as uint32 or int32. */
  containsV4(value: number): boolean {
    const address = value >>> 0;
    for (const bits of this.v4Lengths) {
      const net = bits === 0 ? 0 : address - (address % 2 ** (32 - bits));
      if (this.v4.get(bits)!.has(net)) return true;
    }
    return false;
  }

  /** Membership for an IPv6 text (as the scanner hands it over). */
  containsV6(address: string): boolean {
    if (this.v6.length === 0) return false;
    const words = parseIPv6Words(address);
    if (words === null) return false;
    for (const block of this.v6) {
      let match = true;
      for (let i = 0; i < 4 && match; i++) {
        match = maskWord(words[i]!, block.bits - 32 * i) === block.words[i];
      }
      if (match) return true;
    }
    return false;
  }

  /** Membership for a scanner address key (uint32 for IPv4, text for IPv6). */
  contains(key: number | string): boolean {
    return typeof key === 'number' ? this.containsV4(key) : this.containsV6(key);
  }

  /** Membership for any address text. */
  containsText(text: string): boolean {
    const v4 = parseIPv4Text(text);
    return v4 >= 0 ? this.containsV4(v4) : this.containsV6(text);
  }
}
