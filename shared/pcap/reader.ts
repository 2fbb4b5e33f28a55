import { CorruptPcapError } from '../errors.ts';
import { copyBytes } from './address.ts';
import type { AnomalyLog } from './anomalies.ts';

/**
 * Container layer: classic pcap (µs/ns, both byte orders, and the 24-byte-record "modified"
 * variant) and pcapng (sections of either byte order, several IDBs, EPB/SPB/OPB), pushed in
 * chunks of any size. Records are handed out IN PLACE (buffer + offset), never copied on the
 * hot path; only a record that straddles two chunks is assembled in a carry buffer whose size
 * is bounded by our own limits, never by a header field.
 *
 * Damage is recoverable where the format allows: an impossible pcap record header starts a
 * resynchronisation scan (a candidate header is accepted only when the record after it is
 * plausible too), and the bytes between the bad header and the next good one are kept as a
 * repaired record when they fit. pcapng blocks with a broken length are resynchronised the
 * same way on 4-byte boundaries. Every such event is a counted anomaly.
 */

/** Largest captured length we accept for a record (Wireshark's limit too). */
export const MAX_CAPLEN = 262_144;
/** Largest pcapng block we buffer (packet blocks, SHB, IDB); larger unused blocks are skipped
 *  without buffering, larger packet blocks are treated as corrupt. */
const MAX_BUFFERED_BLOCK = MAX_CAPLEN + 65_536;
/** Resync: how far (bytes) a recovered record can reach before we give up repairing it. */
const MAX_REPAIR_GAP = MAX_CAPLEN;

export interface RecordSink {
  /**
   * One packet record. `data[off, off + caplen)` holds the captured bytes; valid only during
   * the call. The reader's `tsSec`/`tsNsec` hold its timestamp (`tsSec` NaN when the record
   * has none: pcapng SPB); passed that way so 32-bit seconds are never boxed per packet.
   */
  record(linkType: number, data: Uint8Array, off: number, caplen: number, origlen: number): void;
}

interface Iface {
  linkType: number;
  snaplen: number;
  /** Timestamp units per second (10^n or 2^n). */
  unitsPerSec: number;
  /** if_tsoffset, seconds. */
  tsOffset: number;
}

const SHB = 0x0a0d0d0a;
const IDB = 0x00000001;
const OPB = 0x00000002;
const SPB = 0x00000003;
const NRB = 0x00000004;
const ISB = 0x00000005;
const EPB = 0x00000006;
const KNOWN_UNUSED_BLOCKS = new Set([
  NRB,
  ISB,
  0x00000007, // IRIG timestamp (obsolete)
  0x00000008, // ARINC 429 (obsolete)
  0x00000009, // systemd journal export
  0x0000000a, // decryption secrets
  0x00000bad, // custom, copyable
  0x40000bad, // custom, not copyable
  0x00000101, // Hone project machine info
  0x00000102, // Hone connection event
  0x80000001, // Sysdig
]);

type Mode = 'magic' | 'pcap-header' | 'pcap' | 'pcap-resync' | 'pcapng' | 'pcapng-resync' | 'done';

function u16be(b: Uint8Array, i: number): number {
  return (b[i]! << 8) | b[i + 1]!;
}
function u16le(b: Uint8Array, i: number): number {
  return b[i]! | (b[i + 1]! << 8);
}
function u32be(b: Uint8Array, i: number): number {
  return ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
}
function u32le(b: Uint8Array, i: number): number {
  return (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24)) >>> 0;
}

export type ContainerFormat = 'pcap' | 'pcapng';

export class CaptureReader {
  format: ContainerFormat | undefined;
  readonly linkTypes: number[] = [];
  /** The stream ended inside a record or block. */
  truncated = false;
  /** Packet records handed to the sink (including repaired ones). */
  records = 0;
  /** Timestamp of the record being handed out. */
  tsSec = 0;
  tsNsec = 0;
  /** Unit index for anomaly samples (records for pcap, blocks for pcapng). */
  #unitIndex = 0;

