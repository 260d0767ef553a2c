"""Hardening under abuse (issue 15): what a careless or hostile client on
loopback can do to the SIP TCP listener and the HTTP API, against the real
binary. Each test failed before its fix:

- descriptors used up by idle clients: no accept loop spins, the log stays
  small, and once they leave the gateway serves again;
- HTTP: silent, slow and oversized clients get closed, 408, 413, 431; at
  most http.max_connections are served at once;
- SIP over TCP: idle and half-sent connections are closed, a message too
  large gets 513 before the close, 1000 pipelined requests from a client
  that reads late all get answers (nothing dropped), sources outside
  sip.allowed_sources and connections beyond sip.max_connections are
  closed at once and counted;
- media: a stranger sending RTP to a call's port right after the answer
  gets nothing and takes nothing (it took the call's audio); a phone behind
  NAT, whose SDP names an address it does not send from, is still heard
  and answered; ports are not handed out in order;
- admission by headroom: without it, new calls and OPTIONS get 503 with
  Retry-After, the reason is logged once and rtcgw_overloaded says so."""

import re
import resource
import socket
import threading
import time

import rtp_tools
from conftest import free_port
from legacy_peer import plain_call


def options(n, lport, host="127.0.0.1"):
    return (f"OPTIONS sip:rtcgw@{host} SIP/2.0\r\nVia: SIP/2.0/TCP {host}:{lport};branch=z9hG4bKlim{n}\r\n"
            f"From: <sip:py@{host}>;tag=l{n}\r\nTo: <sip:rtcgw@{host}>\r\nCall-ID: lim{n}@py\r\n"
            f"CSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")


def sip_tcp(gw):
    return socket.create_connection(("127.0.0.1", gw.sip_port), timeout=5)


def closed_within(sock, seconds):
    """Whether the peer closes `sock` within `seconds` (data is skipped)."""
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if sock.recv(65536) == b"":
                return True
    except (socket.timeout, TimeoutError):
        return False
    except OSError:
        return True
    return False


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / __import__("os").sysconf("SC_CLK_TCK")


def fds(pid):
    import os
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_descriptors_used_up_neither_spin_nor_flood_the_log(gateway_factory):
    # A low hard limit the gateway cannot raise; HTTP clients that keep
    # their connections hold every descriptor left.
    gw = gateway_factory(http_extra="header_timeout_s = 60\n",
                         preexec=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)))
    idle = []
    try:
        for _ in range(400):
            try:
                idle.append(socket.create_connection(("127.0.0.1", int(gw.url.rsplit(":", 1)[1])), timeout=2))
            except OSError:
                break
        time.sleep(1.0)
        assert fds(gw.proc.pid) >= 250, "the gateway's descriptors are used up"
        # A SIP client connects now: its connection waits in the backlog;
        # the accept loops back off instead of spinning.
        extra = [socket.create_connection(("127.0.0.1", gw.sip_port), timeout=2) for _ in range(3)]
        before, log_before = cpu_seconds(gw.proc.pid), len(gw.log())
        time.sleep(3.0)
        cpu = (cpu_seconds(gw.proc.pid) - before) / 3.0
        logged = gw.log()[log_before:]
        assert cpu < 0.3, f"{cpu:.0%} of a core while out of descriptors"
        assert logged.count("accept failed") <= 8, logged[-2000:]
        assert len(logged) < 20000, len(logged)
    finally:
        for s in idle:
            s.close()
    # Descriptors back: the waiting SIP client is served.
    extra[0].sendall(options(1, extra[0].getsockname()[1]).encode())
    extra[0].settimeout(5)
    assert extra[0].recv(65536).startswith(b"SIP/2.0 200")
    for s in extra:
        s.close()
    assert gw.proc.poll() is None


def http_port(gw):
    return int(gw.url.rsplit(":", 1)[1])


