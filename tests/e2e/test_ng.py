"""rtcgw as the media relay of a stock Kamailio (Debian's kamailio with its
rtpengine module, kamailio/kamailio-ng.cfg: a usual rtpengine config with
rtpengine_sock pointing at rtcgw's ng port), and the ng protocol itself,
bad input included."""

import asyncio
import json
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import kamailio_proc
import test_bridge
from test_bridge import Via
from conftest import dominant_frequency, free_port
from ng_client import NgClient, bdecode, bencode

ROOT = Path(__file__).resolve().parents[2]

AIORTC_OFFER = (ROOT / "tests" / "data" / "aiortc_offer.sdp").read_text()
PLAIN_OFFER = ("v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n")


def ng_gateway(gateway_factory, extra=""):
    ng_port = free_port()
    gw = gateway_factory(f'[ng]\nenabled = true\nlisten = "127.0.0.1:{ng_port}"\n{extra}')
    gw.ng_port = ng_port
    return gw


@pytest.fixture
def kamailio_ng():
    started = []

    def start(kam_port, dest_port, ng_port):
        try:
            p = kamailio_proc.start(kam_port, dest_port, ng_port)
        except RuntimeError as e:
            raise AssertionError(str(e))
        started.append(p)
        return p

    yield start
    for p in started:
        print("---- kamailio ----\n" + kamailio_proc.stop(p)[-8000:])



def test_webrtc_caller_through_kamailio_with_rtcgw_as_its_relay(gateway_factory, kamailio_ng):
    gw = ng_gateway(gateway_factory)
    kam_port, dest_port = free_port(), free_port()
    kam = kamailio_ng(kam_port, dest_port, gw.ng_port)
    # The caller's 1 kHz: WebRTC -> rtcgw -> PCMU -> SIPp's echo -> rtcgw -> WebRTC.
    test_bridge.echo_call_via(kam_port, dest_port)
    assert kam.poll() is None
    time.sleep(0.5)
    # Kamailio's delete (on the BYE) ended the call; nothing left.
    assert gw.metric("rtcgw_calls_active") == 0
    assert gw.metric("rtcgw_legacy_ports_in_use") == 0
    for cmd in ["ping", "offer", "answer", "delete"]:
        assert gw.metric("rtcgw_ng_requests_total", command=cmd, result="ok") >= 1, cmd


def test_plain_caller_through_kamailio_to_a_webrtc_callee(gateway_factory, kamailio_ng):
    gw = ng_gateway(gateway_factory)
    callee = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    callee.bind(("127.0.0.1", 0))
    callee.settimeout(30)
    kam_port = free_port()
    kamailio_ng(kam_port, callee.getsockname()[1], gw.ng_port)
    test_bridge.plain_rtp_caller_to_webrtc_callee(Via(kam_port), gw, callee)
    time.sleep(0.5)
    assert gw.metric("rtcgw_calls_active") == 0