  readonly #sink: RecordSink;
  readonly #anomalies: AnomalyLog;

  #mode: Mode = 'magic';
  #carry: Uint8Array = new Uint8Array(1024);
  #carryLen = 0;
  /** Bytes needed from the current unit start before parsing can progress. */
  #need = 4;
  /** Bytes still to discard (an unused pcapng block larger than what we buffer). */
  #skip = 0;
  /** Absolute stream offset of the current unit start. */
  #abs = 0;
  #eof = false;

  // classic pcap
  #le = true;
  #nano = false;
  #snaplen = 0;
  #linkType = 0;
  #recHdr = 16;
  // resync (both formats): candidate offset relative to the unit start; whether the unit
  // start is a bad pcap header whose data may be repaired
  #scan = 0;
  #repairable = false;

  // pcapng
  #ngLe = true;
  #ifaces: Iface[] = [];
  #sawShb = false;

  constructor(sink: RecordSink, anomalies: AnomalyLog) {
    this.#sink = sink;
    this.#anomalies = anomalies;
  }

  /** Feed the next chunk. The chunk is only read during the call. */
  push(chunk: Uint8Array): void {
    let off = 0;
    const len = chunk.length;
    while (off < len && this.#mode !== 'done') {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, len - off);
        this.#skip -= n;
        this.#abs += n;
        off += n;
        continue;
      }
      if (this.#carryLen === 0) {
        const stop = this.#parse(chunk, off, len);
        if (this.#skip > 0) {
          off = len;
          continue;
        }
        this.#appendCarry(chunk, stop, len);
        return;
      }
      // complete the unit pending in the carry buffer with just the bytes it needs
      const want = Math.max(this.#need - this.#carryLen, 1);
      const take = Math.min(want, len - off);
      this.#appendCarry(chunk, off, off + take);
      off += take;
      if (this.#carryLen >= this.#need) this.#parseCarry();
    }
  }

  /** The source ended: flush what is pending and account for a cut-short tail. */
  end(): void {
    this.#eof = true;
    if (this.#carryLen > 0 && this.#mode !== 'done') this.#parseCarry();
    if (this.#mode === 'magic' || this.#mode === 'pcap-header') {
      if (this.#abs === 0 && this.#carryLen === 0) {
        throw new CorruptPcapError('empty input: not a pcap or pcapng file', {});
      }
      throw new CorruptPcapError('input ends inside the capture file header', {
        bytes: this.#carryLen,
      });
    }
    if (this.#skip > 0) {
      this.truncated = true;
      this.#anomalies.add('truncated-block', `${this.#skip} bytes of a skipped block missing`);
    } else if (this.#carryLen > 0) {
      this.truncated = true;
      const resync = this.#mode === 'pcap-resync' || this.#mode === 'pcapng-resync';
      if (resync) {
        this.#anomalies.add('trailing-garbage', `${this.#carryLen} unparseable bytes at end`);
      } else if (this.format === 'pcap') {
        this.#anomalies.add(
          'truncated-record',
          `last record cut short: ${this.#carryLen} of ${this.#need} bytes`,
        );
      } else {
        this.#anomalies.add(
          'truncated-block',
          `last block cut short: ${this.#carryLen} of ${this.#need} bytes`,
        );
      }
    }
    this.#carryLen = 0;
    this.#mode = 'done';
  }

  #appendCarry(src: Uint8Array, from: number, to: number): void {
    const n = to - from;
    if (n <= 0) return;
    const needed = this.#carryLen + n;
    if (needed > this.#carry.length) {
      let cap = this.#carry.length;
      while (cap < needed) cap *= 2;
      const grown = new Uint8Array(cap);
      grown.set(this.#carry.subarray(0, this.#carryLen));
      this.#carry = grown;
    }
    copyBytes(src, from, to, this.#carry, this.#carryLen);
    this.#carryLen = needed;
  }

  #parseCarry(): void {
    const stop = this.#parse(this.#carry, 0, this.#carryLen);
    if (this.#skip > 0) {
      this.#carryLen = 0;
      return;
    }
    const rest = this.#carryLen - stop;
    if (rest > 0 && stop > 0) this.#carry.copyWithin(0, stop, this.#carryLen);
    this.#carryLen = rest;
    // keep the carry buffer from staying huge after one big record
    if (this.#carryLen === 0 && this.#carry.length > 4 * MAX_BUFFERED_BLOCK) {
      this.#carry = new Uint8Array(1024);
    }
  }

