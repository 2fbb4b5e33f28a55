import { ipv4ToString, ipv6ToString, readU32 } from './address.ts';

/**
 * Application-layer indicators read from single packets: DNS messages, TLS ClientHello
 * (SNI, version, ALPN) and HTTP request heads. Every parser works on a bounded window of the
 * packet, follows DNS compression pointers with a jump limit, and returns null (never throws)
 * on malformed input; the caller counts that as an anomaly.
 */

const QTYPES: Record<number, string> = {
  1: 'A',
  2: 'NS',
  5: 'CNAME',
  6: 'SOA',
  12: 'PTR',
  13: 'HINFO',
  15: 'MX',
  16: 'TXT',
  28: 'AAAA',
  33: 'SRV',
  35: 'NAPTR',
  39: 'DNAME',
  41: 'OPT',
  43: 'DS',
  46: 'RRSIG',
  47: 'NSEC',
  48: 'DNSKEY',
  50: 'NSEC3',
  64: 'SVCB',
  65: 'HTTPS',
  99: 'SPF',
  251: 'IXFR',
  252: 'AXFR',
  255: 'ANY',
  257: 'CAA',
};
const RCODES = [
  'NOERROR',
  'FORMERR',
  'SERVFAIL',
  'NXDOMAIN',
  'NOTIMP',
  'REFUSED',
  'YXDOMAIN',
  'YXRRSET',
  'NXRRSET',
  'NOTAUTH',
  'NOTZONE',
];

export function qtypeName(t: number): string {
  return QTYPES[t] ?? `TYPE${t}`;
}

export interface DnsMessage {
  id: number;
  isResponse: boolean;
  qname: string;
  qtype: string;
  rcode: string;
  answers: string[];
}

const MAX_ANSWERS = 32;

/** Reads a (possibly compressed) name at `p`; returns [name, next offset] or null. */
function readName(b: Uint8Array, start: number, end: number, p: number): [string, number] | null {
  let out = '';
  let after = -1;
  let jumps = 0;
  let total = 0;
  for (;;) {
    if (p >= end) return null;
    const len = b[p]!;
    if (len === 0) {
      p++;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (p + 1 >= end) return null;
      const target = start + (((len & 0x3f) << 8) | b[p + 1]!);
      if (after < 0) after = p + 2;
      if (++jumps > 64 || target >= end) return null;
      p = target;
      continue;
    }
    if (kind !== 0) return null; // extended label types: not valid in practice
    if (p + 1 + len > end) return null;
    total += len + 1;
    if (total > 255) return null;
    if (out.length > 0) out += '.';
    for (let i = p + 1; i <= p + len; i++) {
      const c = b[i]!;
      if (c === 0x2e || c === 0x5c) out += `\\${String.fromCharCode(c)}`;
      else if (c > 0x20 && c < 0x7f) out += String.fromCharCode(c);
      else out += `\\${c.toString().padStart(3, '0')}`;
    }
    p += 1 + len;
  }
  return [out === '' ? '<Root>' : out, after >= 0 ? after : p];
}

export function parseDns(b: Uint8Array, start: number, end: number): DnsMessage | null {
  if (end - start < 12) return null;
  const id = (b[start]! << 8) | b[start + 1]!;
  const flags = (b[start + 2]! << 8) | b[start + 3]!;
  const qd = (b[start + 4]! << 8) | b[start + 5]!;
  const an = (b[start + 6]! << 8) | b[start + 7]!;
  const isResponse = (flags & 0x8000) !== 0;
  const opcode = (flags >> 11) & 15;
  if (opcode > 6) return null;
  let p = start + 12;
  let qname = '';
  let qtype = '';
  if (qd === 0) {
    // no question (mDNS announcements, some responses): answers only
    return {
      id,
      isResponse,
      qname,
      qtype,
      rcode: rcodeName(flags),
      answers: readAnswers(b, start, end, p, an, isResponse),
    };
  }
  const q = readName(b, start, end, p);
  if (q === null || q[1] + 4 > end) return null;
  qname = q[0];
  qtype = qtypeName((b[q[1]]! << 8) | b[q[1] + 1]!);
  p = q[1] + 4;
  // skip further questions
  for (let i = 1; i < qd && i < 64; i++) {
    const more = readName(b, start, end, p);
    if (more === null || more[1] + 4 > end) return null;
    p = more[1] + 4;
  }
  return {
    id,
    isResponse,
    qname,
    qtype,
    rcode: rcodeName(flags),
    answers: readAnswers(b, start, end, p, an, isResponse),
  };
}

function rcodeName(flags: number): string {
  return RCODES[flags & 15] ?? `RCODE${flags & 15}`;
}