def test_ng_protocol_and_bad_input(gateway_factory):
    gw = ng_gateway(gateway_factory)
    ng = NgClient(gw.ng_port)
    assert ng({"command": "ping"})["result"] == b"pong"
    # A WebRTC offer with Kamailio's WebRTC -> SIP flags: our plain offer.
    offer = {"command": "offer", "call-id": "ng-e2e-1", "from-tag": "alice", "sdp": AIORTC_OFFER,
             "ICE": "remove", "DTLS": "off", "transport-protocol": "RTP/AVP", "rtcp-mux": ["demux"],
             "codec": {"mask": ["opus"], "transcode": ["PCMU"]}, "flags": ["trust-address", "no-such-flag"],
             "replace": ["origin", "session-connection"], "received-from": ["IP4", "127.0.0.1"],
             "supports": ["load limit"], "via-branch": "z9hG4bK1"}
    cookie = ng.cookie()
    r = ng(offer, cookie=cookie)
    assert r["result"] == b"ok", r
    sdp = r["sdp"].decode()
    assert "RTP/AVP 0 101" in sdp and "opus" not in sdp and "a=ice-ufrag" not in sdp, sdp
    # The same cookie again (Kamailio's retransmission): the same bytes, not a second call.
    first = ng.raw(cookie.encode() + b" " + bencode(offer))
    assert first is not None and bdecode(first.partition(b" ")[2])[0]["sdp"].decode() == sdp
    assert ng.raw(cookie.encode() + b" " + bencode(offer)) == first
    assert ng({"command": "list"})["calls"] == [b"ng-e2e-1"]
    # The answer from the plain side: our WebRTC answer to alice.
    plain_answer = PLAIN_OFFER.replace("40000", str(free_port()))
    r = ng({"command": "answer", "call-id": "ng-e2e-1", "from-tag": "alice", "to-tag": "bob",
            "sdp": plain_answer, "ICE": "force", "transport-protocol": "UDP/TLS/RTP/SAVPF"})
    assert r["result"] == b"ok", r
    assert "UDP/TLS/RTP/SAVPF" in r["sdp"].decode() and "a=fingerprint" in r["sdp"].decode()
    q = ng({"command": "query", "call-id": "ng-e2e-1"})
    assert q["result"] == b"ok" and set(q["tags"]) == {"alice", "bob"}, q
    assert set(q["totals"]) == {"RTP", "RTCP"}
    d = ng({"command": "delete", "call-id": "ng-e2e-1", "from-tag": "alice", "delete-delay": "0"})
    assert d["result"] == b"ok" and "totals" in d, d
    assert gw.metric("rtcgw_calls_active") == 0
    # Masked codecs without a transcode list: legacy.codecs less those;
    # everything stripped: nothing to offer, an error.
    masked = dict(offer, **{"call-id": "ng-e2e-2", "codec": {"mask": ["opus", "PCMU"]}})
    r = ng(masked)
    sdp = r["sdp"].decode()
    assert "a=rtpmap:8 PCMA/8000" in sdp and "PCMU" not in sdp and "opus" not in sdp, sdp
    assert ng({"command": "delete", "call-id": "ng-e2e-2", "from-tag": "alice"})["result"] == b"ok"
    stripped = dict(offer, **{"call-id": "ng-e2e-3", "codec": {"strip": ["all"]}})
    r = ng(stripped)
    assert r["result"] == b"error" and b"no codec" in r["error-reason"], r

    # Bad input: an error with rtpengine's reason, or silence where rtpengine is silent.
    cases = [
        (b"1_2_3 d7:command4:pin", b"Could not decode bencode dictionary"),
        (b"1_2_4 li1ee", b"Invalid NG data format"),
        (b"1_2_5 d5:flagsl3:fooee", b'Dictionary contains no key "command"'),
        (b"1_2_6 " + bencode({"command": "play media", "call-id": "x"}), b"Unrecognized command"),
        (b"1_2_7 " + bencode({"command": "offer", "call-id": "x", "from-tag": "a"}), b"No SDP body in message"),
        (b"1_2_8 " + bencode({"command": "offer", "sdp": "v=0", "from-tag": "a"}), b"No call-id in message"),
        (b"1_2_9 " + bencode({"command": "answer", "call-id": "nope", "from-tag": "a", "to-tag": "b",
                              "sdp": PLAIN_OFFER}), b"Unknown call-id"),
        (b"1_2_10 " + bencode({"command": "offer", "call-id": "y", "from-tag": "a", "sdp": "this is not SDP",
                               "transport-protocol": "UDP/TLS/RTP/SAVPF"}), b"Failed to parse SDP"),
        (b"1_2_11 " + bencode({"command": "offer", "call-id": "z", "from-tag": "a",
                               "sdp": PLAIN_OFFER.replace("m=audio", "m=video"),
                               "transport-protocol": "UDP/TLS/RTP/SAVPF"}), b"Failed to parse SDP"),
    ]
    for datagram, reason in cases:
        reply = ng.raw(datagram)
        assert reply is not None, datagram
        body = bdecode(reply.partition(b" ")[2])[0]
        assert body["result"] == b"error" and body["error-reason"].startswith(reason), (datagram, body)
    w = ng({"command": "delete", "call-id": "nope", "from-tag": "a"})
    assert w["result"] == b"ok" and b"not found" in w["warning"]
    assert ng.raw(b"no-cookie-here") is None
    assert gw.metric("rtcgw_ng_requests_total", command="malformed", result="error") >= 2
    assert gw.metric("rtcgw_ng_dropped_total") >= 1
    assert gw.proc.poll() is None
    assert ng({"command": "ping"})["result"] == b"pong"
    ng.close()


