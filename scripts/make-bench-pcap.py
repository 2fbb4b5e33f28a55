#!/usr/bin/python3
"""Write the one-stream template for the pcap benchmark with scapy.

One complete HTTP-like TCP conversation (handshake, GET with Host/User-Agent, six full-size
data segments with ACKs, FIN both ways), about 10 KB of frames. scripts/make-bench-pcap.ts
replicates it into a ~1 GiB capture with a different address/port pair per stream, because
scapy writes only tens of thousands of packets per second.

usage: make-bench-pcap.py OUT.pcap
"""
import sys

from scapy.all import IP, TCP, Ether, Raw, wrpcap

client, server = "10.1.0.1", "10.2.0.1"
cport, sport = 40000, 80
mac_c, mac_s = "02:00:00:00:00:01", "02:00:00:00:00:02"
t = 1_700_000_000.0
pkts = []
cseq, sseq = 1000, 5000


def c2s(flags, payload=b"", dt=0.0001):
    global t
    t += dt
    p = Ether(src=mac_c, dst=mac_s) / IP(src=client, dst=server) / TCP(
        sport=cport, dport=sport, flags=flags, seq=cseq, ack=sseq, window=64240
    )
    if payload:
        p = p / Raw(payload)
    p.time = t
    pkts.append(p)


def s2c(flags, payload=b"", dt=0.0001):
    global t
    t += dt
    p = Ether(src=mac_s, dst=mac_c) / IP(src=server, dst=client) / TCP(
        sport=sport, dport=cport, flags=flags, seq=sseq, ack=cseq, window=65160
    )
    if payload:
        p = p / Raw(payload)
    p.time = t
    pkts.append(p)


# handshake (SYN seq must be the ISN; ack 0)
t += 0.001
syn = Ether(src=mac_c, dst=mac_s) / IP(src=client, dst=server) / TCP(
    sport=cport, dport=sport, flags="S", seq=cseq, window=64240
)
syn.time = t
pkts.append(syn)
cseq += 1
s2c("SA")
sseq += 1
c2s("A")
req = (
    b"GET /download/file.bin HTTP/1.1\r\nHost: bench.example\r\n"
    b"User-Agent: tapline-bench/1.0\r\nAccept: */*\r\n\r\n"
)
c2s("PA", req)
cseq += len(req)
for i in range(6):
    body = bytes([65 + i]) * 1448
    s2c("A" if i < 5 else "PA", body)
    sseq += 1448
    if i % 2 == 1:
        c2s("A")
s2c("FA")
sseq += 1
c2s("A")
c2s("FA")
cseq += 1
s2c("A")
wrpcap(sys.argv[1], pkts)
print(f"template: {len(pkts)} packets, {sum(len(p) for p in pkts)} bytes")