function readAnswers(
  b: Uint8Array,
  start: number,
  end: number,
  p: number,
  an: number,
  isResponse: boolean,
): string[] {
  const answers: string[] = [];
  if (isResponse) {
    for (let i = 0; i < an && answers.length < MAX_ANSWERS; i++) {
      const name = readName(b, start, end, p);
      if (name === null || name[1] + 10 > end) break;
      const o = name[1];
      const type = (b[o]! << 8) | b[o + 1]!;
      const rdlen = (b[o + 8]! << 8) | b[o + 9]!;
      const rd = o + 10;
      if (rd + rdlen > end) break;
      const text = renderRdata(b, start, end, type, rd, rdlen);
      if (text !== null) answers.push(text);
      p = rd + rdlen;
    }
  }
  return answers;
}

function renderRdata(
  b: Uint8Array,
  start: number,
  end: number,
  type: number,
  rd: number,
  len: number,
): string | null {
  switch (type) {
    case 1:
      return len === 4 ? ipv4ToString(readU32(b, rd)) : null;
    case 28:
      return len === 16
        ? ipv6ToString(readU32(b, rd), readU32(b, rd + 4), readU32(b, rd + 8), readU32(b, rd + 12))
        : null;
    case 2:
    case 5:
    case 12:
    case 39: {
      const n = readName(b, start, Math.min(end, rd + len + 0x4000), rd);
      return n ? n[0] : null;
    }
    case 15: {
      if (len < 3) return null;
      const n = readName(b, start, end, rd + 2);
      return n ? `${(b[rd]! << 8) | b[rd + 1]!} ${n[0]}` : null;
    }
    case 16: {
      let s = '';
      let p = rd;
      while (p < rd + len) {
        const l = b[p]!;
        if (p + 1 + l > rd + len) break;
        s += new TextDecoder('latin1').decode(b.subarray(p + 1, p + 1 + l));
        p += 1 + l;
      }
      return s;
    }
    default:
      return null;
  }
}

// ------------------------------------------------------------------ TLS

export interface ClientHello {
  sni: string;
  version: string;
  alpn: string[];
}

function isGrease(v: number): boolean {
  return (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);
}

export function tlsVersionName(v: number): string {
  switch (v) {
    case 0x0304:
      return 'TLS 1.3';
    case 0x0303:
      return 'TLS 1.2';
    case 0x0302:
      return 'TLS 1.1';
    case 0x0301:
      return 'TLS 1.0';
    case 0x0300:
      return 'SSL 3.0';
    default:
      return `0x${v.toString(16).padStart(4, '0')}`;
  }
}

/** Does this TCP payload start a TLS handshake record holding a ClientHello? */
export function looksLikeClientHello(b: Uint8Array, p: number, end: number): boolean {
  return end - p >= 6 && b[p] === 0x16 && b[p + 1] === 3 && b[p + 2]! <= 4 && b[p + 5] === 1;
}

/** Total bytes of the TLS record starting at p (header included). */
export function tlsRecordLength(b: Uint8Array, p: number): number {
  return 5 + ((b[p + 3]! << 8) | b[p + 4]!);
}

/**
 * Parse a ClientHello from TLS record bytes [p, end). The record may span several records'
 * worth of handshake (we read the first record only). Returns null when not a ClientHello
 * or too damaged to yield anything.
 */
