#!/usr/bin/env python3
"""The callers' side of scripts/bench-sip: one UDP port that every benchmark call sends its RTP to,
measuring at the receiver how far each packet's arrival lands from its stream's 20 ms grid.

Arrival times are the kernel's receive timestamps (SO_TIMESTAMPNS), taken when the packet is queued
on this socket, so this script's own scheduling on the shared cores does not count against the
server. A stream's grid is read from its RTP timestamps (8 kHz): packet i should arrive at
t0 + (ts_i - ts_0) / 8000 s; t0 is the stream's earliest arrival relative to its timestamps (the
best the receiver can know), so the deviation of a packet is how much later than that it came —
the jitter a phone's playout buffer has to absorb. Sequence gaps count as lost packets.

Usage: rtp-sink.py PORT   then SIGUSR1 starts the window, SIGUSR2 ends it, prints a summary, exits.
"""
import signal
import socket
import struct
import sys

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = 33

port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
except OSError:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
s.bind(("127.0.0.1", port))

state = {"recording": False, "done": False}
# Per SSRC: [first_ts, last_ts, ext_ts, first_seq_ext, last_seq, ext_seq, count, offsets]
streams = {}


def on_start(*_):
    state["recording"] = True


def on_stop(*_):
    state["done"] = True


signal.signal(signal.SIGUSR1, on_start)
signal.signal(signal.SIGUSR2, on_stop)
unpack_hdr = struct.Struct("!HHII").unpack_from
unpack_ts = struct.Struct("qq").unpack_from

while not state["done"]:
    try:
        data, anc, _flags, _addr = s.recvmsg(12, 64)
    except InterruptedError:
        continue
    if not state["recording"] or len(data) < 12 or not anc:
        continue
    sec, nsec = unpack_ts(anc[0][2])
    arrival_us = sec * 1_000_000 + nsec // 1000
    _, seq, ts, ssrc = unpack_hdr(data)
    st = streams.get(ssrc)
    if st is None:
        streams[ssrc] = [ts, ts, 0, seq, seq, 0, 1, [arrival_us]]
        continue
    # Extend the 32-bit timestamp and the 16-bit sequence number across wraps.
    d_ts = (ts - st[1] + (1 << 31)) % (1 << 32) - (1 << 31)
    st[1] = ts
    st[2] += d_ts
    d_seq = (seq - st[4] + (1 << 15)) % (1 << 16) - (1 << 15)
    st[4] = seq
    st[5] += d_seq
    st[6] += 1
    # 8 kHz: one sample is 125 µs.
    st[7].append(arrival_us - st[2] * 125)

deviations = []
received = 0
expected = 0
for st in streams.values():
    offsets = st[7]
    base = min(offsets)
    deviations.extend(o - base for o in offsets)
    received += st[6]
    expected += st[5] + 1
deviations.sort()
n = len(deviations)


def pct(q):
    return deviations[min(n - 1, int(q * n))] / 1000 if n else float("nan")


late = sum(1 for d in deviations if d > 5000)
print(f"receiver: {len(streams)} streams, {received} packets, lost {max(expected - received, 0)} "
      f"({100 * max(expected - received, 0) / max(expected, 1):.3f} %), late (> 5 ms) {late} ({100 * late / max(n, 1):.3f} %)")
print(f"receiver: arrival deviation from each stream's grid: p50 {pct(0.5):.2f} ms, p90 {pct(0.9):.2f} ms, "
      f"p99 {pct(0.99):.2f} ms, p99.9 {pct(0.999):.2f} ms, max {pct(1.0):.2f} ms")
sys.stdout.flush()
