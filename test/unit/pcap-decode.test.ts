import { describe, expect, it } from 'vitest';
import { analyzePcap } from '../../shared/pcap/index.ts';
import {
  ACK,
  ascii,
  chunks,
  clientHello,
  concat,
  dnsQuery,
  eth,
  ethVlan,
  ext8,
  FIN,
  fragHeader,
  geneve,
  ipv4,
  ipv6,
  PSH,
  pcap,
  RST,
  SYN,
  tcp,
  tcp4,
  udp,
  udp4,
  vxlan,
} from './pcap-frames.ts';

async function analyze(frames: Uint8Array[], linkType = 1) {
  return analyzePcap(
    chunks(
      pcap(
        frames.map((data) => ({ data })),
        { linkType },
      ),
      17,
    ),
  );
}

describe('link layers', () => {
  const ipPacket = ipv4('192.0.2.1', '192.0.2.2', 17, udp(5000, 6000, ascii('hi')));
  const ip6Packet = ipv6('2001:db8::1', '2001:db8::2', 17, udp(5000, 6000, ascii('hi')));
  it.each([
    ['Ethernet (1)', 1, eth(0x0800, ipPacket)],
    ['raw IP (101)', 101, ipPacket],
    ['raw IPv4 (228)', 228, ipPacket],
    ['raw IPv6 (229)', 229, ip6Packet],
    [
      'Linux cooked v1 (113)',
      113,
      concat(Uint8Array.of(0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 8, 0), ipPacket),
    ],
    [
      'Linux cooked v2 (276)',
      276,
      concat(Uint8Array.of(8, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0), ipPacket),
    ],
    ['BSD loopback (0), host order', 0, concat(Uint8Array.of(2, 0, 0, 0), ipPacket)],
    ['BSD loopback (0), IPv6 family 30', 0, concat(Uint8Array.of(30, 0, 0, 0), ip6Packet)],
    ['OpenBSD loopback (108), network order', 108, concat(Uint8Array.of(0, 0, 0, 2), ipPacket)],
  ])('%s', async (_name, linkType, frame) => {
    const r = await analyze([frame], linkType);
    expect(r.anomalies).toEqual({});
    expect(r.conversations).toHaveLength(1);
    expect(r.conversations[0]).toMatchObject({
      protocol: 'udp',
      a: { port: 5000 },
      b: { port: 6000 },
    });
  });

  it('802.1Q and 802.1ad stacks are walked; an absurd stack is an anomaly', async () => {
    const inner = ipv4('10.0.0.1', '10.0.0.2', 17, udp(1, 2, ascii('x')));
    const r = await analyze([
      ethVlan([[0x8100, 10]], 0x0800, inner),
      ethVlan(
        [
          [0x88a8, 100],
          [0x8100, 10],
        ],
        0x0800,
        inner,
      ),
      ethVlan(
        Array.from({ length: 12 }, () => [0x8100, 1] as [number, number]),
        0x0800,
        inner,
      ),
    ]);
    expect(r.protocols.vlan).toBe(1 + 2 + 8);
    expect(r.conversations[0]!.packetsAtoB).toBe(2);
    expect(r.anomalies).toEqual({ 'vlan-depth-exceeded': 1 });
  });

  it('an unknown link type is counted per packet as an anomaly', async () => {
    const r = await analyze([Uint8Array.of(1, 2, 3)], 281);
    expect(r.anomalies).toEqual({ 'unsupported-link-type': 1 });
    expect(r.packets).toBe(1);
  });
});