def test_http_clients_that_are_silent_slow_oversized_or_too_many(gateway_factory):
    gw = gateway_factory(http_extra="header_timeout_s = 2\nbody_timeout_s = 2\nmax_connections = 8\n")
    port = http_port(gw)
    # Silent connections are closed after header_timeout_s.
    silent = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
    assert all(closed_within(s, 5) for s in silent), "silent HTTP connections are closed"
    # A body declared as 1 GB: 413 at once, not a wait for it.
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t = time.monotonic()
    s.sendall(b"POST /v1/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n"
              b"Content-Length: 1000000000\r\n\r\nv=0\r\n")
    resp = s.recv(65536)
    assert resp.startswith(b"HTTP/1.1 413"), resp[:200]
    assert time.monotonic() - t < 1.5
    s.close()
    # A body that stops coming: 408 after body_timeout_s.
    s = socket.create_connection(("127.0.0.1", port), timeout=6)
    s.sendall(b"POST /v1/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n"
              b"Content-Length: 500\r\n\r\nv=0\r\n")
    resp = s.recv(65536)
    assert resp.startswith(b"HTTP/1.1 408"), resp[:200]
    s.close()
    # A 100 kB header block: 431.
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    resp = s.recv(65536)
    assert resp.startswith(b"HTTP/1.1 431"), resp[:200]
    s.close()
    # At most max_connections served at once: the ninth waits until one
    # of the eight leaves.
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(8)]
    time.sleep(0.3)
    ninth = socket.create_connection(("127.0.0.1", port), timeout=5)
    ninth.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    ninth.settimeout(0.8)
    try:
        early = ninth.recv(65536)
    except (socket.timeout, TimeoutError):
        early = b""
    assert early == b"", early[:100]
    held[0].close()
    ninth.settimeout(5)
    assert ninth.recv(65536).startswith(b"HTTP/1.1 200")
    for s in held[1:] + [ninth]:
        s.close()
    assert gw.metric("rtcgw_calls_refused_total", reason="body_too_large") == 1
    assert gw.metric("rtcgw_calls_refused_total", reason="body_timeout") == 1


def test_sip_tcp_idle_half_sent_too_large_and_late_readers(gateway_factory):
    gw = gateway_factory(sip_extra="idle_timeout_s = 2\nmessage_timeout_s = 1\n")
    # Idle: closed after idle_timeout_s; a half-sent message after
    # message_timeout_s.
    idle = sip_tcp(gw)
    half = sip_tcp(gw)
    half.sendall(options(1, half.getsockname()[1]).encode()[:60])
    t = time.monotonic()
    assert closed_within(half, 3)
    assert time.monotonic() - t < 2.5
    assert closed_within(idle, 4)
    # Too large: 513 for the request, then the close.
    big = sip_tcp(gw)
    head = options(2, big.getsockname()[1]).replace("Content-Length: 0", "Content-Length: 100000")
    big.sendall(head.encode())
    resp = big.recv(65536).decode()
    assert resp.startswith("SIP/2.0 513"), resp[:200]
    assert "CSeq: 2 OPTIONS" in resp
    assert closed_within(big, 3)
    # 1000 pipelined requests from a client that reads only after sending
    # them all: every one answered (nothing dropped on a reliable
    # transport).
    late = sip_tcp(gw)
    lport = late.getsockname()[1]
    late.sendall("".join(options(n, lport) for n in range(1000, 2000)).encode())
    time.sleep(1.0)
    late.settimeout(10)
    got, buf = set(), b""
    deadline = time.monotonic() + 20
    while len(got) < 1000 and time.monotonic() < deadline:
        buf += late.recv(1 << 20)
        *msgs, buf = buf.split(b"\r\n\r\n")
        for m in msgs:
            for line in m.split(b"\r\n"):
                if line.startswith(b"CSeq: "):
                    got.add(int(line.split()[1]))
    late.close()
    assert len(got) == 1000, f"{len(got)} of 1000 answered"
    assert "dropped" not in gw.log()
    assert gw.proc.poll() is None


