// Build the pcap benchmark input: `node scripts/make-bench-pcap.ts OUT.pcap [streams]`.
//
// scapy (scripts/make-bench-pcap.py) writes ONE realistic TCP conversation as a template;
// this script replicates it N times (default 108,000 streams ≈ 1.08 GB, 1.8 M packets) with a
// distinct client/server address and port per stream, 32 streams interleaved at a time, the
// IPv4 and TCP checksums updated incrementally (RFC 1624) so every frame stays valid, and
// timestamps advancing 10 µs per packet. Replication runs at disk speed; scapy alone would
// need hours for 1.8 M packets.
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const out = process.argv[2];
const streams = Number(process.argv[3] ?? 108_000);
if (!out || !Number.isInteger(streams) || streams < 1) {
  console.error('usage: make-bench-pcap.ts OUT.pcap [streams]');
  process.exit(2);
}

const template = `${out}.template.pcap`;
const py = spawnSync(
  '/usr/bin/python3',
  [join(dirname(fileURLToPath(import.meta.url)), 'make-bench-pcap.py'), template],
  { stdio: ['ignore', 'inherit', 'inherit'] },
);
if (py.status !== 0) process.exit(py.status ?? 1);

const t = readFileSync(template);
if (t.readUInt32LE(0) !== 0xa1b2c3d4 || t.readUInt32LE(20) !== 1) {
  throw new Error('template must be a little-endian microsecond Ethernet pcap');
}
interface Rec {
  data: Buffer;
  fromClient: boolean;
}
const recs: Rec[] = [];
for (let o = 24; o + 16 <= t.length; ) {
  const caplen = t.readUInt32LE(o + 8);
  const data = t.subarray(o + 16, o + 16 + caplen);
  recs.push({ data, fromClient: data.readUInt16BE(14 + 20) !== 80 });
  o += 16 + caplen;
}
const clientIp = t.subarray(0, 0); // placeholder for types
void clientIp;
const tmplClient = recs[0]!.data.readUInt32BE(14 + 12);
const tmplServer = recs[0]!.data.readUInt32BE(14 + 16);
const tmplCport = recs[0]!.data.readUInt16BE(14 + 20);

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}
/** RFC 1624: HC' = ~(~HC + ~m + m') over 16-bit words. */
function adjust(check: number, oldWords: number[], newWords: number[]): number {
  let sum = ~check & 0xffff;
  for (let i = 0; i < oldWords.length; i++) sum += (~oldWords[i]! & 0xffff) + newWords[i]!;
  return ~fold(sum) & 0xffff;
}
const words = (ip: number) => [ip >>> 16, ip & 0xffff];

const fd = openSync(out, 'w');
const buf = Buffer.alloc(8 * 1024 * 1024);
let pos = 0;
const flush = () => {
  writeSync(fd, buf, 0, pos);
  pos = 0;
};
const header = Buffer.alloc(24);
header.writeUInt32LE(0xa1b2c3d4, 0);
header.writeUInt16LE(2, 4);
header.writeUInt16LE(4, 6);
header.writeUInt32LE(262144, 16);
header.writeUInt32LE(1, 20);
header.copy(buf, 0);
pos = 24;

const GROUP = 32;
let usec = 1_700_000_000 * 1e6;
let packets = 0;
let bytes = 24;
for (let g = 0; g < streams; g += GROUP) {
  const n = Math.min(GROUP, streams - g);
  for (let r = 0; r < recs.length; r++) {
    const rec = recs[r]!;
    for (let s = g; s < g + n; s++) {
      const client = (0x0a000000 | ((s + 1) & 0xffffff)) >>> 0; // 10.x.y.z
      const server = (0xac100000 | (s % 4093)) >>> 0; // 172.16.x.y
      const cport = 1024 + (s % 60000);
      const len = rec.data.length;
      if (pos + 16 + len > buf.length) flush();
      buf.writeUInt32LE(Math.floor(usec / 1e6), pos);
      buf.writeUInt32LE(usec % 1e6, pos + 4);
      buf.writeUInt32LE(len, pos + 8);
      buf.writeUInt32LE(len, pos + 12);
      const d = pos + 16;
      rec.data.copy(buf, d);
      const src = rec.fromClient ? client : server;
      const dst = rec.fromClient ? server : client;
      const oldSrc = rec.fromClient ? tmplClient : tmplServer;
      const oldDst = rec.fromClient ? tmplServer : tmplClient;
      buf.writeUInt32BE(src, d + 14 + 12);
      buf.writeUInt32BE(dst, d + 14 + 16);
      const ipCheck = buf.readUInt16BE(d + 14 + 10);
      buf.writeUInt16BE(
        adjust(ipCheck, [...words(oldSrc), ...words(oldDst)], [...words(src), ...words(dst)]),
        d + 14 + 10,
      );
      const portOff = d + 14 + 20 + (rec.fromClient ? 0 : 2);
      buf.writeUInt16BE(cport, portOff);
      const tcpCheck = buf.readUInt16BE(d + 14 + 20 + 16);
      buf.writeUInt16BE(
        adjust(
          tcpCheck,
          [...words(oldSrc), ...words(oldDst), tmplCport],
          [...words(src), ...words(dst), cport],
        ),
        d + 14 + 20 + 16,
      );
      pos = d + len;
      usec += 10;
      packets++;
      bytes += 16 + len;
    }
  }
}
flush();
closeSync(fd);
console.log(`${out}: ${streams} TCP streams, ${packets} packets, ${bytes} bytes`);