def test_ng_from_a_source_not_allowed_gets_nothing(gateway_factory):
    gw = ng_gateway(gateway_factory, 'allowed_sources = ["192.0.2.0/24"]\n')
    ng = NgClient(gw.ng_port, timeout=0.5)
    assert ng.raw(b"1_1_1 " + bencode({"command": "ping"})) is None
    assert gw.metric("rtcgw_ng_dropped_total") == 1
    ng.close()


def answer_reinvites(caller, local_sdp, stop, log):
    """The WebRTC caller's SIP side answering re-INVITEs through Kamailio:
    rtcgw passes the other side's re-offer on as our unchanged SDP, so the
    caller answers with its own, unchanged too (RFC 3264 section 8)."""
    import re as _re

    caller.s.settimeout(0.2)
    while not stop.is_set():
        try:
            msg = caller.s.recv(65535).decode()
        except socket.timeout:
            continue
        if not msg.startswith("INVITE"):
            continue
        log.append(msg.split("\r\n\r\n", 1)[1])
        keep = [l for l in msg.split("\r\n") if l.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq", "record-route")]
        ok = ("SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + f"\r\nContact: <sip:browser@127.0.0.1:{caller.port}>\r\n"
              f"Content-Type: application/sdp\r\nContent-Length: {len(local_sdp.encode())}\r\n\r\n{local_sdp}")
        via = _re.search(r"^Via: SIP/2.0/UDP ([^;\r]+)", msg, _re.M).group(1).split(":")
        caller.s.sendto(ok.encode(), (via[0], int(via[1])))
    caller.s.settimeout(15)


def test_hold_resume_and_digits_from_the_sip_side_through_kamailio(gateway_factory, kamailio_ng, monkeypatch):
    from legacy_peer import LegacyCallee
    from test_midcall import capture_telephone_events, with_telephone_event

    events = capture_telephone_events(monkeypatch)
    gw = ng_gateway(gateway_factory)
    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind(("127.0.0.1", 0))
    sip.settimeout(20)
    kam_port = free_port()
    kamailio_ng(kam_port, sip.getsockname()[1], gw.ng_port)
    callee = LegacyCallee(sip)
    log = {}

    async def scenario():
        loop = asyncio.get_running_loop()
        pc, caller, ok, _ = await test_bridge.aiortc_call(Via(kam_port), callee, "z9hG4bKnghold", with_telephone_event)
        await asyncio.sleep(2.0)
        log["before_hold"] = len(callee.media.audio)
        # A digit from the SIP side (RFC 4733) reaches the WebRTC side.
        await loop.run_in_executor(None, callee.media.send_digit, 7, callee.gw_media)
        await asyncio.sleep(0.5)
        stop, reoffers = threading.Event(), []
        responder = threading.Thread(target=answer_reinvites, args=(caller, pc.localDescription.sdp, stop, reoffers))
        responder.start()
        # Hold from the SIP side: its leg answers recvonly and rtcgw stops
        # sending to it; the WebRTC side sees our SDP unchanged.
        log["hold_answer"] = await loop.run_in_executor(None, callee.reinvite, "sendonly")
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
        await asyncio.sleep(2.0)
        log["sent_on_hold"] = len(callee.media.packets_between(t0, time.monotonic()))
        log["resume_answer"] = await loop.run_in_executor(None, callee.reinvite, "sendrecv")
        t1 = time.monotonic()
        await asyncio.sleep(2.0)
        log["after_resume"] = len(callee.media.packets_between(t1 + 0.3, time.monotonic()))
        stop.set()
        responder.join()
        log["reoffers"] = reoffers
        log["answer_to_caller"] = ok.split("\r\n\r\n", 1)[1]
        # Through the proxy the callee answers the BYE: it must be listening.
        callee_bye = loop.run_in_executor(None, callee.wait_bye)
        caller.send(caller.req("BYE", 2))
        bye, _ = await loop.run_in_executor(None, caller.final)
        log["bye"] = bye
        log["callee_bye"] = await callee_bye
        await pc.close()
        callee.media.close()

    asyncio.run(scenario())
    assert log["before_hold"] > 50, "audio flowed to the SIP side"
    digits = {("0123456789*#"[p[0]]) for _, p in events if p[1] & 0x80}
    assert digits == {"7"}, events
    assert "a=recvonly" in log["hold_answer"], log["hold_answer"]
    assert log["sent_on_hold"] == 0, "nothing is sent to a party that put us on hold"
    assert "a=sendrecv" in log["resume_answer"]
    assert log["after_resume"] > 50, "audio flows again after resume"
    # The WebRTC side saw each re-offer as our SDP, unchanged (same o= line).
    origin = lambda sdp: re.search(r"^o=.*$", sdp, re.M).group(0)
    assert len(log["reoffers"]) == 2
    assert all(origin(r) == origin(log["answer_to_caller"]) for r in log["reoffers"])
    assert log["bye"] == 200 and log["callee_bye"]
    time.sleep(0.5)
    assert gw.metric("rtcgw_calls_active") == 0
    assert gw.metric("rtcgw_legacy_ports_in_use") == 0


def test_cancel_through_kamailio_ends_the_media(gateway_factory, kamailio_ng):
    gw = ng_gateway(gateway_factory)
    kam_port, dest_port = free_port(), free_port()
    kamailio_ng(kam_port, dest_port, gw.ng_port)
    uas = subprocess.Popen(
        ["sipp", "-sf", str(test_bridge.SIPP_DIR / "uas_ring_cancel.xml"), "-i", "127.0.0.1", "-p", str(dest_port),
         "-m", "1", "-timeout", "30s", "-nostdin", "-trace_err", "-error_file", "/dev/stderr"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    caller = test_bridge.SipCaller(Via(kam_port))
    try:
        time.sleep(0.3)
        caller.send(caller.req("INVITE", 1, AIORTC_OFFER, branch="z9hG4bKngcancel"))
        deadline = time.time() + 10
        while 180 not in caller.statuses and time.time() < deadline:
            data = caller.s.recv(65535).decode()
            caller.statuses.append(int(data.split()[1]))
        assert 180 in caller.statuses, caller.statuses
        assert gw.metric("rtcgw_calls_active") == 1
        caller.send(caller.req("CANCEL", 1, branch="z9hG4bKngcancel"))
        finals = set()
        while not {200, 487} <= finals and time.time() < deadline:
            data = caller.s.recv(65535).decode()
            finals.add(int(data.split()[1]))
        assert {200, 487} <= finals, finals
        out, err = uas.communicate(timeout=20)
    finally:
        uas.kill()
    time.sleep(0.5)
    assert gw.metric("rtcgw_calls_active") == 0, "Kamailio's delete on the CANCEL ended the media"
    assert gw.metric("rtcgw_legacy_ports_in_use") == 0


def test_headless_chromium_caller_through_kamailio_both_ways(gateway_factory, kamailio_ng, tmp_path):
    from browser import OFFER_JS, Chromium, answer_js, dtmf_js
    from legacy_peer import LegacyCallee
    from test_midcall import ulaw_pcm

    gw = ng_gateway(gateway_factory)
    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind(("127.0.0.1", 0))
    sip.settimeout(20)
    kam_port = free_port()
    kamailio_ng(kam_port, sip.getsockname()[1], gw.ng_port)
    callee = LegacyCallee(sip)  # PCMU, echoes what it hears
    browser = Chromium(tmp_path / "chromium")
    try:
        offer = browser.eval(OFFER_JS)  # a 1 kHz WebAudio tone
        caller = test_bridge.SipCaller(Via(kam_port))
        answering = threading.Thread(target=callee.answer)
        answering.start()
        caller.send(caller.req("INVITE", 1, offer, branch="z9hG4bKngchrome"))
        status, ok = caller.final()
        answering.join()
        assert status == 200, ok[:300]
        plain_offer = callee.invite.split("\r\n\r\n", 1)[1]
        assert "RTP/AVP" in plain_offer and "a=ice-ufrag" not in plain_offer, plain_offer
        caller.to_tag = re.search(r"^To: .*?(;tag=[^;\s]+)", ok, re.M).group(1)
        caller.send(caller.req("ACK", 1))
        answer = ok.split("\r\n\r\n", 1)[1]
        assert "UDP/TLS/RTP/SAVPF" in answer and "a=fingerprint" in answer, answer
        assert browser.eval(answer_js(answer)) == "connected"
        time.sleep(2.5)
        # W -> L: the browser's tone reaches the plain RTP callee as PCMU.
        t0 = time.monotonic()
        time.sleep(1.5)
        heard = callee.media.packets_between(t0, time.monotonic())
        assert len(heard) > 60, len(heard)
        assert abs(dominant_frequency(8000, ulaw_pcm(heard)) - 1000) < 10
        # L -> W: the callee's echo is what the browser plays out (captured
        # by WebAudio; Chromium decodes a remote track once something plays it).
        played = json.loads(browser.eval("""(async () => {
          const track = pc.getReceivers()[0].track;
          const el = new Audio();
          el.muted = true;
          el.srcObject = new MediaStream([track]);
          await el.play();
          const ctx = new AudioContext();
          const src = ctx.createMediaStreamSource(new MediaStream([track]));
          const proc = ctx.createScriptProcessor(4096, 1, 1);
          const chunks = [];
          proc.onaudioprocess = e => chunks.push(Array.from(e.inputBuffer.getChannelData(0)));
          src.connect(proc);
          proc.connect(ctx.destination);
          await new Promise(r => setTimeout(r, 1500));
          proc.disconnect();
          return JSON.stringify({rate: ctx.sampleRate, samples: chunks.flat()}); })()"""))
        x = np.array(played["samples"][played["rate"] // 2:])
        assert len(x) > played["rate"] // 2, len(x)
        assert np.sqrt(np.mean(x ** 2)) > 0.01, "the browser hears the callee"
        assert abs(dominant_frequency(played["rate"], x) - 1000) < 10
        # The browser's digits, RFC 4733, reach the SIP side.
        assert browser.eval(dtmf_js("59")) == "sent"
        time.sleep(1.0)
        assert [d for d, _, _ in callee.media.digits()] == ["5", "9"]
        bye_seen = threading.Thread(target=callee.wait_bye)
        bye_seen.start()
        caller.send(caller.req("BYE", 2))
        bye, _ = caller.final()
        bye_seen.join()
        assert bye == 200
    finally:
        browser.close()
        callee.media.close()
    time.sleep(0.5)
    assert gw.metric("rtcgw_calls_active") == 0
    assert gw.metric("rtcgw_legacy_ports_in_use") == 0


def test_200_calls_through_kamailio_leave_no_fds_or_ports_behind(gateway_factory, kamailio_ng):
    ng_port = free_port()
    gw = gateway_factory(f'[ng]\nenabled = true\nlisten = "127.0.0.1:{ng_port}"\n', log_filter="warn")
    kam_port, dest_port = free_port(), free_port()
    calls = 200
    uas = subprocess.Popen(
        ["sipp", "-sf", str(test_bridge.SIPP_DIR / "uas_echo.xml"), "-i", "127.0.0.1", "-p", str(dest_port),
         "-mi", "127.0.0.1", "-mp", str(free_port() & ~1), "-rtp_echo", "-m", str(calls), "-timeout", "120s",
         "-nostdin"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kamailio_ng(kam_port, dest_port, ng_port)
    time.sleep(1.0)
    idle = test_bridge.proc_figures(gw)
    try:
        p = subprocess.run(
            ["sipp", f"127.0.0.1:{kam_port}", "-sf", str(test_bridge.SIPP_DIR / "uac_load.xml"), "-m", str(calls),
             "-d", "200", "-r", "20", "-i", "127.0.0.1", "-p", str(free_port()), "-timeout", "120s", "-nostdin"],
            capture_output=True, text=True, timeout=180)
        assert p.returncode == 0, p.stdout[-1500:] + p.stderr[-1500:]
        out, err = uas.communicate(timeout=60)
        assert uas.returncode == 0, (out[-1000:], err[-1500:])
    finally:
        uas.kill()
    deadline = time.time() + 10
    while True:
        active = gw.metric("rtcgw_calls_active")
        after = test_bridge.proc_figures(gw)
        if (active == 0 and after == idle) or time.time() > deadline:
            break
        time.sleep(0.5)
    assert active == 0
    assert after == idle, f"fds, threads, ports: idle {idle}, after {after}"
    assert gw.metric("rtcgw_ng_requests_total", command="offer", result="ok") == calls
    assert gw.metric("rtcgw_ng_requests_total", command="delete", result="ok") >= calls


def test_forked_plain_branches_the_newest_answer_has_the_media(gateway_factory):
    """Early media from one branch, the 200 from another: the plain leg's
    RTP moves to the branch that answered last; the first branch's delete
    leaves the call, the caller's ends it."""
    gw = ng_gateway(gateway_factory)
    ng = NgClient(gw.ng_port)
    branches = []
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.05)
        branches.append(s)

    def plain(s):
        return PLAIN_OFFER.replace("40000", str(s.getsockname()[1]))

    def packets(s, seconds):
        n, end = 0, time.time() + seconds
        while time.time() < end:
            try:
                s.recv(2048)
                n += 1
            except socket.timeout:
                pass
        return n

    base = {"call-id": "ng-fork", "from-tag": "caller"}
    for b in ("z9hG4bKf1", "z9hG4bKf2"):
        r = ng(dict(base, command="offer", sdp=AIORTC_OFFER, ICE="remove", **{
            "transport-protocol": "RTP/AVP", "via-branch": b}))
        assert r["result"] == b"ok", r
    r = ng(dict(base, command="answer", sdp=plain(branches[0]), **{"to-tag": "bob-1"}))
    assert r["result"] == b"ok", r
    assert packets(branches[0], 1.0) > 30, "early media goes to the first branch"
    r = ng(dict(base, command="answer", sdp=plain(branches[1]), **{"to-tag": "bob-2"}))
    assert r["result"] == b"ok", r
    time.sleep(0.2)
    packets(branches[0], 0.1)
    packets(branches[1], 0.1)
    first = packets(branches[0], 1.0)
    packets(branches[1], 0.1)  # what came in meanwhile
    second = packets(branches[1], 0.5)
    assert first == 0 and second > 15, (first, second)
    q = ng({"command": "query", "call-id": "ng-fork"})
    assert set(q["tags"]) == {"caller", "bob-2"}, q["tags"]
    assert ng(dict(base, command="delete", **{"to-tag": "bob-1"}))["result"] == b"ok"
    assert gw.metric("rtcgw_calls_active") == 1, "the first branch only"
    assert ng(dict(base, command="delete"))["result"] == b"ok"
    assert gw.metric("rtcgw_calls_active") == 0
    ng.close()