export function parseClientHello(b: Uint8Array, p: number, end: number): ClientHello | null {
  if (!looksLikeClientHello(b, p, end)) return null;
  const recEnd = Math.min(end, p + tlsRecordLength(b, p));
  let o = p + 5;
  const hsLen = (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!;
  const hsEnd = Math.min(recEnd, o + 4 + hsLen);
  o += 4;
  if (o + 2 + 32 + 1 > hsEnd) return null;
  const legacy = (b[o]! << 8) | b[o + 1]!;
  o += 34;
  o += 1 + b[o]!; // session id
  if (o + 2 > hsEnd) return { sni: '', version: tlsVersionName(legacy), alpn: [] };
  o += 2 + ((b[o]! << 8) | b[o + 1]!); // cipher suites
  if (o + 1 > hsEnd) return { sni: '', version: tlsVersionName(legacy), alpn: [] };
  o += 1 + b[o]!; // compression methods
  let sni = '';
  const alpn: string[] = [];
  let best = 0;
  if (o + 2 <= hsEnd) {
    const extEnd = Math.min(hsEnd, o + 2 + ((b[o]! << 8) | b[o + 1]!));
    o += 2;
    while (o + 4 <= extEnd) {
      const type = (b[o]! << 8) | b[o + 1]!;
      const len = (b[o + 2]! << 8) | b[o + 3]!;
      const d = o + 4;
      const dEnd = Math.min(extEnd, d + len);
      if (type === 0 && dEnd - d >= 5) {
        // server_name_list: list len(2), then entries type(1) len(2) name
        let q = d + 2;
        while (q + 3 <= dEnd) {
          const nt = b[q]!;
          const nl = (b[q + 1]! << 8) | b[q + 2]!;
          if (q + 3 + nl > dEnd) break;
          if (nt === 0 && sni === '') sni = printable(b, q + 3, q + 3 + nl);
          q += 3 + nl;
        }
      } else if (type === 16 && dEnd - d >= 2) {
        let q = d + 2;
        while (q + 1 <= dEnd && alpn.length < 16) {
          const l = b[q]!;
          if (q + 1 + l > dEnd) break;
          alpn.push(printable(b, q + 1, q + 1 + l));
          q += 1 + l;
        }
      } else if (type === 43 && dEnd - d >= 1) {
        const l = b[d]!;
        for (let q = d + 1; q + 2 <= Math.min(dEnd, d + 1 + l); q += 2) {
          const v = (b[q]! << 8) | b[q + 1]!;
          if (!isGrease(v) && v > best && v <= 0x0304) best = v;
        }
      }
      o = d + len;
    }
  }
  return { sni, version: tlsVersionName(best > 0 ? best : legacy), alpn };
}

function printable(b: Uint8Array, from: number, to: number): string {
  let s = '';
  for (let i = from; i < to && i < from + 1024; i++) {
    const c = b[i]!;
    s += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return s;
}

// ------------------------------------------------------------------ HTTP

const METHODS = new Set([
  'GET',
  'POST',
  'PUT',
  'DELETE',
  'HEAD',
  'OPTIONS',
  'PATCH',
  'CONNECT',
  'TRACE',
  'PROPFIND',
  'PROPPATCH',
  'MKCOL',
  'COPY',
  'MOVE',
  'LOCK',
  'UNLOCK',
  'SEARCH',
  'REPORT',
]);

export interface HttpRequestHead {
  method: string;
  path: string;
  host: string;
  userAgent: string;
}

const HTTP_WINDOW = 8192;

/** Cheap test before `parseHttpRequest`: 3–9 upper-case letters, a space, then '/' or a letter. */
export function mayBeHttpRequest(b: Uint8Array, p: number, end: number): boolean {
  if (end - p < 14) return false;
  let i = p;
  while (i < p + 10 && b[i]! >= 0x41 && b[i]! <= 0x5a) i++;
  if (i - p < 3 || b[i] !== 0x20) return false;
  const c = b[i + 1]!;
  return c === 0x2f || c === 0x2a || (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a);
}

/**
 * Is this the head of an HTTP/1.x request? Byte checks only (method token, a target, then
 * " HTTP/1.x" at the end of the first line): no strings are built for the 99% of TCP
 * payloads that are not requests.
 */
export function isHttpRequestLine(b: Uint8Array, p: number, end: number): boolean {
  const stop = Math.min(end, p + HTTP_WINDOW);
  let sp = p;
  while (sp < stop && sp - p < 12 && b[sp] !== 0x20) sp++;
  if (sp >= stop || b[sp] !== 0x20 || sp - p < 3) return false;
  let eol = sp + 1;
  while (eol < stop && b[eol] !== 0x0a) eol++;
  let e = eol;
  if (e > sp && b[e - 1] === 0x0d) e--;
  // ... SP "HTTP/" DIGIT "." DIGIT
  return (
    e - sp >= 11 &&
    b[e - 9] === 0x20 &&
    b[e - 8] === 0x48 &&
    b[e - 7] === 0x54 &&
    b[e - 6] === 0x54 &&
    b[e - 5] === 0x50 &&
    b[e - 4] === 0x2f &&
    b[e - 2] === 0x2e &&
    METHODS.has(latin1(b, p, sp))
  );
}

export function parseHttpRequest(b: Uint8Array, p: number, end: number): HttpRequestHead | null {
  if (!isHttpRequestLine(b, p, end)) return null;
  const stop = Math.min(end, p + HTTP_WINDOW);
  let sp = p;
  while (b[sp] !== 0x20) sp++;
  const method = latin1(b, p, sp);
  let eol = sp + 1;
  while (eol < stop && b[eol] !== 0x0a) eol++;
  let lineEnd = eol;
  if (b[lineEnd - 1] === 0x0d) lineEnd--;
  const path = latin1(b, sp + 1, lineEnd - 9);
  let host = '';
  let userAgent = '';
  let q = eol + 1;
  while (q < stop) {
    let e = q;
    while (e < stop && b[e] !== 0x0a) e++;
    let le = e;
    if (le > q && b[le - 1] === 0x0d) le--;
    if (le === q) break; // end of head
    const c = b[q]! | 0x20;
    if (c === 0x68 || c === 0x75) {
      let colon = q;
      while (colon < le && b[colon] !== 0x3a) colon++;
      if (colon < le) {
        const name = latin1(b, q, colon).toLowerCase();
        if (name === 'host' && host === '') host = latin1(b, colon + 1, le).trim();
        else if (name === 'user-agent' && userAgent === '')
          userAgent = latin1(b, colon + 1, le).trim();
      }
    }
    q = e + 1;
  }
  return { method, path, host, userAgent };
}

function latin1(b: Uint8Array, from: number, to: number): string {
  let s = '';
  for (let i = from; i < to; i++) s += String.fromCharCode(b[i]!);
  return s;
}
