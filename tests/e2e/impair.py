"""A seeded userspace UDP impairment relay for RTP/RTCP (the QoS lab and tests).

Two peers, A and B, talk through two relay sockets instead of directly:

    A  <-->  [relay.a_port | relay.b_port]  <-->  B

A sends to ``relay.a_addr`` (the relay stands in for B); the relay sends it on
to B from ``relay.b_addr`` (it stands in for A), and the other way round. For
WebRTC, rewrite the ICE candidates: give B the offer with A's candidate port
replaced by ``relay.b_port``, give A the answer with B's replaced by
``relay.a_port`` (``rewrite_candidates`` does that); for plain RTP, put the
relay's port in the SDP c=/m= line the other side sees.

Only RTP and RTCP (first byte 128..191, which covers SRTP/SRTCP) are impaired.
STUN (0..3) and DTLS (20..63) pass at once and untouched, so ICE and the DTLS
handshake still connect.

Each direction has its own ``Impairment``: fixed delay, jitter (uniform like
netem, or normal; reordering or order-keeping), random loss, Gilbert-Elliott
burst loss, explicit reordering, duplication. The decisions for the n-th
RTP/RTCP packet of a direction depend only on the seed, the direction and n:
each packet draws the same number of random numbers whatever happens to it,
so the same seed and the same packets give the same impairment.

Use::

    from impair import Impairment, ImpairRelay
    relay = ImpairRelay(a_to_b=Impairment(loss=0.05, jitter_ms=40), seed=7)
    relay.start(a=("127.0.0.1", 5004), b=("127.0.0.1", 30000))  # or set_peers() later
    ...
    relay.close()
    relay.counters["a_to_b"]   # {"packets": ..., "lost_random": ..., ...}

The relay is a thread (usable from pytest and from asyncio code); it stops on
``close()`` or by itself after ``max_seconds``. The decision logic is
``Direction`` (sans-IO: packets and times in, scheduled packets out), which
the unit tests drive without sockets.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
import re
import select
import socket
import threading
import time


@dataclasses.dataclass(frozen=True)
class Impairment:
    """What one direction does to RTP/RTCP. All probabilities are 0..1."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    # "uniform": delay + U(-jitter, +jitter) (netem's default);
    # "normal": delay + N(0, jitter). Negative totals are clamped to 0.
    jitter_dist: str = "uniform"
    # False: a packet never overtakes an earlier one (queueing jitter);
    # True: each packet keeps its own delay, so jitter reorders.
    jitter_reorders: bool = False
    loss: float = 0.0  # independent random loss
    # Gilbert-Elliott: P(good->bad), P(bad->good) per packet, loss in each state.
    ge_p: float = 0.0
    ge_r: float = 1.0
    ge_loss_good: float = 0.0
    ge_loss_bad: float = 1.0
    # Explicit reordering: this share of packets is held back reorder_ms more
    # (it arrives after packets sent later, whatever jitter_reorders says).
    reorder: float = 0.0
    reorder_ms: float = 40.0
    duplicate: float = 0.0  # this share is sent twice, the copy dup_gap_ms later
    dup_gap_ms: float = 1.0

    @staticmethod
    def burst(mean_loss: float, mean_burst: float) -> "Impairment":
        """A Gilbert-Elliott channel (loss only in the bad state) with the given
        average loss rate and average burst length in packets."""
        r = 1.0 / mean_burst
        p = r * mean_loss / (1.0 - mean_loss)
        return Impairment(ge_p=p, ge_r=r)

    def is_clean(self) -> bool:
        return self == Impairment()


CLEAN = Impairment()


def is_rtp_or_rtcp(datagram: bytes) -> bool:
    """RFC 7983 demultiplexing: 128..191 is RTP/RTCP (or SRTP/SRTCP)."""
    return len(datagram) > 0 and 128 <= datagram[0] <= 191


class Direction:
    """The seeded decisions for one direction, sans-IO.

    ``handle(datagram, now)`` returns ``[(due, datagram), ...]``: when to send
    what (nothing when the packet is lost, two entries for a duplicate)."""

    DRAWS = 7  # random numbers each RTP/RTCP packet consumes, whatever its fate

    def __init__(self, imp: Impairment, seed, name: str):
        self.imp = imp
        self.rng = random.Random(f"{seed}/{name}")
        self.bad = False
        self.last_due = 0.0
        self.index = 0
        self.counters = dict(packets=0, passthrough=0, sent=0, lost_random=0, lost_burst=0,
                             reordered=0, duplicated=0, bytes=0)
        # Which RTP/RTCP packet indices were dropped (for reproducibility checks).
        self.lost = []
        # RTP packets by payload type (the header is in the clear in SRTP).
        self.payload_types = {}

    def handle(self, datagram: bytes, now: float):
        if not is_rtp_or_rtcp(datagram):
            self.counters["passthrough"] += 1
            return [(now, datagram)]
        imp, c = self.imp, self.counters
        c["packets"] += 1
        c["bytes"] += len(datagram)
        pt = datagram[1] & 0x7F
        if not 64 <= pt <= 95:  # RTCP (RFC 5761) otherwise
            self.payload_types[pt] = self.payload_types.get(pt, 0) + 1
        u = [self.rng.random() for _ in range(self.DRAWS)]
        n = self.index
        self.index += 1
        # Gilbert-Elliott state for this packet, then loss in that state.
        if self.bad:
            self.bad = u[0] >= imp.ge_r
        else:
            self.bad = u[0] < imp.ge_p
        if u[1] < imp.loss:
            c["lost_random"] += 1
            self.lost.append(n)
            return []
        if u[2] < (imp.ge_loss_bad if self.bad else imp.ge_loss_good):
            c["lost_burst"] += 1
            self.lost.append(n)
            return []
        if imp.jitter_dist == "normal":
            # Box-Muller from two uniforms keeps the draw count fixed.
            z = math.sqrt(-2.0 * math.log(max(u[3], 1e-12))) * math.cos(2 * math.pi * u[4])
            j = imp.jitter_ms * z
        else:
            j = imp.jitter_ms * (2.0 * u[3] - 1.0)
        due = now + max(0.0, imp.delay_ms + j) / 1000.0
        if not imp.jitter_reorders:
            due = max(due, self.last_due)
        if u[5] < imp.reorder:
            c["reordered"] += 1
            out = [(due + imp.reorder_ms / 1000.0, datagram)]
        else:
            self.last_due = due
            out = [(due, datagram)]
        if u[6] < imp.duplicate:
            c["duplicated"] += 1
            out.append((out[0][0] + imp.dup_gap_ms / 1000.0, datagram))
        c["sent"] += len(out)
        return out


