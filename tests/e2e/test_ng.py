"""rtcgw as the media relay of a stock Kamailio (Debian's kamailio with its
rtpengine module, kamailio/kamailio-ng.cfg: a usual rtpengine config with
rtpengine_sock pointing at rtcgw's ng port), and the ng protocol itself,
bad input included."""

import asyncio
import socket
import subprocess
import time
from pathlib import Path

import pytest

import test_bridge
from conftest import band_power, dominant_frequency, free_port
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
        p = subprocess.Popen(
            ["kamailio", "-f", str(ROOT / "kamailio" / "kamailio-ng.cfg"), "-DD", "-E", "-n", "1",
             "-A", f"KAM_PORT={kam_port}", "-A", f"DEST_PORT={dest_port}",
             "-A", f'NG_SOCK="udp:127.0.0.1:{ng_port}"',
             "-w", "/tmp", "-P", f"/tmp/kamailio-ng-{kam_port}.pid"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started.append(p)
        deadline = time.time() + 10
        # Ready once it listens (it pings the relay as it starts).
        while time.time() < deadline:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind(("127.0.0.1", kam_port))
            except OSError:
                return p
            finally:
                s.close()
            time.sleep(0.1)
        p.kill()
        raise AssertionError("kamailio did not start: " + (p.stdout.read() if p.stdout else ""))

    yield start
    for p in started:
        p.terminate()
        try:
            out, _ = p.communicate(timeout=5)
            print("---- kamailio ----\n" + out[-8000:])
        except subprocess.TimeoutExpired:
            p.kill()


class Via:
    """Points the test's SIP caller at Kamailio."""

    def __init__(self, port):
        self.sip_port = port


def test_webrtc_caller_through_kamailio_with_rtcgw_as_its_relay(gateway_factory, kamailio_ng):
    gw = ng_gateway(gateway_factory)
    kam_port, dest_port = free_port(), free_port()
    kam = kamailio_ng(kam_port, dest_port, gw.ng_port)
    uas = test_bridge.sipp_echo_uas(dest_port)
    try:
        time.sleep(0.3)
        statuses, bye_status, rate, pcm = asyncio.run(test_bridge.bridged_call(Via(kam_port), 5.0))
        out, err = uas.communicate(timeout=30)
    finally:
        uas.kill()
    assert 200 in statuses and bye_status == 200, statuses
    assert uas.returncode == 0, (out[-1500:], err[-2500:])
    # The caller's 1 kHz: WebRTC -> rtcgw -> PCMU -> SIPp's echo -> rtcgw -> WebRTC.
    assert len(pcm) > 3 * rate
    steady = pcm[rate:]
    assert abs(dominant_frequency(rate, steady) - 1000) < 5
    assert band_power(rate, steady, 1000) > 0.8 * band_power(rate, steady, rate / 4, rate / 4)
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
