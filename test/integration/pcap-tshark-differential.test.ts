import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CorruptPcapError } from '../../shared/errors.ts';
import { diff, runOurs, runTshark } from './pcap-tshark-oracle.ts';

/**
 * Differential test: every capture in the shared corpus (../shared/corpus, see MANIFEST.tsv)
 * through our decoder and through tshark. Conversations (TCP/UDP, packets and bytes each way,
 * exact original frame lengths aggregated from tshark's per-frame fields and cross-checked
 * against its `-z conv` tables), DNS query names, TLS SNI and HTTP request hosts must agree
 * exactly, except for
 * the differences listed below, each explained and each asserted verbatim (a new or a vanished
 * difference fails the test).
 */

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const corpus = process.env.TAPLINE_CORPUS ?? resolve(repo, '../shared/corpus');
const manifestPath = join(corpus, 'MANIFEST.tsv');

interface Explained {
  why: string;
  diffs: string[];
}

const EXPLAINED: Record<string, Explained> = {
  'derived_bogus_incl_len.pcap': {
    why:
      'Record 6 claims incl_len 0x7fffffff. tshark gives up there ("bigger than maximum of 262144") ' +
      'and reports only the first 5 packets. We flag caplen-exceeds-max, resynchronise on the next ' +
      'header whose successor is also plausible, recover record 6 itself (66 bytes, ' +
      'record-length-repaired) and read the remaining 39 records: the two other TLS sessions and ' +
      'their SNIs exist only on our side.',
    diffs: [
      'conv only in ours: tcp 10.0.0.1#55305 212.199.219.221#443 [0] 10/987 10/4496',
      'conv only in ours: tcp 2601:647:4b02:1d20:e4a1:6dfa:6f66:e399#50553 2607:f8b0:4005:802::2003#443 [0] 9/1470 10/3540',
      'sni "ssl.gstatic.com": ours 1 tshark 0',
      'sni "www.gstatic.com": ours 1 tshark 0',
      'totals: ours 44 packets/12207 bytes, tshark 5/1714',
    ],
  },
  'ipv4_fragments.pcap': {
    why:
      'IP reassembly. Six NFS-over-UDP datagrams are fragmented (6 fragments each; the first ' +
      'fragment of three of them was captured twice). tshark reassembles and counts each datagram ' +
      'once, on the frame that completes it (the 954-byte last fragment): 6 packets / 5724 bytes. ' +
      'We do not reassemble: the UDP header is in the first fragment, so the conversation counts ' +
      'first fragments (1514 bytes), 9 of them including the 3 duplicates; later fragments are ' +
      'counted under protocols["ip-fragment"].',
    diffs: [
      'conv differs: udp 10.118.213.211#2049 10.118.213.212#789 [0] ours 9/13626 3/534 tshark 6/5724 3/534',
    ],
  },
  'pcapng_be_all_blocks.pcapng': {
    why:
      'tshark 4.0 lists the three pcapng Custom Blocks (types 0x00000BAD/0x40000BAD; 24, 60 and 32 ' +
      'bytes) as frames of protocol "PCAPNG". They carry no packet; we skip them (known, unused).',
    diffs: ['totals: ours 5 packets/1480 bytes, tshark 8/1596'],
  },
  'pcapng_multi_shb_mixed_endian.pcapng': {
    why: 'Same as pcapng_be_all_blocks: three Custom Blocks that tshark counts as frames.',
    diffs: ['totals: ours 8 packets/2304 bytes, tshark 11/2420'],
  },
  'tcp_unidir_missing_pkt.pcap': {
    why:
      'TCP reassembly. The first POST (frame 3) spans segments and the segment after it was not ' +
      'captured ("previous segment not captured"), so tshark never completes that HTTP request ' +
      'and reports only the second POST. We read request heads from the segment that starts ' +
      'them, so both POSTs (same Host) are listed: a responder sees the attempt that was cut.',
    diffs: ['http host "service.zap.co.il": ours 2 tshark 1'],
  },
  'unknown_linktype_281.pcap': {
    why:
      'tshark refuses the whole file ("network type 281 unknown or unsupported"). We read all 23 ' +
      'records (packets and bytes counted) and flag each as unsupported-link-type.',
    diffs: ['totals: ours 23 packets/4082 bytes, tshark 0/0'],
  },
};