def test_sip_tcp_from_strangers_and_beyond_the_limit_is_closed_at_once(gateway_factory):
    gw = gateway_factory(sip_extra='max_connections = 3\nallowed_sources = ["127.0.0.1/32"]\n')
    ours = [sip_tcp(gw) for _ in range(3)]
    for i, s in enumerate(ours):
        s.sendall(options(10 + i, s.getsockname()[1]).encode())
        assert s.recv(65536).startswith(b"SIP/2.0 200")
    fourth = sip_tcp(gw)
    assert closed_within(fourth, 2), "beyond sip.max_connections"
    ours[0].close()
    time.sleep(0.3)
    # A source outside the allowed networks (127.0.0.2 is loopback too).
    stranger = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stranger.bind(("127.0.0.2", 0))
    stranger.settimeout(5)
    stranger.connect(("127.0.0.1", gw.sip_port))
    assert closed_within(stranger, 2), "not in sip.allowed_sources"
    assert gw.metric("rtcgw_sip_connections_refused_total", reason="limit") == 1
    assert gw.metric("rtcgw_sip_connections_refused_total", reason="source") == 1
    fifth = sip_tcp(gw)
    fifth.sendall(options(20, fifth.getsockname()[1]).encode())
    assert fifth.recv(65536).startswith(b"SIP/2.0 200"), "room again after one left"
    for s in ours[1:] + [fifth]:
        s.close()
    assert free_port()


def test_a_stranger_cannot_take_a_calls_audio_but_a_phone_behind_nat_is_heard(gateway_factory):
    gw = gateway_factory()
    stolen = []

    def intrude(port):
        # Right after the answer, before the caller's first packet: a burst
        # from another address, then a steady stream, listening for audio.
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.2", 0))
        s.settimeout(0.01)

        def run():
            for i in range(150):
                s.sendto(rtp_tools.rtp(0, 1000 + i, i * 160, 0x5151, bytes(160)), ("127.0.0.1", port))
                try:
                    while True:
                        stolen.append(s.recv(2048))
                except OSError:
                    pass
            s.close()
        threading.Thread(target=run, daemon=True).start()

    ok, got, bye = plain_call(("127.0.0.1", gw.sip_port), seconds=2.5, on_answer=intrude)
    assert bye
    assert len(got) > 80, f"the caller heard {len(got)} packets"
    assert stolen == [], f"{len(stolen)} packets went to the stranger"
    time.sleep(1.2)
    assert gw.metric("rtcgw_rtp_dropped_total", reason="wrong_source") > 100
    # A phone behind NAT: its SDP names 127.0.0.9 (nothing there); it
    # sends from 127.0.0.1. After three packets in a row it is latched to.
    ok, got, bye = plain_call(("127.0.0.1", gw.sip_port), seconds=2.0, sdp_host="127.0.0.9")
    assert "c=IN IP4 127.0.0.1" in ok
    assert len(got) > 80 and bye, f"the NATed phone heard {len(got)} packets"
    assert re.search(r"RTP source latched: a steady stream from an address other than the SDP's", gw.log())


