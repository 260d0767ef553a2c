"""Bridged calls (B2BUA): a WebRTC caller (aiortc, with the test speaking SIP
for it) -> rtcgw -> a plain-RTP callee (SIPp, echoing RTP)."""

import asyncio
import re
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription

import aiortc_peer
import legacy_peer
from conftest import assert_no_crosstalk, band_power, dominant_frequency, free_port

SIPP_DIR = Path(__file__).resolve().parents[1] / "sipp"


class SipCaller:
    """Just enough of a SIP UAC over UDP to carry a WebRTC offer."""

    def __init__(self, gw, headers=""):
        self.gw = gw
        self.headers = headers  # extra header lines (CRLF-ended) for INVITEs and UPDATEs
        self.requests = []  # requests from the far side (answered 200), as text
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.s.settimeout(15)
        self.port = self.s.getsockname()[1]
        self.to_tag = ""
        self.statuses = []
        self.routes = []  # the dialog's route set (RFC 3261 12.1.2)
        self.target = None  # the remote target (the 2xx's Contact)

    def req(self, method, cseq, body="", branch=None):
        branch = branch or f"z9hG4bK{time.monotonic_ns()}"
        ct = "Content-Type: application/sdp\r\n" if body else ""
        # In the dialog (a re-INVITE too, once there is a To tag): to the
        # remote target, along the route set.
        in_dialog = method != "CANCEL" and bool(self.target) and bool(self.to_tag)
        uri = self.target if in_dialog else f"sip:echo@127.0.0.1:{self.gw.sip_port}"
        return (f"{method} {uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport\r\n"
                f"From: <sip:browser@127.0.0.1>;tag=caller\r\nTo: <sip:echo@127.0.0.1>{self.to_tag}\r\n"
                + "".join(f"Route: {r}\r\n" for r in (self.routes if in_dialog else []))
                + f"Call-ID: bridge-1\r\nCSeq: {cseq} {method}\r\nContact: <sip:browser@127.0.0.1:{self.port}>\r\n"
                f"Max-Forwards: 70\r\n{self.headers if method in ('INVITE', 'UPDATE') else ''}"
                f"{ct}Content-Length: {len(body.encode())}\r\n\r\n{body}")

    def send(self, text):
        self.s.sendto(text.encode(), ("127.0.0.1", self.gw.sip_port))

    def final(self):
        while True:
            data = self.s.recv(65535).decode()
            if not data.startswith("SIP/2.0 "):
                self.answer_request(data)
                continue
            status = int(data.split()[1])
            self.statuses.append(status)
            if status >= 200:
                if 200 <= status < 300 and self.target is None:
                    rr = re.findall(r"^Record-Route: (.*)$", data, re.M)
                    self.routes = [r.strip() for line in reversed(rr) for r in reversed(line.split(","))]
                    contact = re.search(r"^Contact: .*?<([^>]+)>", data, re.M)
                    self.target = contact.group(1) if contact else None
                return status, data


    def answer_request(self, data):
        """A request from the far side (a BYE, a refresh): 200, noted."""
        self.requests.append(data)
        if data.startswith("ACK "):
            return
        keep = [line for line in data.split("\r\n")
                if line.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq", "record-route")]
        self.s.sendto(("SIP/2.0 200 OK\r\n" + "\r\n".join(keep)
                       + "\r\nContent-Length: 0\r\n\r\n").encode(), ("127.0.0.1", self.gw.sip_port))

    def wait_request(self, method, timeout):
        """Waits up to `timeout` s for a request `method` from the far side
        (answering what comes meanwhile); its text, or None."""
        deadline = time.monotonic() + timeout
        seen = len(self.requests)
        while time.monotonic() < deadline:
            for r in self.requests[seen:]:
                if r.startswith(method + " "):
                    return r
            seen = len(self.requests)
            self.s.settimeout(max(0.05, min(1.0, deadline - time.monotonic())))
            try:
                data = self.s.recv(65535).decode()
            except socket.timeout:
                continue
            finally:
                self.s.settimeout(15)
            if data.startswith("SIP/2.0 "):
                continue
            self.answer_request(data)
        return next((r for r in self.requests[seen:] if r.startswith(method + " ")), None)


async def aiortc_call(gw, callee, branch, edit=lambda sdp: sdp, received=None):
    """An aiortc caller sending a 1 kHz tone INVITEs rtcgw, or a proxy in
    front of it (`gw` a Via), its offer through `edit`; the outbound leg
    reaches `callee` (legacy_peer.LegacyCallee), which answers; the 200 is ACKed and
    applied. What the caller hears goes to `received` when given. Returns
    (the connection, the SIP caller, the 200, the recording tasks)."""
    loop = asyncio.get_running_loop()
    pc = RTCPeerConnection()
    pc.addTrack(aiortc_peer.ToneTrack(1000.0))
    tasks = []
    if received is not None:
        @pc.on("track")
        def on_track(track):
            tasks.append(asyncio.ensure_future(aiortc_peer.record(track, received)))

    await pc.setLocalDescription(await pc.createOffer())
    caller = SipCaller(gw)
    answering = loop.run_in_executor(None, callee.answer)
    caller.send(caller.req("INVITE", 1, edit(pc.localDescription.sdp), branch=branch))
    status, ok = await loop.run_in_executor(None, caller.final)
    await answering
    assert status == 200, ok[:300]
    caller.to_tag = re.search(r"^To: .*?(;tag=[^;\s]+)", ok, re.M).group(1)
    caller.send(caller.req("ACK", 1))
    await pc.setRemoteDescription(RTCSessionDescription(sdp=ok.split("\r\n\r\n", 1)[1], type="answer"))
    return pc, caller, ok, tasks


async def bridged_call(gw, seconds, rewrite_offer=None, rewrite_answer=None):
    """A WebRTC caller (aiortc, 1 kHz) through rtcgw to the SIPp echo; the
    rewrite hooks see the SDP on its way (e.g. to route media through an
    impairment relay)."""
    pc = RTCPeerConnection()
    pc.addTrack(aiortc_peer.ToneTrack(1000.0))
    received = []
    tasks = []

    @pc.on("track")
    def on_track(track):
        tasks.append(asyncio.ensure_future(aiortc_peer.record(track, received)))

    await pc.setLocalDescription(await pc.createOffer())
    sip = SipCaller(gw)
    loop = asyncio.get_running_loop()
    offer = pc.localDescription.sdp
    sip.send(sip.req("INVITE", 1, rewrite_offer(offer) if rewrite_offer else offer, branch="z9hG4bKbridgeinv"))
    status, ok = await loop.run_in_executor(None, sip.final)
    assert status == 200, ok[:200]
    sip.to_tag = re.search(r"^To: .*?(;tag=[^;\s]+)", ok, re.M).group(1)
    body = ok.split("\r\n\r\n", 1)[1]
    if rewrite_answer:
        body = rewrite_answer(body)
    sip.send(sip.req("ACK", 1))
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    await asyncio.sleep(seconds)
    sip.send(sip.req("BYE", 2))
    bye_status, _ = await loop.run_in_executor(None, sip.final)
    await pc.close()
    for t in tasks:
        t.cancel()
    pcm = np.concatenate([s for _, s in received]).astype(float) if received else np.zeros(0)
    rate = received[0][0] if received else 48000
    return sip.statuses, bye_status, rate, pcm


def sipp_echo_uas(callee_port):
    """SIPp answering one call on `callee_port` and echoing its RTP; returns
    once SIPp holds the port (a slow start must not lose the INVITE)."""
    uas = subprocess.Popen(
        ["sipp", "-sf", str(SIPP_DIR / "uas_echo.xml"), "-i", "127.0.0.1", "-p", str(callee_port),
         "-mi", "127.0.0.1", "-mp", str(free_port() & ~1), "-rtp_echo", "-m", "1", "-timeout", "40s",
         "-nostdin", "-trace_err", "-error_file", "/dev/stderr"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    bound = f":{callee_port:04X}"
    while uas.poll() is None and time.monotonic() < deadline:
        # Bound UDP sockets, without touching the port (a probing bind
        # could be what SIPp's own bind runs into).
        with open("/proc/net/udp") as f:
            if any(line.split()[1].endswith(bound) for line in f.readlines()[1:]):
                return uas
        time.sleep(0.05)
    uas.kill()
    out, err = uas.communicate()
    raise AssertionError(f"SIPp did not take port {callee_port}: {out[-1000:]} {err[-2000:]}")


class Via:
    """Points the test's SIP caller at a proxy (Kamailio) instead of rtcgw."""

    def __init__(self, port):
        self.sip_port = port


def echo_call_via(proxy_port, dest_port, seconds=5.0):
    """A WebRTC caller through the proxy on `proxy_port` to the SIPp echo on
    `dest_port`: checks that the caller's 1 kHz came back and both legs
    ended; returns the responses the caller saw."""
    uas = sipp_echo_uas(dest_port)
    try:
        statuses, bye_status, rate, pcm = asyncio.run(bridged_call(Via(proxy_port), seconds))
        out, err = uas.communicate(timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        uas.kill()
        out, err = uas.communicate()
        raise AssertionError(f"{e!r}; SIPp said: {out[-1500:]} {err[-2500:]}") from e
    finally:
        uas.kill()
    assert 200 in statuses and bye_status == 200, statuses
    assert uas.returncode == 0, (out[-1500:], err[-2500:])  # SIPp got the BYE
    assert len(pcm) > 3 * rate
    steady = pcm[rate:]
    assert abs(dominant_frequency(rate, steady) - 1000) < 5
    assert band_power(rate, steady, 1000) > 0.8 * band_power(rate, steady, rate / 4, rate / 4)
    return statuses


def test_webrtc_caller_reaches_plain_rtp_callee_and_hears_the_echo(gateway_factory):
    callee_port = free_port()
    gw = gateway_factory(f'[route]\nmode = "bridge"\ntarget = "sip:{{user}}@127.0.0.1:{callee_port}"\n')
    uas = sipp_echo_uas(callee_port)
    try:
        time.sleep(0.5)
        statuses, bye_status, rate, pcm = asyncio.run(bridged_call(gw, 5.0))
        out, err = uas.communicate(timeout=30)
    finally:
        uas.kill()
    assert 180 in statuses, f"the callee's ringing reached the caller: {statuses}"
    assert bye_status == 200
    assert uas.returncode == 0, (out[-1500:], err[-2500:])  # SIPp got the BYE: both legs ended
    # The caller's 1 kHz went WebRTC -> PCMU -> SIPp's echo -> NetEQ -> WebRTC.
    assert len(pcm) > 3 * rate
    steady = pcm[rate:]
    assert abs(dominant_frequency(rate, steady) - 1000) < 5
    assert band_power(rate, steady, 1000) > 0.8 * band_power(rate, steady, rate / 4, rate / 4)
    time.sleep(0.5)
    assert gw.metric("rtcgw_calls_active") == 0
    assert gw.metric("rtcgw_legacy_ports_in_use") == 0
    # The bridge's media task kept the 10 ms clock: ~100 frames a second of
    # the 5 s call counted, hardly any late (the capacity benchmark's measure).
    frames = gw.metric("rtcgw_media_frames_total")
    assert frames >= 400
    assert gw.metric("rtcgw_media_late_frames_total") <= 0.1 * frames
    # A clean call leaves no warning in the default log: libwebrtc's
    # per-call noise is known and kept at debug (src/rtc/callbacks.rs).
    warnings = [l for l in gw.log().splitlines() if " WARN " in l or " ERROR " in l]
    assert not warnings, "\n".join(warnings[:10])


def sip_response(req, status, reason, tag, contact_port, body=""):
    return legacy_peer.response(req, status, reason, tag, contact_port, body, user="callee")


async def webrtc_callee(sock, received, ready):
    """A WebRTC user behind the softswitch: aiortc answering rtcgw's INVITE."""
    loop = asyncio.get_running_loop()
    pc = RTCPeerConnection()
    pc.addTrack(aiortc_peer.ToneTrack(1000.0))
    tasks = []

    @pc.on("track")
    def on_track(track):
        tasks.append(asyncio.ensure_future(aiortc_peer.record(track, received)))

    while True:
        data, addr = await loop.run_in_executor(None, sock.recvfrom, 65535)
        req = data.decode()
        if req.startswith("INVITE"):
            break
    offer = req.split("\r\n\r\n", 1)[1]
    assert "UDP/TLS/RTP/SAVPF" in offer, "rtcgw offers WebRTC to the callee"
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    port = sock.getsockname()[1]
    sock.sendto(sip_response(req, 200, "OK", "webrtc", port, pc.localDescription.sdp).encode(), addr)
    ready.set()
    while True:  # ACK, then BYE from rtcgw when the legacy caller hangs up
        data, addr = await loop.run_in_executor(None, sock.recvfrom, 65535)
        req = data.decode()
        if req.startswith("BYE"):
            sock.sendto(sip_response(req, 200, "OK", "webrtc", port).encode(), addr)
            break
    await pc.close()
    for t in tasks:
        t.cancel()
    return True


def test_plain_rtp_caller_reaches_webrtc_callee_both_ways(gateway_factory):
    callee = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    callee.bind(("127.0.0.1", 0))
    callee.settimeout(30)
    gw = gateway_factory(f'[route]\nmode = "bridge"\ntarget = "sip:{{user}}@127.0.0.1:{callee.getsockname()[1]}"\n')
    plain_rtp_caller_to_webrtc_callee(gw, gw, callee)


def plain_rtp_caller_to_webrtc_callee(entry, gw, callee):
    """A PBX-like caller with PCMU calls `entry` (rtcgw, or the softswitch in
    front of it); the WebRTC user answering on `callee` is aiortc. Audio is
    checked both ways."""
    import rtp_tools

    media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    media.bind(("127.0.0.1", 0))
    media.settimeout(0.02)
    caller = SipCaller(entry)
    sdp = (f"v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           f"m=audio {media.getsockname()[1]} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    tone = (0.3 * 32767 * np.sin(2 * np.pi * 700 * np.arange(40000) / 8000)).astype(np.int16)

    async def scenario():
        loop = asyncio.get_running_loop()
        received, ready = [], asyncio.Event()
        callee_task = asyncio.ensure_future(webrtc_callee(callee, received, ready))
        caller.send(caller.req("INVITE", 1, sdp, branch="z9hG4bKlegacyinv"))
        status, ok = await loop.run_in_executor(None, caller.final)
        assert status == 200, ok[:300]
        assert "RTP/AVP 0" in ok, "the legacy caller gets a plain RTP answer"
        caller.to_tag = re.search(r"^To: .*?(;tag=[^;\s]+)", ok, re.M).group(1)
        gw_port = int(re.search(r"^m=audio (\d+) RTP/AVP", ok, re.M).group(1))
        caller.send(caller.req("ACK", 1))

        def rtp_exchange():
            got, start = [], time.monotonic()
            for i in range(200):  # 4 s of 20 ms packets
                payload = rtp_tools.ulaw_encode(tone[i * 160:(i + 1) * 160]).tobytes()
                media.sendto(rtp_tools.rtp(0, i, i * 160, 0x5151, payload, marker=i == 0), ("127.0.0.1", gw_port))
                while time.monotonic() < start + (i + 1) * 0.02:
                    try:
                        got.append(media.recv(2048))
                    except socket.timeout:
                        pass
            return got

        got = await loop.run_in_executor(None, rtp_exchange)
        caller.send(caller.req("BYE", 2))
        bye, _ = await loop.run_in_executor(None, caller.final)
        assert await asyncio.wait_for(callee_task, 20), "the WebRTC callee got the BYE"
        return bye, got, received

    bye, got, received = asyncio.run(scenario())
    assert bye == 200
    # Legacy caller hears the WebRTC callee's 1 kHz.
    pcm = np.concatenate([rtp_tools.ulaw_decode(np.frombuffer(p[12:], np.uint8)) for p in got if len(p) > 12 and p[1] & 0x7F == 0]).astype(float)
    assert len(pcm) > 2 * 8000
    assert abs(dominant_frequency(8000, pcm[8000:]) - 1000) < 10
    # The WebRTC callee hears the legacy caller's 700 Hz.
    rate = received[0][0]
    x = np.concatenate([s for _, s in received]).astype(float)[rate:]
    assert abs(dominant_frequency(rate, x) - 700) < 5
    time.sleep(0.5)
    assert gw.metric("rtcgw_calls_active") == 0
    assert gw.metric("rtcgw_legacy_ports_in_use") == 0


def test_twenty_concurrent_bridged_calls_hear_only_their_own_echo(gateway_factory):
    callee_port = free_port()
    gw = gateway_factory(f'[route]\nmode = "bridge"\ntarget = "sip:{{user}}@127.0.0.1:{callee_port}"\n')
    n = 20
    uas = subprocess.Popen(
        ["sipp", "-sf", str(SIPP_DIR / "uas_echo.xml"), "-i", "127.0.0.1", "-p", str(callee_port),
         "-mi", "127.0.0.1", "-mp", str(free_port() & ~1), "-rtp_echo", "-m", str(n), "-timeout", "60s",
         "-nostdin", "-trace_err", "-error_file", "/dev/stderr"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tones = [530.0 + 67.0 * i for i in range(n)]

    async def one(i, f):
        pc = RTCPeerConnection()
        pc.addTrack(aiortc_peer.ToneTrack(f))
        received, tasks = [], []

        @pc.on("track")
        def on_track(track):
            tasks.append(asyncio.ensure_future(aiortc_peer.record(track, received)))

        await pc.setLocalDescription(await pc.createOffer())
        sip = SipCaller(gw)
        sip.call_id = f"bridge-many-{i}"
        loop = asyncio.get_running_loop()
        sip.send(sip.req("INVITE", 1, pc.localDescription.sdp, branch=f"z9hG4bKmany{i}").replace("bridge-1", sip.call_id))
        status, ok = await loop.run_in_executor(None, sip.final)
        assert status == 200, ok[:200]
        sip.to_tag = re.search(r"^To: .*?(;tag=[^;\s]+)", ok, re.M).group(1)
        sip.send(sip.req("ACK", 1).replace("bridge-1", sip.call_id))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=ok.split("\r\n\r\n", 1)[1], type="answer"))
        await asyncio.sleep(6.0)
        sip.send(sip.req("BYE", 2).replace("bridge-1", sip.call_id))
        await loop.run_in_executor(None, sip.final)
        await pc.close()
        for t in tasks:
            t.cancel()
        rate = received[0][0]
        return rate, np.concatenate([s for _, s in received]).astype(float)

    async def all_calls():
        return await asyncio.gather(*[one(i, f) for i, f in enumerate(tones)])

    try:
        results = asyncio.run(all_calls())
        out, err = uas.communicate(timeout=60)
    finally:
        uas.kill()
    assert uas.returncode == 0, (out[-1500:], err[-2500:])
    heard = [(f, round(dominant_frequency(rate, x[2 * rate:]), 1)) for f, (rate, x) in zip(tones, results)]
    print("tones sent, heard:", heard)
    for f, (rate, x) in zip(tones, results):
        assert_no_crosstalk(rate, x[2 * rate:], f, tones, -30.0)
    # Each call hears its own echo: the peak within a fifth of the 67 Hz
    # spacing (CPU starvation on a 2-core CI has put the 1803 Hz call's at
    # 1809.6 Hz, as in test_demo).
    assert all(abs(h - f) < 13 for f, h in heard), heard
    time.sleep(0.5)
    assert gw.metric("rtcgw_calls_active") == 0
    assert gw.metric("rtcgw_legacy_ports_in_use") == 0


def test_cancel_while_the_callee_rings_gives_487_on_both_legs(gateway_factory):
    callee_port = free_port()
    gw = gateway_factory(f'[route]\nmode = "bridge"\ntarget = "sip:{{user}}@127.0.0.1:{callee_port}"\n')
    uas = subprocess.Popen(
        ["sipp", "-sf", str(SIPP_DIR / "uas_ring_cancel.xml"), "-i", "127.0.0.1", "-p", str(callee_port),
         "-m", "1", "-timeout", "30s", "-nostdin", "-trace_err", "-error_file", "/dev/stderr"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    offer = (Path(__file__).resolve().parents[1] / "data" / "aiortc_offer.sdp").read_text()
    try:
        time.sleep(0.5)
        caller = SipCaller(gw)
        caller.send(caller.req("INVITE", 1, offer, branch="z9hG4bKcancelme"))
        # Wait for the callee's ringing to be relayed, then give up.
        while True:
            data = caller.s.recv(65535).decode()
            if data.startswith("SIP/2.0 180"):
                break
        caller.send(caller.req("CANCEL", 1, branch="z9hG4bKcancelme"))
        finals = []
        while len(finals) < 2:
            data = caller.s.recv(65535).decode()
            if int(data.split()[1]) >= 200:
                finals.append((int(data.split()[1]), data.split("CSeq: ")[1].split("\r\n")[0]))
        assert sorted(finals) == [(200, "1 CANCEL"), (487, "1 INVITE")], finals
        tag = re.search(r"^To: .*?(;tag=[^;\s]+)", data if finals[-1][0] == 487 else "", re.M)
        caller.to_tag = tag.group(1) if tag else ""
        caller.send(caller.req("ACK", 1, branch="z9hG4bKcancelme"))
        out, err = uas.communicate(timeout=30)
    finally:
        uas.kill()
    assert uas.returncode == 0, (out[-1500:], err[-2500:])  # the callee saw CANCEL, 487, ACK
    time.sleep(0.5)
    assert gw.metric("rtcgw_calls_active") == 0
    assert gw.metric("rtcgw_legacy_ports_in_use") == 0


def proc_figures(gw):
    import os

    # The connection of the previous /metrics request may still be closing
    # on the gateway's side: let it go before counting descriptors.
    time.sleep(0.3)
    fds = len(os.listdir(f"/proc/{gw.proc.pid}/fd"))
    return fds, gw.threads(), gw.metric("rtcgw_legacy_ports_in_use")


def test_500_calls_leave_no_fds_threads_or_ports_behind(gateway_factory):
    callee_port = free_port()
    gw = gateway_factory(
        f'[route]\nmode = "bridge"\ntarget = "sip:{{user}}@127.0.0.1:{callee_port}"\n', log_filter="warn")
    bridged = 400
    uas = subprocess.Popen(
        ["sipp", "-sf", str(SIPP_DIR / "uas_echo.xml"), "-i", "127.0.0.1", "-p", str(callee_port),
         "-mi", "127.0.0.1", "-mp", str(free_port() & ~1), "-rtp_echo", "-m", str(bridged), "-timeout", "120s",
         "-nostdin"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    idle = proc_figures(gw)

    def uac(scenario, calls, rate):
        p = subprocess.run(
            ["sipp", f"127.0.0.1:{gw.sip_port}", "-sf", str(SIPP_DIR / scenario), "-m", str(calls), "-r", str(rate),
             "-d", "200", "-i", "127.0.0.1", "-p", str(free_port()), "-timeout", "120s", "-nostdin"],
            capture_output=True, text=True, timeout=180)
        return p.returncode, p.stdout[-1500:] + p.stderr[-1500:]

    # 400 bridged calls set up, talked briefly, torn down.
    rc, out = uac("uac_load.xml", bridged, 40)
    assert rc == 0, out
    # 50 cancelled before the answer.
    rc, out = uac("cancel.xml", 50, 10)
    assert rc == 0, out
    # 50 refused: a plain RTP offer with no codec in common (488).
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    gsm = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 3\r\n"
    for i in range(50):
        caller = SipCaller(gw)
        caller.s = s
        caller.port = s.getsockname()[1]
        text = caller.req("INVITE", 1, gsm, branch=f"z9hG4bKrefuse{i}").replace("bridge-1", f"refuse-{i}")
        caller.send(text)
        status, resp = caller.final()
        assert status == 488, resp[:100]
        caller.to_tag = re.search(r"^To: .*?(;tag=[^;\s]+)", resp, re.M).group(1)
        caller.send(caller.req("ACK", 1, branch=f"z9hG4bKrefuse{i}").replace("bridge-1", f"refuse-{i}"))
    out, err = uas.communicate(timeout=60)
    assert uas.returncode == 0, (out[-1000:], err[-1500:])
    # Back to the idle figures.
    deadline = time.time() + 10
    while True:
        active = gw.metric("rtcgw_calls_active")
        after = proc_figures(gw)
        if (active == 0 and after == idle) or time.time() > deadline:
            break
        time.sleep(0.5)
    assert active == 0
    assert after == idle, f"fds, threads, ports: idle {idle}, after {after}"


def echo_heard(gw_extra, gateway_factory):
    """The caller's 1 kHz power in what comes back through a SIPp RTP echo,
    and the total power, over the last 3 s of a 6 s bridged call."""
    callee_port = free_port()
    gw = gateway_factory(f'[route]\nmode = "bridge"\ntarget = "sip:{{user}}@127.0.0.1:{callee_port}"\n' + gw_extra)
    uas = subprocess.Popen(
        ["sipp", "-sf", str(SIPP_DIR / "uas_echo.xml"), "-i", "127.0.0.1", "-p", str(callee_port),
         "-mi", "127.0.0.1", "-mp", str(free_port() & ~1), "-rtp_echo", "-m", "1", "-timeout", "40s",
         "-nostdin"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        _, bye, rate, pcm = asyncio.run(bridged_call(gw, 6.0))
        uas.communicate(timeout=30)
    finally:
        uas.kill()
    assert bye == 200
    tail = pcm[-3 * rate:]
    return band_power(rate, tail, 1000), float((tail ** 2).sum())


def test_per_call_echo_cancellation_removes_the_legacy_sides_echo(gateway_factory):
    # The SIPp callee is a perfect echo path: without AEC3 the caller hears
    # its own tone back; with [bridge] echo_cancellation the per-call
    # AudioProcessing (fed with what rtcgw sends to the legacy leg) removes it.
    plain, _ = echo_heard("", gateway_factory)
    cancelled, _ = echo_heard("[bridge]\necho_cancellation = true\nnoise_suppression = true\n", gateway_factory)
    assert plain > 0
    print(f"echo attenuated by {10 * np.log10(plain / max(cancelled, 1e-9)):.1f} dB")
    assert cancelled < plain * 0.05, f"echo attenuated by {10 * np.log10(plain / max(cancelled, 1e-9)):.1f} dB only"