/** Every file's anomalies, exactly (files not listed must have none). */
const ANOMALIES: Record<string, Record<string, number>> = {
  'bad_ipv4_version_snaplen34.pcap': { 'bad-ip-version': 1 },
  'derived_bogus_incl_len.pcap': { 'caplen-exceeds-max': 1, 'record-length-repaired': 1 },
  'derived_cut_mid_record.pcap': { 'truncated-record': 1 },
  'derived_pcapng_cut_mid_block.pcapng': { 'truncated-block': 1 },
  'ipv4_bad_total_length.pcap': { 'bad-ipv4-total-length': 1 },
  // 39 bytes after Ethernet: the IPv6 header itself does not fit a frame that was not cut by a snaplen
  'ipv6_bad_payload_length.pcap': { 'truncated-ip-header': 1 },
  'pcapng_with_pcap_extension.pcap': { 'bad-ipv4-total-length': 1, 'bad-ip-version': 1 },
  'ts_usec_over_1e6.pcap': { 'timestamp-usec-overflow': 2 },
  'unknown_linktype_281.pcap': { 'unsupported-link-type': 23 },
  'usec_be_netlink.pcap': { 'unsupported-link-type': 13 },
};

/** Files tshark itself cannot read to the end (it reports the error; we must not throw). */
const TSHARK_FAILS = new Set([
  'derived_bogus_incl_len.pcap',
  'derived_cut_mid_record.pcap',
  'derived_pcapng_cut_mid_block.pcapng',
  'unknown_linktype_281.pcap',
]);
const TRUNCATED = new Set(['derived_cut_mid_record.pcap', 'derived_pcapng_cut_mid_block.pcapng']);

function haveTools(): boolean {
  try {
    execFileSync('tshark', ['--version'], { stdio: 'ignore' });
    return existsSync(manifestPath);
  } catch {
    return false;
  }
}

const available = haveTools();
if (!available && process.env.CI) {
  throw new Error(`tshark and the corpus (${manifestPath}) are required in CI`);
}

const rows = available
  ? readFileSync(manifestPath, 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split('\t'))
      .map(([file, , , , format, endian]) => ({ file: file!, format: format!, endian: endian! }))
  : [];

describe.skipIf(!available)('pcap decoder vs tshark on the shared corpus', () => {
  it('covers every file in the corpus and every explanation refers to a corpus file', () => {
    expect(rows.length).toBeGreaterThanOrEqual(30);
    const names = new Set(rows.map((r) => r.file));
    for (const f of [...Object.keys(EXPLAINED), ...Object.keys(ANOMALIES), ...TSHARK_FAILS]) {
      expect(names.has(f), f).toBe(true);
    }
  });

  it.each(rows)('$file', async ({ file, format }) => {
    const path = join(corpus, file);
    const theirs = runTshark(path);
    const ours = await runOurs(path);

    expect(theirs.ok, theirs.stderr).toBe(!TSHARK_FAILS.has(file));
    expect(diff(ours, theirs)).toEqual(EXPLAINED[file]?.diffs ?? []);
    expect(ours.anomalies).toEqual(ANOMALIES[file] ?? {});
    expect(ours.truncated).toBe(TRUNCATED.has(file));
    const expectFormat = format === 'pcapng' ? 'pcapng' : 'pcap';
    expect(ours.format).toBe(expectFormat);
    // every anomaly count has samples that say where
    for (const kind of Object.keys(ours.anomalies)) {
      expect(ours.anomalySamples.some((s) => s.kind === kind)).toBe(true);
    }
  });

  it('the same answer whatever the chunk size (1 byte, odd, whole file)', async () => {
    for (const file of [
      'dns_packets.pcap',
      'pcapng_multi_shb_mixed_endian.pcapng',
      'derived_bogus_incl_len.pcap',
    ]) {
      const path = join(corpus, file);
      const whole = await runOurs(path, 1 << 24);
      for (const size of [1, 7, 4093]) {
        expect(await runOurs(path, size)).toEqual(whole);
      }
    }
  });

  it('a file that is not a capture is a CorruptPcapError, never a silent empty result', async () => {
    await expect(runOurs(manifestPath)).rejects.toBeInstanceOf(CorruptPcapError);
  });
});