def test_floods_of_bad_input_and_refusals_log_a_few_lines_and_count_all(gateway_factory):
    gw = gateway_factory(media_extra="max_calls = 1\n")
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    rnd = __import__("random").Random(5)
    for _ in range(3000):
        u.sendto(bytes(rnd.getrandbits(8) for _ in range(60)), ("127.0.0.1", gw.sip_port))
    # INVITEs with an offer that is not SDP: 400 for each, logged a few
    # times.
    me = u.getsockname()
    for i in range(300):
        body = "this is not SDP\r\n"
        u.sendto((f"INVITE sip:demo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me[1]};branch=z9hG4bKfl{i}\r\n"
                  f"From: <sip:f@127.0.0.1>;tag=f{i}\r\nTo: <sip:demo@127.0.0.1>\r\nCall-ID: flood{i}@py\r\n"
                  f"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:f@127.0.0.1:{me[1]}>\r\n"
                  f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode(),
                 ("127.0.0.1", gw.sip_port))
    time.sleep(2.0)
    u.close()
    log = gw.log()
    assert log.count("unparseable SIP message dropped") <= 40, log.count("unparseable SIP message dropped")
    assert log.count("INVITE refused") <= 40, log.count("INVITE refused")
    assert "held_back=" in log
    assert gw.metric("rtcgw_sip_rejected_total", reason="unparseable") >= 2900
    assert gw.metric("rtcgw_calls_refused_total", reason="malformed_sdp") >= 290


def test_a_busy_connection_is_not_timed_out_and_a_reset_one_frees_its_place(gateway_factory):
    gw = gateway_factory(sip_extra="max_connections = 2\nmessage_timeout_s = 1\n")
    # Reads that never end on a message boundary, for three times
    # message_timeout_s: every message is whole within it, so the
    # connection lives and every request is answered.
    c = sip_tcp(gw)
    lport = c.getsockname()[1]
    stream = "".join(options(n, lport) for n in range(100, 160)).encode()
    step = len(stream) // 60 + 7  # never a multiple of one message
    for i in range(0, len(stream), step):
        c.sendall(stream[i:i + step])
        time.sleep(0.05)
    c.settimeout(5)
    got = b""
    while got.count(b"SIP/2.0 200") < 60:
        d = c.recv(1 << 16)
        assert d, f"closed after {got.count(b'SIP/2.0 200')} answers"
        got += d
    # A client that pipelines 2000 requests, reads nothing and resets: its
    # place under max_connections comes back.
    rude = sip_tcp(gw)
    rude.sendall("".join(options(n, rude.getsockname()[1]) for n in range(3000, 5000)).encode())
    time.sleep(0.5)
    rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    rude.close()
    c.close()
    time.sleep(2.0)
    pair = [sip_tcp(gw), sip_tcp(gw)]
    for i, s in enumerate(pair):
        s.sendall(options(7000 + i, s.getsockname()[1]).encode())
        assert s.recv(65536).startswith(b"SIP/2.0 200"), "both places free again"
        s.close()
    assert gw.proc.poll() is None


def test_without_headroom_invites_and_options_get_503_with_retry_after(gateway_factory):
    # A CPU limit any running gateway exceeds (its 10 ms clock alone).
    gw = gateway_factory(media_extra="admit_max_cpu_pct = 0.01\n")
    deadline = time.monotonic() + 10
    while gw.metric("rtcgw_overloaded") != 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gw.metric("rtcgw_overloaded") == 1
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    u.settimeout(5)
    me = u.getsockname()
    offer = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
             "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    u.sendto((f"INVITE sip:demo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me[1]};branch=z9hG4bKov1\r\n"
              f"From: <sip:f@127.0.0.1>;tag=ov\r\nTo: <sip:demo@127.0.0.1>\r\nCall-ID: ov1@py\r\n"
              f"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:f@127.0.0.1:{me[1]}>\r\n"
              f"Content-Type: application/sdp\r\nContent-Length: {len(offer)}\r\n\r\n{offer}").encode(),
             ("127.0.0.1", gw.sip_port))
    final = None
    while final is None:
        r = u.recv(65536).decode()
        if not r.startswith("SIP/2.0 1"):
            final = r
    assert final.startswith("SIP/2.0 503"), final
    assert "\r\nRetry-After: 5\r\n" in final, final
    u.sendto((f"OPTIONS sip:rtcgw@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me[1]};branch=z9hG4bKov2\r\n"
              f"From: <sip:f@127.0.0.1>;tag=ov\r\nTo: <sip:rtcgw@127.0.0.1>\r\nCall-ID: ov2@py\r\n"
              f"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode(),
             ("127.0.0.1", gw.sip_port))
    probe = u.recv(65536).decode()
    assert probe.startswith("SIP/2.0 503"), probe
    assert "\r\nRetry-After: 5\r\n" in probe, probe
    u.close()
    assert gw.metric("rtcgw_calls_refused_total", reason="overloaded") >= 1
    log = gw.log()
    assert log.count("overloaded, refusing new calls: CPU at") == 1, log