describe('IP layer', () => {
  it('IPv6 extension headers are skipped to the transport header', async () => {
    const r = await analyze([
      eth(
        0x86dd,
        ipv6('2001:db8::1', '2001:db8::2', 6, tcp(1234, 443, SYN), [
          [0, ext8()],
          [60, ext8()],
        ]),
      ),
    ]);
    expect(r.conversations).toMatchObject([
      { protocol: 'tcp', a: { addr: '2001:db8::1', port: 1234 }, b: { port: 443 } },
    ]);
    expect(r.anomalies).toEqual({});
  });

  it('fragments are counted, not reassembled: the first carries the ports, the rest only count', async () => {
    const payload = udp(53, 5353, new Uint8Array(64), 8 + 200);
    const r = await analyze([
      eth(0x0800, ipv4('10.0.0.1', '10.0.0.2', 17, payload, { moreFragments: true })),
      eth(0x0800, ipv4('10.0.0.1', '10.0.0.2', 17, new Uint8Array(64), { fragOffset: 9 })),
      eth(
        0x86dd,
        ipv6('2001:db8::1', '2001:db8::2', 17, udp(1, 2, new Uint8Array(16), 100), [
          [44, fragHeader(0, true)],
        ]),
      ),
      eth(
        0x86dd,
        ipv6('2001:db8::1', '2001:db8::2', 17, new Uint8Array(16), [[44, fragHeader(5, false)]]),
      ),
    ]);
    expect(r.protocols['ip-fragment']).toBe(4);
    expect(r.conversations.map((c) => c.protocol)).toEqual(['udp', 'udp']);
    expect(r.anomalies).toEqual({}); // a first fragment's UDP length legitimately exceeds it
  });

  it('bad header lengths and versions are typed anomalies', async () => {
    const r = await analyze([
      eth(0x0800, ipv4('10.0.0.1', '10.0.0.2', 6, tcp(1, 2, SYN), { ihl: 3 })),
      eth(0x0800, ipv4('10.0.0.1', '10.0.0.2', 6, tcp(1, 2, SYN), { totalLength: 9000 })),
      eth(0x0800, ipv4('10.0.0.1', '10.0.0.2', 6, tcp(1, 2, SYN), { version: 5 })),
      eth(0x86dd, ipv6('2001:db8::1', '2001:db8::2', 17, udp(1, 2, ascii('x')), [], 4000)),
      eth(0x0800, ipv4('10.0.0.1', '10.0.0.2', 6, tcp(1, 2, SYN, undefined, 0, 3))),
      eth(0x0800, ipv4('10.0.0.1', '10.0.0.2', 17, udp(1, 2, ascii('x'), 4))),
    ]);
    expect(r.anomalies).toEqual({
      'bad-ipv4-header-length': 1,
      'bad-ipv4-total-length': 1,
      'bad-ip-version': 1,
      'bad-ipv6-payload-length': 1,
      'bad-tcp-header-length': 1,
      'bad-udp-length': 1,
    });
  });
});

describe('tunnels (Traffic Mirroring delivers VXLAN; GENEVE from gateway load balancers)', () => {
  it('VXLAN and GENEVE are decapsulated: inner and outer conversations both counted', async () => {
    const inner = eth(0x0800, ipv4('172.31.0.5', '172.31.0.6', 6, tcp(50000, 443, SYN)));
    const r = await analyze([
      eth(0x0800, ipv4('10.0.0.1', '10.0.0.2', 17, udp(40000, 4789, vxlan(7, inner)))),
      eth(0x0800, ipv4('10.0.0.1', '10.0.0.3', 17, udp(40001, 6081, geneve(0x6558, inner, 2)))),
      eth(
        0x0800,
        ipv4('10.0.0.1', '10.0.0.3', 17, udp(40001, 6081, geneve(0x0800, inner.subarray(14)))),
      ),
    ]);
    expect(r.protocols).toMatchObject({ vxlan: 1, geneve: 2 });
    const tcpConv = r.conversations.find((c) => c.protocol === 'tcp')!;
    expect(tcpConv).toMatchObject({ a: { addr: '172.31.0.5', port: 50000 }, packetsAtoB: 3 });
    expect(r.conversations.filter((c) => c.protocol === 'udp')).toHaveLength(2);
  });

  it('tunnels nested beyond the limit stop with an anomaly', async () => {
    let frame = eth(0x0800, ipv4('1.1.1.1', '2.2.2.2', 6, tcp(1, 2, SYN)));
    for (let i = 0; i < 6; i++)
      frame = eth(0x0800, ipv4('10.0.0.1', '10.0.0.2', 17, udp(1000 + i, 4789, vxlan(i, frame))));
    const r = await analyze([frame]);
    expect(r.anomalies['tunnel-depth-exceeded']).toBe(1);
  });
});