  /** Parse whole units in buf[pos, end); returns where the first incomplete unit starts. */
  #parse(buf: Uint8Array, pos: number, end: number): number {
    for (;;) {
      switch (this.#mode) {
        case 'magic':
          pos = this.#parseMagic(buf, pos, end);
          if (this.#mode === 'magic') return pos;
          break;
        case 'pcap-header':
          pos = this.#parsePcapHeader(buf, pos, end);
          if (this.#mode === 'pcap-header') return pos;
          break;
        case 'pcap':
          pos = this.#parsePcapRecords(buf, pos, end);
          if (this.#mode === 'pcap') return pos;
          break;
        case 'pcap-resync':
          pos = this.#resyncPcap(buf, pos, end);
          if (this.#mode === 'pcap-resync') return pos;
          break;
        case 'pcapng':
          pos = this.#parseBlocks(buf, pos, end);
          if (this.#mode === 'pcapng' || this.#skip > 0) return pos;
          break;
        case 'pcapng-resync':
          pos = this.#resyncPcapng(buf, pos, end);
          if (this.#mode === 'pcapng-resync') return pos;
          break;
        case 'done':
          return end;
      }
    }
  }

  #parseMagic(buf: Uint8Array, pos: number, end: number): number {
    if (end - pos < 4) {
      this.#need = 4;
      return pos;
    }
    const be = u32be(buf, pos);
    switch (be) {
      case 0xa1b2c3d4:
      case 0xa1b23c4d:
      case 0xa1b2cd34:
        this.#le = false;
        break;
      case 0xd4c3b2a1:
      case 0x4d3cb2a1:
      case 0x34cdb2a1:
        this.#le = true;
        break;
      case SHB:
        this.format = 'pcapng';
        this.#mode = 'pcapng';
        return pos;
      default:
        throw new CorruptPcapError('not a pcap or pcapng file (unknown magic number)', {
          magic: be.toString(16).padStart(8, '0'),
        });
    }
    const m = this.#le ? u32le(buf, pos) : be;
    this.#nano = m === 0xa1b23c4d;
    this.#recHdr = m === 0xa1b2cd34 ? 24 : 16;
    this.format = 'pcap';
    this.#mode = 'pcap-header';
    return pos;
  }

  #parsePcapHeader(buf: Uint8Array, pos: number, end: number): number {
    if (end - pos < 24) {
      this.#need = 24;
      return pos;
    }
    const r32 = this.#le ? u32le : u32be;
    const r16 = this.#le ? u16le : u16be;
    const major = r16(buf, pos + 4);
    const minor = r16(buf, pos + 6);
    if (major !== 2) {
      throw new CorruptPcapError('unsupported pcap version', { version: `${major}.${minor}` });
    }
    this.#snaplen = r32(buf, pos + 16);
    // the upper bits carry FCS information (libpcap's LT_LINKTYPE)
    this.#linkType = r32(buf, pos + 20) & 0x03ffffff;
    this.linkTypes.push(this.#linkType);
    this.#abs += 24;
    this.#mode = 'pcap';
    return pos + 24;
  }

  #parsePcapRecords(buf: Uint8Array, pos: number, end: number): number {
    const le = this.#le;
    const hdr = this.#recHdr;
    const snap = this.#snaplen;
    const fracLimit = this.#nano ? 1_000_000_000 : 1_000_000;
    const fracMul = this.#nano ? 1 : 1000;
    const lt = this.#linkType;
    const sink = this.#sink;
    const anomalies = this.#anomalies;
    for (;;) {
      const avail = end - pos;
      if (avail < hdr) {
        this.#need = hdr;
        return pos;
      }
      let sec: number;
      let frac: number;
      let caplen: number;
      let origlen: number;
      if (le) {
        sec = u32le(buf, pos);
        frac = u32le(buf, pos + 4);
        caplen = u32le(buf, pos + 8);
        origlen = u32le(buf, pos + 12);
      } else {
        sec = u32be(buf, pos);
        frac = u32be(buf, pos + 4);
        caplen = u32be(buf, pos + 8);
        origlen = u32be(buf, pos + 12);
      }
      if (caplen > MAX_CAPLEN) {
        anomalies.packetIndex = this.#unitIndex;
        anomalies.offset = this.#abs;
        anomalies.add(
          'caplen-exceeds-max',
          () => `record captured length ${caplen} > ${MAX_CAPLEN}; resynchronising`,
        );
        this.#mode = 'pcap-resync';
        this.#scan = 1;
        this.#repairable = true;
        return pos;
      }
      const total = hdr + caplen;
      if (avail < total) {
        this.#need = total;
        return pos;
      }
      anomalies.packetIndex = this.#unitIndex;
      anomalies.offset = this.#abs;
      if (caplen > snap && snap > 0) {
        anomalies.add('caplen-exceeds-snaplen', () => `captured ${caplen} > snaplen ${snap}`);
      }
      if (caplen > origlen) {
        anomalies.add('caplen-exceeds-origlen', () => `captured ${caplen} > original ${origlen}`);
      }
      if (frac >= fracLimit) {
        anomalies.add(
          'timestamp-usec-overflow',
          () => `fractional timestamp ${frac} >= ${fracLimit}`,
        );
        const carrySec = Math.floor(frac / fracLimit);
        sec += carrySec;
        frac -= carrySec * fracLimit;
      }
      this.records++;
      this.#unitIndex++;
      this.tsSec = sec;
      this.tsNsec = frac * fracMul;
      sink.record(lt, buf, pos + hdr, caplen, origlen);
      pos += total;
      this.#abs += total;
    }
  }

  #plausiblePcapHeader(buf: Uint8Array, p: number): boolean {
    const r32 = this.#le ? u32le : u32be;
    const caplen = r32(buf, p + 8);
    const origlen = r32(buf, p + 12);
    const limit = this.#snaplen > 0 ? Math.min(this.#snaplen, MAX_CAPLEN) : MAX_CAPLEN;
    if (caplen > limit || caplen === 0 || origlen < caplen || origlen > 0x1000000) return false;
    if (r32(buf, p + 4) >= (this.#nano ? 1_000_000_000 : 1_000_000)) return false;
    return true;
  }

  /**
   * buf[pos] is the unit start: a bad record header (when #repairable) or the first byte not
   * yet ruled out. Candidates are tested at pos + #scan.
   */
  #resyncPcap(buf: Uint8Array, pos: number, end: number): number {
    const hdr = this.#recHdr;
    const r32 = this.#le ? u32le : u32be;
    for (;;) {
      const p = pos + this.#scan;
      if (p + hdr > end) {
        if (this.#eof) {
          // nothing plausible up to the end: all of it is garbage
          this.truncated = true;
          this.#anomalies.add('trailing-garbage', `${end - pos} unparseable bytes at end`);
          this.#abs += end - pos;
          this.#mode = 'done';
          return end;
        }
        this.#need = this.#scan + hdr;
        return pos;
      }
      if (this.#plausiblePcapHeader(buf, p)) {
        const q = p + hdr + r32(buf, p + 8);
        let accept = false;
        if (q + hdr <= end) accept = this.#plausiblePcapHeader(buf, q);
        else if (this.#eof) accept = q === end;
        else {
          this.#need = q + hdr - pos;
          return pos;
        }
        if (accept) {
          const gap = p - pos;
          if (this.#repairable && gap >= hdr) {
            const dataLen = gap - hdr;
            const origlen = r32(buf, pos + 12);
            this.#anomalies.add(
              'record-length-repaired',
              `record with bogus length recovered as ${dataLen} bytes`,
            );
            const sec = r32(buf, pos);
            const frac = r32(buf, pos + 4);
            const ok = dataLen <= MAX_CAPLEN && frac < (this.#nano ? 1e9 : 1e6);
            if (ok) {
              this.records++;
              this.#unitIndex++;
              this.tsSec = sec;
              this.tsNsec = frac * (this.#nano ? 1 : 1000);
              this.#sink.record(
                this.#linkType,
                buf,
                pos + hdr,
                dataLen,
                Math.max(origlen, dataLen) > 0x1000000 ? dataLen : Math.max(origlen, dataLen),
              );
            }
          } else {
            this.#anomalies.add('resync', `skipped ${gap} bytes to the next plausible record`);
          }
          this.#abs += gap;
          this.#mode = 'pcap';
          this.#repairable = false;
          this.#scan = 0;
          return p;
        }
      }
      this.#scan++;
      if (this.#scan > MAX_REPAIR_GAP + 2 * hdr) {
        // too far for a repair: drop the bytes ruled out so far
        const drop = this.#scan;
        if (this.#repairable) {
          this.#anomalies.add('resync', 'bogus record dropped: no plausible record nearby');
        }
        this.#repairable = false;
        this.#abs += drop;
        pos += drop;
        this.#scan = 0;
      }
    }
  }

  // ---------------------------------------------------------------- pcapng

  #parseBlocks(buf: Uint8Array, pos: number, end: number): number {
    const anomalies = this.#anomalies;
    for (;;) {
      const avail = end - pos;
      if (avail < 12) {
        this.#need = 12;
        return pos;
      }
      anomalies.packetIndex = this.#unitIndex;
      anomalies.offset = this.#abs;
      let type = this.#ngLe ? u32le(buf, pos) : u32be(buf, pos);
      if (u32be(buf, pos) === SHB) {
        type = SHB;
        const bom = u32be(buf, pos + 8);
        if (bom === 0x1a2b3c4d) this.#ngLe = false;
        else if (bom === 0x4d3c2b1a) this.#ngLe = true;
        else if (!this.#sawShb) {
          throw new CorruptPcapError('pcapng section header has a bad byte-order magic', {
            byteOrderMagic: bom.toString(16),
          });
        } else {
          anomalies.add('bad-shb', 'section header with bad byte-order magic');
          this.#enterNgResync();
          return pos;
        }
      } else if (!this.#sawShb) {
        throw new CorruptPcapError('pcapng: first block is not a section header', {});
      }
      const r32 = this.#ngLe ? u32le : u32be;
      const len = r32(buf, pos + 4);
      if (len < 12 || len % 4 !== 0) {
        if (!this.#sawShb) {
          throw new CorruptPcapError('pcapng section header has an invalid length', { len });
        }
        anomalies.add('bad-block-length', () => `block type ${hex(type)} length ${len}`);
        this.#enterNgResync();
        return pos;
      }
      const buffered = type === SHB || type === IDB || type === EPB || type === SPB || type === OPB;
      if (buffered) {
        if (len > MAX_BUFFERED_BLOCK) {
          if (!this.#sawShb) {
            throw new CorruptPcapError('pcapng section header is implausibly large', { len });
          }
          anomalies.add('bad-block-length', () => `block type ${hex(type)} length ${len}`);
          this.#enterNgResync();
          return pos;
        }
        if (avail < len) {
          this.#need = len;
          return pos;
        }
        if (r32(buf, pos + len - 4) !== len) {
          if (!this.#sawShb) {
            throw new CorruptPcapError('pcapng section header trailer does not match', { len });
          }
          anomalies.add(
            'bad-block-trailer',
            () => `block type ${hex(type)}: trailing length does not match ${len}`,
          );
          this.#enterNgResync();
          return pos;
        }
        this.#block(type, buf, pos, len);
        this.#unitIndex++;
        this.#abs += len;
        pos += len;
        continue;
      }
      if (!KNOWN_UNUSED_BLOCKS.has(type)) {
        anomalies.add('unknown-block', () => `block type ${hex(type)} (${len} bytes) skipped`);
      }
      this.#unitIndex++;
      if (avail >= len) {
        this.#abs += len;
        pos += len;
        continue;
      }
      // bigger than this buffer: discard without buffering
      this.#skip = len - avail;
      this.#abs += avail;
      return end;
    }
  }

  #enterNgResync(): void {
    this.#mode = 'pcapng-resync';
    this.#scan = 4;
  }

  #block(type: number, buf: Uint8Array, pos: number, len: number): void {
    const le = this.#ngLe;
    const r32 = le ? u32le : u32be;
    const r16 = le ? u16le : u16be;
    const anomalies = this.#anomalies;
    if (type === SHB) {
      const major = r16(buf, pos + 12);
      if (major !== 1) {
        if (!this.#sawShb) {
          throw new CorruptPcapError('unsupported pcapng version', { major });
        }
        anomalies.add('bad-shb', `section version ${major}`);
      }
      this.#sawShb = true;
      this.#ifaces = [];
      return;
    }
    if (type === IDB) {
      if (len < 20) {
        anomalies.add('bad-block-length', 'interface description block too short');
        return;
      }
      const iface: Iface = {
        linkType: r16(buf, pos + 8),
        snaplen: r32(buf, pos + 12),
        unitsPerSec: 1_000_000,
        tsOffset: 0,
      };
      let o = pos + 16;
      const optEnd = pos + len - 4;
      while (o + 4 <= optEnd) {
        const code = r16(buf, o);
        const olen = r16(buf, o + 2);
        if (code === 0) break;
        if (o + 4 + olen > optEnd) {
          anomalies.add('bad-option', 'interface option runs past its block');
          break;
        }
        if (code === 9 && olen >= 1) {
          const v = buf[o + 4]!;
          const exp = v & 0x7f;
          if (v & 0x80) {
            iface.unitsPerSec = exp <= 63 ? 2 ** exp : 1_000_000;
          } else if (exp <= 18) {
            iface.unitsPerSec = 10 ** exp;
          } else {
            anomalies.add('bad-option', `if_tsresol 10^-${exp} unsupported`);
          }
        } else if (code === 14 && olen >= 8) {
          const hi = r32(buf, o + 4 + (le ? 4 : 0)) | 0;
          const lo = r32(buf, o + 4 + (le ? 0 : 4));
          iface.tsOffset = hi * 4294967296 + lo;
        }
        o += 4 + ((olen + 3) & ~3);
      }
      this.#ifaces.push(iface);
      if (!this.linkTypes.includes(iface.linkType)) this.linkTypes.push(iface.linkType);
      return;
    }
    // packet blocks
    let ifId: number;
    let hi = 0;
    let lo = 0;
    let caplen: number;
    let origlen: number;
    let dataOff: number;
    let hasTs = true;
    if (type === EPB || type === OPB) {
      if (len < 32) {
        anomalies.add('bad-block-length', 'packet block too short');
        return;
      }
      ifId = type === EPB ? r32(buf, pos + 8) : r16(buf, pos + 8);
      hi = r32(buf, pos + 12);
      lo = r32(buf, pos + 16);
      caplen = r32(buf, pos + 20);
      origlen = r32(buf, pos + 24);
      dataOff = pos + 28;
    } else {
      // SPB: interface 0, no timestamp, captured length implied
      if (len < 16) {
        anomalies.add('bad-block-length', 'simple packet block too short');
        return;
      }
      ifId = 0;
      hasTs = false;
      origlen = r32(buf, pos + 8);
      dataOff = pos + 12;
      caplen = Math.min(origlen, len - 16);
      const snap = this.#ifaces[0]?.snaplen ?? 0;
      if (snap > 0 && caplen > snap) caplen = snap;
    }
    const room = pos + len - 4 - dataOff;
    if (caplen > room) {
      anomalies.add(
        'caplen-exceeds-block',
        () => `captured length ${caplen} runs past its block (${room} bytes)`,
      );
      caplen = room;
    }
    const iface = this.#ifaces[ifId];
    this.records++;
    if (iface === undefined) {
      anomalies.add(
        'unknown-interface',
        () => `packet on interface ${ifId} that was not described`,
      );
      this.tsSec = Number.NaN;
      this.tsNsec = 0;
      this.#sink.record(-1, buf, dataOff, caplen, origlen);
      return;
    }
    if (caplen > MAX_CAPLEN) anomalies.add('caplen-exceeds-max', `captured ${caplen}`);
    if (iface.snaplen > 0 && caplen > iface.snaplen) {
      anomalies.add(
        'caplen-exceeds-snaplen',
        () => `captured ${caplen} > snaplen ${iface.snaplen}`,
      );
    }
    if (caplen > origlen) {
      anomalies.add('caplen-exceeds-origlen', () => `captured ${caplen} > original ${origlen}`);
    }
    let sec = Number.NaN;
    let nsec = 0;
    if (hasTs) {
      const ups = iface.unitsPerSec;
      if (hi < 0x200000) {
        const v = hi * 4294967296 + lo;
        sec = Math.floor(v / ups);
        const rem = v - sec * ups;
        nsec = ups <= 1e9 && 1e9 % ups === 0 ? rem * (1e9 / ups) : Math.floor((rem * 1e9) / ups);
      } else {
        const v = (BigInt(hi) << 32n) | BigInt(lo);
        const bu = BigInt(ups);
        sec = Number(v / bu);
        nsec = Number(((v % bu) * 1_000_000_000n) / bu);
      }
      sec += iface.tsOffset;
    }
    this.tsSec = sec;
    this.tsNsec = nsec;
    this.#sink.record(iface.linkType, buf, dataOff, caplen, origlen);
  }

  /** 'yes', 'no', or how many bytes from p are needed to decide. */
  #plausibleBlock(buf: Uint8Array, p: number, end: number): 'yes' | 'no' | number {
    if (p + 12 > end) return 12;
    const isShb = u32be(buf, p) === SHB;
    const r32 = this.#ngLe ? u32le : u32be;
    const type = isShb ? SHB : r32(buf, p);
    if (!isShb && type !== EPB && type !== SPB && type !== IDB && type !== OPB && type !== ISB) {
      return 'no';
    }
    let lenLe = this.#ngLe;
    if (isShb) {
      const bom = u32be(buf, p + 8);
      if (bom === 0x1a2b3c4d) lenLe = false;
      else if (bom === 0x4d3c2b1a) lenLe = true;
      else return 'no';
    }
    const len = lenLe ? u32le(buf, p + 4) : u32be(buf, p + 4);
    if (len < 12 || len % 4 !== 0 || len > MAX_BUFFERED_BLOCK) return 'no';
    if (p + len > end) return len;
    const trailer = lenLe ? u32le(buf, p + len - 4) : u32be(buf, p + len - 4);
    return trailer === len ? 'yes' : 'no';
  }

  /** buf[pos] starts bytes already ruled out up to pos + #scan (4-byte steps). */
  #resyncPcapng(buf: Uint8Array, pos: number, end: number): number {
    for (;;) {
      const p = pos + this.#scan;
      const verdict = p + 12 > end ? 12 : this.#plausibleBlock(buf, p, end);
      if (verdict === 'yes') {
        this.#anomalies.add('resync', `skipped ${p - pos} bytes to the next plausible block`);
        this.#abs += p - pos;
        this.#mode = 'pcapng';
        this.#scan = 0;
        return p;
      }
      if (verdict !== 'no') {
        if (this.#eof) {
          if (p + 12 > end) {
            this.truncated = true;
            this.#anomalies.add('trailing-garbage', `${end - pos} unparseable bytes at end`);
            this.#abs += end - pos;
            this.#mode = 'done';
            return end;
          }
          // a candidate that runs past the end is not a block
        } else {
          this.#need = this.#scan + verdict;
          return pos;
        }
      }
      this.#scan += 4;
      if (this.#scan > 65_536) {
        // drop what has been ruled out so the window stays small
        this.#abs += this.#scan;
        pos += this.#scan;
        this.#scan = 0;
      }
    }
  }
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}
