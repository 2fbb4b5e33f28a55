/** Address rendering shared by the decoder (dotted IPv4, RFC 5952 compressed IPv6), byte helpers. */

export function ipv4ToString(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** Four big-endian 32-bit words → RFC 5952 text (longest run of ≥ 2 zero groups as `::`). */
export function ipv6ToString(w0: number, w1: number, w2: number, w3: number): string {
  const g = [
    w0 >>> 16,
    w0 & 0xffff,
    w1 >>> 16,
    w1 & 0xffff,
    w2 >>> 16,
    w2 & 0xffff,
    w3 >>> 16,
    w3 & 0xffff,
  ];
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  // IPv4-mapped ::ffff:a.b.c.d
  if (w0 === 0 && w1 === 0 && w2 === 0xffff) return `::ffff:${ipv4ToString(w3)}`;
  if (bestLen < 2) return g.map((x) => x.toString(16)).join(':');
  const head = g.slice(0, bestStart).map((x) => x.toString(16));
  const tail = g.slice(bestStart + bestLen).map((x) => x.toString(16));
  return `${head.join(':')}::${tail.join(':')}`;
}

export function readU32(b: Uint8Array, i: number): number {
  return ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
}

const bufferCopy = Buffer.prototype.copy;

/**
 * src[from, to) → dst at `at`: a memcpy that, unlike `dst.set(src.subarray(…))`, creates no
 * view object per call (it runs once per carved packet). Works on any Uint8Array source.
 */
export function copyBytes(
  src: Uint8Array,
  from: number,
  to: number,
  dst: Uint8Array,
  at: number,
): void {
  bufferCopy.call(src, dst, at, from, to);
}
