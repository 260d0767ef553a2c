"""The impairment relay (impair.py) on its own: seeded decisions without
sockets, then one short loopback run. Fast (about a second)."""

import socket
import struct
import time

from impair import Direction, ImpairRelay, Impairment, is_rtp_or_rtcp, rewrite_candidates


def rtp(seq):
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, 1) + bytes(160)


STUN = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12)
DTLS = b"\x16\xfe\xfd" + bytes(20)


def run(imp, seed, n=2000, name="a_to_b"):
    d = Direction(imp, seed, name)
    out = [d.handle(rtp(i), i * 0.02) for i in range(n)]
    return d, out


def test_same_seed_same_decisions_other_seed_other_decisions():
    imp = Impairment(loss=0.05, jitter_ms=40, delay_ms=40, duplicate=0.02, reorder=0.02)
    a, out_a = run(imp, 7)
    b, out_b = run(imp, 7)
    c, _ = run(imp, 8)
    assert a.lost == b.lost and out_a == out_b and a.counters == b.counters
    assert a.lost != c.lost
    # The directions of one relay are seeded apart.
    d, _ = run(imp, 7, name="b_to_a")
    assert d.lost != a.lost


def test_random_loss_rate_and_counters():
    d, out = run(Impairment(loss=0.1), 1, n=5000)
    assert 0.08 < d.counters["lost_random"] / 5000 < 0.12
    assert sum(len(o) for o in out) == d.counters["sent"] == 5000 - d.counters["lost_random"]


def test_gilbert_elliott_gives_the_asked_loss_in_bursts():
    d, _ = run(Impairment.burst(0.05, 4.0), 3, n=20000)
    rate = d.counters["lost_burst"] / 20000
    assert 0.035 < rate < 0.065, rate
    runs, prev = [], None  # lengths of consecutive lost-packet runs
    for i in d.lost:
        if runs and i == prev + 1:
            runs[-1] += 1
        else:
            runs.append(1)
        prev = i
    assert 3.0 < sum(runs) / len(runs) < 5.5  # mean burst length near 4 packets


def test_jitter_keeps_order_unless_asked_to_reorder():
    d, out = run(Impairment(delay_ms=40, jitter_ms=40), 5)
    due = [o[0][0] for o in out]
    assert due == sorted(due)
    spread = [t - i * 0.02 for i, t in enumerate(due)]
    assert min(spread) >= 0 and max(spread) <= 0.0801
    d, out = run(Impairment(delay_ms=40, jitter_ms=40, jitter_reorders=True), 5)
    due = [o[0][0] for o in out]
    assert due != sorted(due)
    d, out = run(Impairment(reorder=0.05, reorder_ms=50), 5)
    due = [o[0][0] for o in out]
    assert due != sorted(due) and d.counters["reordered"] > 50


def test_duplicates():
    d, out = run(Impairment(duplicate=0.1), 2)
    assert 150 < d.counters["duplicated"] < 250
    assert sum(len(o) for o in out) == 2000 + d.counters["duplicated"]


def test_stun_and_dtls_pass_untouched_and_uncounted():
    d = Direction(Impairment(loss=1.0, delay_ms=500), 0, "x")
    assert not is_rtp_or_rtcp(STUN) and not is_rtp_or_rtcp(DTLS) and is_rtp_or_rtcp(rtp(0))
    assert d.handle(STUN, 1.0) == [(1.0, STUN)]
    assert d.handle(DTLS, 2.0) == [(2.0, DTLS)]
    assert d.handle(rtp(0), 3.0) == []
    assert d.counters["passthrough"] == 2 and d.counters["packets"] == 1


def test_relay_on_loopback_impairs_each_direction_on_its_own():
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.5)
    relay = ImpairRelay(a_to_b=Impairment(loss=0.5, delay_ms=30), seed=11, max_seconds=10)
    relay.start(a=a.getsockname(), b=b.getsockname())
    try:
        t0 = time.monotonic()
        a.sendto(STUN, relay.a_addr)
        assert b.recvfrom(2048) == (STUN, relay.b_addr)
        assert time.monotonic() - t0 < 0.025  # STUN is not delayed
        for i in range(100):
            a.sendto(rtp(i), relay.a_addr)
            b.sendto(rtp(i), relay.b_addr)
        got_b, got_a = set(), set()
        b.settimeout(0.3)
        a.settimeout(0.3)
        try:
            while True:
                got_b.add(struct.unpack("!H", b.recv(2048)[2:4])[0])
        except socket.timeout:
            pass
        try:
            while True:
                got_a.add(struct.unpack("!H", a.recv(2048)[2:4])[0])
        except socket.timeout:
            pass
    finally:
        relay.close()
    c = relay.counters
    assert len(got_a) == 100 and c["b_to_a"]["lost_random"] == 0
    assert len(got_b) == 100 - c["a_to_b"]["lost_random"]
    assert 25 < c["a_to_b"]["lost_random"] < 75
    # The dropped packets are exactly those the seed decides.
    ref, _ = run(Impairment(loss=0.5, delay_ms=30), 11, n=100)
    assert set(range(100)) - got_b == set(ref.lost)


def test_relay_stops_by_itself():
    relay = ImpairRelay(max_seconds=0.2).start()
    relay._thread.join(timeout=2)
    assert not relay._thread.is_alive()
    relay.close()


def test_rewrite_candidates_points_the_peer_at_the_relay():
    sdp = ("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 40000 UDP/TLS/RTP/SAVPF 111\r\n"
           "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"
           "a=candidate:2 1 tcp 1518280447 127.0.0.1 9 typ host tcptype passive\r\n")
    out = rewrite_candidates(sdp, 5555)
    assert "a=candidate:1 1 udp 2130706431 127.0.0.1 5555 typ host\r\n" in out
    assert "m=audio 5555 " in out and "tcp" not in out