describe('conversations', () => {
  it('A is the first sender; packets/bytes each way; flags; Community ID; port reuse makes a new stream', async () => {
    const c = '10.1.1.1';
    const s = '10.2.2.2';
    const r = await analyze([
      tcp4(c, s, 40000, 80, SYN, undefined, 100),
      tcp4(s, c, 80, 40000, SYN | ACK),
      tcp4(c, s, 40000, 80, ACK | PSH, ascii('GET / HTTP/1.1\r\nHost: a\r\n\r\n')),
      tcp4(c, s, 40000, 80, FIN | ACK),
      tcp4(s, c, 80, 40000, FIN | ACK),
      tcp4(c, s, 40000, 80, SYN, undefined, 9999), // new connection, same tuple
      tcp4(s, c, 80, 40000, RST | ACK),
    ]);
    expect(r.streams).toBe(2);
    expect(r.conversations).toHaveLength(2);
    const [first, second] = r.conversations;
    expect(first).toMatchObject({
      a: { addr: c, port: 40000 },
      b: { addr: s, port: 80 },
      packetsAtoB: 3,
      packetsBtoA: 2,
      streamIndex: 0,
    });
    expect(first!.tcpFlags).toEqual(['SYN', 'ACK', 'FIN', 'PSH']);
    expect(second).toMatchObject({
      packetsAtoB: 1,
      packetsBtoA: 1,
      streamIndex: 1,
      tcpFlags: ['SYN', 'ACK', 'RST'],
    });
    expect(first!.communityId).toBe(second!.communityId);
    expect(r.http).toMatchObject([{ method: 'GET', host: 'a', path: '/' }]);
  });

  it('port 0 TCP/UDP packets are listed; ICMP is not port-0 traffic', async () => {
    const r = await analyze([
      tcp4('10.0.0.1', '10.0.0.2', 0, 80, SYN),
      udp4('10.0.0.1', '10.0.0.2', 5000, 0, ascii('x')),
      eth(0x0800, ipv4('10.0.0.1', '10.0.0.2', 1, Uint8Array.of(8, 0, 0, 0, 0, 1, 0, 1))),
    ]);
    expect(r.portZero.map((p) => [p.protocol, p.sport, p.dport])).toEqual([
      ['tcp', 0, 80],
      ['udp', 5000, 0],
    ]);
    expect(r.conversations.map((x) => x.protocol).sort()).toEqual(['icmp', 'tcp', 'udp']);
  });

  it('the conversation limit drops and counts, never grows without bound', async () => {
    const frames = Array.from({ length: 50 }, (_, i) =>
      udp4('10.0.0.1', '10.0.0.2', 1000 + i, 53, dnsQuery(i, 'a.example')),
    );
    const r = await analyzePcap(chunks(pcap(frames.map((data) => ({ data })))), {
      limits: { maxConversations: 10, maxRecords: 5 },
    });
    expect(r.conversations).toHaveLength(10);
    expect(r.dropped).toMatchObject({ conversations: 40, dns: 45 });
    expect(r.anomalies['conversation-limit']).toBe(40);
    expect(r.dns).toHaveLength(5);
  });
});

describe('indicators', () => {
  it('DNS over UDP and TCP (also split across segments), with answers', async () => {
    const q = dnsQuery(0x1234, 'evil.example.com');
    const resp = Uint8Array.from(q);
    resp[2] = 0x81;
    resp[3] = 0x80;
    resp[7] = 1; // ANCOUNT 1
    const answer = Uint8Array.of(0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 7);
    const response = concat(resp, answer);
    const len = (m: Uint8Array) => Uint8Array.of(m.length >> 8, m.length & 255);
    const tcpMsg = concat(len(q), q);
    const r = await analyze([
      udp4('10.0.0.1', '10.0.0.53', 33333, 53, q),
      udp4('10.0.0.53', '10.0.0.1', 53, 33333, response),
      tcp4('10.0.0.1', '10.0.0.53', 44444, 53, PSH | ACK, tcpMsg, 1000),
      tcp4('10.0.0.1', '10.0.0.53', 44445, 53, PSH | ACK, tcpMsg.subarray(0, 1), 500),
      tcp4('10.0.0.1', '10.0.0.53', 44445, 53, PSH | ACK, tcpMsg.subarray(1), 501),
    ]);
    expect(r.dns.map((d) => [d.transport, d.qname, d.isResponse])).toEqual([
      ['udp', 'evil.example.com', false],
      ['udp', 'evil.example.com', true],
      ['tcp', 'evil.example.com', false],
      ['tcp', 'evil.example.com', false],
    ]);
    expect(r.dns[1]).toMatchObject({
      rcode: 'NOERROR',
      answers: ['203.0.113.7'],
      qtype: 'A',
      id: 0x1234,
    });
  });

  it('a DNS compression loop is a bad-dns anomaly, not a hang', async () => {
    const loop = Uint8Array.of(0, 1, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1);
    const r = await analyze([udp4('10.0.0.1', '10.0.0.53', 1, 53, loop)]);
    expect(r.anomalies).toEqual({ 'bad-dns': 1 });
  });

  it('TLS ClientHello: SNI, highest supported version, ALPN; also when split across segments', async () => {
    const hello = clientHello('secret.example.net', ['h2', 'http/1.1'], [0x0a0a, 0x0304, 0x0303]);
    const r = await analyze([
      tcp4('10.0.0.1', '10.0.0.2', 50000, 443, PSH | ACK, hello, 1),
      tcp4('10.0.0.1', '10.0.0.2', 50001, 8443, PSH | ACK, hello.subarray(0, 20), 1),
      tcp4('10.0.0.1', '10.0.0.2', 50001, 8443, PSH | ACK, hello.subarray(20), 21),
      tcp4('10.0.0.1', '10.0.0.2', 50002, 443, PSH | ACK, clientHello('legacy.example'), 1),
    ]);
    expect(r.tls.map((t) => [t.sni, t.version, t.alpn, t.dport])).toEqual([
      ['secret.example.net', 'TLS 1.3', ['h2', 'http/1.1'], 443],
      ['secret.example.net', 'TLS 1.3', ['h2', 'http/1.1'], 8443],
      ['legacy.example', 'TLS 1.2', [], 443],
    ]);
  });
});