class ImpairRelay:
    """Two UDP sockets on `host` relaying between peers A and B with a seeded
    ``Impairment`` each way (see the module docs). A thread; bounded."""

    def __init__(self, a_to_b: Impairment = CLEAN, b_to_a: Impairment = CLEAN, seed=0,
                 host: str = "127.0.0.1", max_seconds: float = 300.0):
        self.sock_a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock_b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for s in (self.sock_a, self.sock_b):
            s.bind((host, 0))
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.a_addr = self.sock_a.getsockname()  # where A sends (B's stand-in)
        self.b_addr = self.sock_b.getsockname()  # where B sends (A's stand-in)
        self.a_port, self.b_port = self.a_addr[1], self.b_addr[1]
        self.dirs = {"a_to_b": Direction(a_to_b, seed, "a_to_b"), "b_to_a": Direction(b_to_a, seed, "b_to_a")}
        self.peer_a = None
        self.peer_b = None
        self.max_seconds = max_seconds
        self._stop = threading.Event()
        self._thread = None
        self._queue = []  # (due, order, socket, destination, datagram)
        self._order = 0
        self._lock = threading.Lock()

    @property
    def counters(self):
        return {k: dict(d.counters) for k, d in self.dirs.items()}

    def set_peers(self, a=None, b=None):
        """The real addresses of A and B. Either may be left out: the relay
        then latches onto the first sender on that side."""
        with self._lock:
            if a is not None:
                self.peer_a = tuple(a)
            if b is not None:
                self.peer_b = tuple(b)

    def start(self, a=None, b=None):
        self.set_peers(a, b)
        self._thread = threading.Thread(target=self._run, name="impair-relay", daemon=True)
        self._thread.start()
        return self

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sock_a.close()
        self.sock_b.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _run(self):
        end = time.monotonic() + self.max_seconds
        socks = [self.sock_a, self.sock_b]
        while not self._stop.is_set():
            now = time.monotonic()
            if now > end:
                break
            while self._queue and self._queue[0][0] <= now:
                _, _, sock, dest, data = heapq.heappop(self._queue)
                try:
                    sock.sendto(data, dest)
                except OSError:
                    pass  # a peer gone away: like a lossy network, drop
            timeout = 0.05 if not self._queue else max(0.0, self._queue[0][0] - now)
            ready, _, _ = select.select(socks, [], [], min(timeout, 0.05))
            now = time.monotonic()
            for s in ready:
                for _ in range(64):  # bounded drain per wake-up
                    try:
                        data, src = s.recvfrom(65535)
                    except (BlockingIOError, OSError):
                        break
                    self._relay(s, data, src, now)

    def _relay(self, s, data, src, now):
        with self._lock:
            if s is self.sock_a:
                if self.peer_a is None:
                    self.peer_a = src
                direction, out, dest = self.dirs["a_to_b"], self.sock_b, self.peer_b
            else:
                if self.peer_b is None:
                    self.peer_b = src
                direction, out, dest = self.dirs["b_to_a"], self.sock_a, self.peer_a
        if dest is None:
            return  # the other side is not known yet
        for due, d in direction.handle(data, now):
            self._order += 1
            heapq.heappush(self._queue, (due, self._order, out, dest, d))


def rewrite_candidates(sdp: str, port: int, host: str = "127.0.0.1") -> str:
    """Points every UDP host candidate (and the m=/c= lines) of `sdp` at the
    relay's `port`, so that the other peer sends through the relay."""
    sdp = re.sub(r"(a=candidate:\S+ \d+ [Uu][Dd][Pp] \d+ )\S+ \d+( typ host)",
                 lambda m: f"{m.group(1)}{host} {port}{m.group(2)}", sdp)
    sdp = re.sub(r"^(m=audio )\d+", lambda m: f"{m.group(1)}{port}", sdp, flags=re.M)
    sdp = re.sub(r"^c=IN IP4 \S+", f"c=IN IP4 {host}", sdp, flags=re.M)
    # Drop candidates of other kinds (TCP, srflx, relay): only the host one is relayed.
    return "".join(line for line in sdp.splitlines(True)
                   if not line.startswith("a=candidate:") or " typ host" in line and " udp " in line.lower())
