"""WHIP-to-SIP (RFC 9725 with bearer tokens): an aiortc WHIP client POSTs
its offer with `?to=`, rtcgw INVITEs the SIP callee (a plain-RTP endpoint
that echoes) and answers the client once the callee answers. Refusals,
a BYE from the callee, DELETE, ringing that nobody answers, a client that
leaves, CORS and the security defaults."""

import asyncio
import json
import os
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription

import aiortc_peer
from conftest import ROOT, band_power, dominant_frequency, free_port
from legacy_peer import LegacyCallee, response
from ports import udp_socket

TOKEN = "test-token-0123456789abcdef"


def fold(headers):
    """Headers by lower-case name, repeated ones joined with ", " (RFC 9110 5.3)."""
    out = {}
    for k, v in headers.items():
        k = k.lower()
        out[k] = out[k] + ", " + v if k in out else v
    return out


def http(method, url, body=None, headers=None, timeout=30):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, fold(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, fold(e.headers), e.read().decode()


def auth(extra=None):
    return dict({"Authorization": f"Bearer {TOKEN}"}, **(extra or {}))


def sdp_headers():
    return auth({"Content-Type": "application/sdp"})


def bound_udp():
    return udp_socket(20)


def whip_gateway(gateway_factory, callee_port, http_extra=""):
    gw = gateway_factory(
        f'[route]\nmode = "bridge"\ntarget = "sip:{{user}}@127.0.0.1:{callee_port}"\n',
        http_extra=f'tokens = ["{TOKEN}"]\n'
        'cors_origins = ["https://app.example.com"]\n'
        'ice_servers = [{ urls = ["stun:stun.example.net:3478"] },'
        ' { urls = ["turn:turn.example.net?transport=udp"], username = "u", credential = "p" }]\n'
        + http_extra)
    gw.token = TOKEN
    return gw


class Client:
    """An aiortc WHIP client sending a 1 kHz tone and recording what it hears."""

    def __init__(self):
        self.pc = RTCPeerConnection()
        self.pc.addTrack(aiortc_peer.ToneTrack(1000.0))
        self.received = []
        self.tasks = []
        self.pc.on("track", lambda track: self.tasks.append(
            asyncio.ensure_future(aiortc_peer.record(track, self.received))))

    async def offer(self):
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp.encode()

    async def close(self):
        await self.pc.close()
        for t in self.tasks:
            t.cancel()

    def pcm(self):
        rate = self.received[0][0] if self.received else 48000
        return rate, (np.concatenate([s for _, s in self.received]).astype(float) if self.received else np.zeros(0))


def gateway_and_callee(gateway_factory):
    """A bridge-mode gateway with tokens and the plain RTP callee it dials."""
    sip = bound_udp()
    return whip_gateway(gateway_factory, sip.getsockname()[1]), LegacyCallee(sip)


def answer_in_thread(callee):
    t = threading.Thread(target=callee.answer, daemon=True)
    t.start()
    return t


def test_whip_to_sip_call_with_bearer_token_audio_both_ways_and_delete(gateway_factory):
    gw, callee = gateway_and_callee(gateway_factory)

    async def main():
        c = Client()
        offer = await c.offer()
        loop = asyncio.get_running_loop()
        post = lambda url, headers: loop.run_in_executor(None, lambda: http("POST", url, offer, headers))

        # No token, a wrong one, another scheme: 401 with a Bearer challenge.
        for headers, challenge in [
            ({"Content-Type": "application/sdp"}, 'Bearer realm="rtcgw"'),
            ({"Content-Type": "application/sdp", "Authorization": "Bearer wrong-token-0123456789"}, 'error="invalid_token"'),
            ({"Content-Type": "application/sdp", "Authorization": "Basic dXNlcjpwYXNz"}, 'Bearer realm="rtcgw"'),
        ]:
            status, h, body = await post(gw.url + "/v1/calls?to=alice", headers)
            assert status == 401, (status, body)
            assert challenge in h["www-authenticate"], h
        assert http("GET", gw.url + "/v1/calls")[0] == 401
        assert http("GET", gw.url + "/metrics")[0] == 401
        assert http("GET", gw.url + "/healthz")[0] == 200
        assert not callee.invite, "nothing reached SIP"

        # A bad target: 400 before any SIP.
        status, _, body = await post(gw.url + "/v1/calls?to=" + urllib.parse.quote("bob <sip:x>"), sdp_headers())
        assert status == 400 and json.loads(body)["reason"] == "bad_target", body

        # The call: 201 once the callee answers.
        answering = answer_in_thread(callee)
        t0 = time.monotonic()
        status, h, answer = await post(gw.url + "/v1/calls?to=%2B4930123", sdp_headers())
        answering.join(5)
        assert status == 201, answer
        assert callee.invite.startswith("INVITE sip:+4930123@127.0.0.1:"), callee.invite[:200]
        assert h["content-type"] == "application/sdp"
        location = h["location"]
        assert re.fullmatch(r"/v1/calls/[\w-]+", location), location
        links = h["link"]
        assert '<stun:stun.example.net:3478>; rel="ice-server"' in links, links
        assert 'username="u"; credential="p"; credential-type="password"' in links, links
        await c.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.sleep(4.0)

        # The call's resources: GET, stats, PATCH (405), unknown ids 404.
        status, _, body = http("GET", gw.url + location, headers=auth())
        assert status == 200 and {l["leg"] for l in json.loads(body)["legs"]} == {"webrtc", "legacy"}, body
        assert http("GET", gw.url + location + "/stats", headers=auth())[0] == 200
        status, h, _ = http("PATCH", gw.url + location, b"a=ice-ufrag:x\r\n",
                            auth({"Content-Type": "application/trickle-ice-sdpfrag"}))
        assert status == 405 and "DELETE" in h["allow"], (status, h)
        assert http("GET", gw.url + "/v1/calls/c999-nope", headers=auth())[0] == 404
        assert http("DELETE", gw.url + "/v1/calls/c999-nope", headers=auth())[0] == 404
        assert http("DELETE", gw.url + location)[0] == 401, "DELETE needs the token too"

        status = http("DELETE", gw.url + location, headers=auth())[0]
        assert status == 204
        assert callee.wait_bye(), "DELETE ended the SIP leg with BYE"
        assert http("GET", gw.url + location, headers=auth())[0] == 404
        await c.close()
        return c.pcm(), time.monotonic() - t0

    (rate, pcm), _ = asyncio.run(main())
    # The tone went WebRTC -> PCMU -> the callee's echo -> back: audio both ways.
    assert len(callee.media.audio) > 100, "the callee got RTP"
    assert len(pcm) > 2 * rate
    steady = pcm[rate:]
    assert abs(dominant_frequency(rate, steady) - 1000) < 5
    assert band_power(rate, steady, 1000) > 0.5 * band_power(rate, steady, rate / 4, rate / 4)
    callee.media.close()
    metrics = http("GET", gw.url + "/metrics", headers=auth())[2]
    assert 'rtcgw_http_denied_total{reason="no_token"}' in metrics
    assert 'rtcgw_http_denied_total{reason="bad_token"}' in metrics


def refuse_with(sip, status, reason, ring_first=False):
    """A callee that refuses rtcgw's INVITE (after ringing, if asked); the INVITE."""
    data, addr = sip.recvfrom(65535)
    req = data.decode()
    assert req.startswith("INVITE"), req[:100]
    if ring_first:
        sip.sendto(response(req, 180, "Ringing", "pbx", sip.getsockname()[1]).encode(), addr)
    sip.sendto(response(req, status, reason, "pbx", sip.getsockname()[1]).encode(), addr)
    return req


def test_whip_to_sip_refusals_no_answer_and_a_client_that_leaves(gateway_factory):
    sip = bound_udp()
    gw = whip_gateway(gateway_factory, sip.getsockname()[1], "ring_timeout_s = 2\n")

    async def offer():
        c = Client()
        o = await c.offer()
        await c.close()
        return o

    o = asyncio.run(offer())
    for sip_status, reason, want in [(486, "Busy Here", 409), (404, "Not Found", 404), (603, "Decline", 403)]:
        t = threading.Thread(target=refuse_with, args=(sip, sip_status, reason, True), daemon=True)
        t.start()
        status, h, body = http("POST", gw.url + "/v1/calls?to=bob", o, sdp_headers())
        t.join(5)
        assert status == want, (sip_status, status, body)
        j = json.loads(body)
        assert (j["sip_status"], j["sip_reason"], j["status"]) == (sip_status, reason, want), j
        ack = sip.recv(65535).decode()
        assert ack.startswith("ACK"), ack[:80]

    # Nobody answers: after ring_timeout_s the callee gets CANCEL, the client 504.
    def ring_only():
        while True:  # skip what is left of the previous call (its ACK)
            data, addr = sip.recvfrom(65535)
            req = data.decode()
            if req.startswith("INVITE"):
                break
        sip.sendto(response(req, 180, "Ringing", "pbx", sip.getsockname()[1]).encode(), addr)
        while True:
            msg, addr = sip.recvfrom(65535)
            msg = msg.decode()
            if msg.startswith("CANCEL"):
                sip.sendto(response(msg, 200, "OK", "pbx", sip.getsockname()[1]).encode(), addr)
                sip.sendto(response(req, 487, "Request Terminated", "pbx", sip.getsockname()[1]).encode(), addr)
                return

    t = threading.Thread(target=ring_only, daemon=True)
    t.start()
    t0 = time.monotonic()
    status, _, body = http("POST", gw.url + "/v1/calls?to=bob", o, sdp_headers())
    assert status == 504 and json.loads(body)["reason"] == "no_answer", (status, body)
    assert 1.5 < time.monotonic() - t0 < 6
    t.join(5)
    assert not t.is_alive(), "the callee got CANCEL"

    # The client leaves while it rings: CANCEL.
    gw2 = whip_gateway(gateway_factory, sip.getsockname()[1], "ring_timeout_s = 30\n")
    t = threading.Thread(target=ring_only, daemon=True)
    t.start()
    try:
        http("POST", gw2.url + "/v1/calls?to=bob", o, sdp_headers(), timeout=1.5)
    except (TimeoutError, OSError):
        pass
    t.join(10)
    assert not t.is_alive(), "the callee got CANCEL when the HTTP client left"
    time.sleep(0.5)
    assert gw2.metric("rtcgw_calls_active") == 0
    assert gw.proc.poll() is None and gw2.proc.poll() is None


def test_whip_to_sip_bye_from_the_callee_ends_the_webrtc_leg(gateway_factory):
    gw, callee = gateway_and_callee(gateway_factory)

    async def main():
        c = Client()
        states = []
        c.pc.on("connectionstatechange", lambda: states.append(c.pc.connectionState))
        offer = await c.offer()
        answering = answer_in_thread(callee)
        loop = asyncio.get_running_loop()
        status, h, answer = await loop.run_in_executor(
            None, lambda: http("POST", gw.url + "/v1/calls?to=alice", offer, sdp_headers()))
        answering.join(5)
        assert status == 201, answer
        await c.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.sleep(2.0)
        assert c.pc.connectionState == "connected", states
        status, _ = await loop.run_in_executor(None, lambda: callee.request("BYE"))
        assert status == 200
        # The WebRTC leg is gone: the resource and the call.
        for _ in range(50):
            if http("GET", gw.url + h["location"], headers=auth())[0] == 404:
                break
            await asyncio.sleep(0.1)
        assert http("GET", gw.url + h["location"], headers=auth())[0] == 404
        await c.close()

    asyncio.run(main())
    callee.media.close()
    time.sleep(0.5)
    assert gw.metric("rtcgw_calls_active") == 0
    assert "BYE from the callee" in gw.log()


def test_cors_preflight_and_the_web_phone_page(gateway_factory):
    gw = whip_gateway(gateway_factory, free_port())
    pre = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization, content-type"}
    status, h, _ = http("OPTIONS", gw.url + "/v1/calls", headers=pre)
    assert status == 204, status
    assert h["access-control-allow-origin"] == "https://app.example.com"
    assert "POST" in h["access-control-allow-methods"]
    assert "Authorization" in h["access-control-allow-headers"]
    assert h["accept-post"] == "application/sdp"
    status, _, _ = http("OPTIONS", gw.url + "/v1/calls", headers=dict(pre, Origin="https://evil.example.com"))
    assert status == 403
    # Responses carry the origin (a 401 too, so that the page can read it).
    status, h, _ = http("GET", gw.url + "/v1/calls", headers={"Origin": "https://app.example.com"})
    assert status == 401 and h["access-control-allow-origin"] == "https://app.example.com"
    assert "Location" in h["access-control-expose-headers"]
    # The web phone: public, in bridge mode it dials.
    status, h, page = http("GET", gw.url + "/")
    assert status == 200 and h["content-type"].startswith("text/html")
    assert 'data-mode="bridge"' in page and "<script>" in page
    assert 'src="http' not in page and "cdn" not in page.lower(), "nothing from elsewhere at run time"


def test_an_open_call_api_beyond_loopback_refuses_to_start(tmp_path):
    binary = os.environ.get("RTCGW_BIN", str(ROOT / "target/release/rtcgw"))
    cfg = tmp_path / "open.toml"
    cfg.write_text('[http]\nlisten = "0.0.0.0:0"\n')
    r = subprocess.run([binary, "--check-config", "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "http.tokens" in r.stderr + r.stdout and "toll fraud" in r.stderr + r.stdout, r.stderr
    cfg.write_text('[http]\nlisten = "0.0.0.0:0"\nallow_unauthenticated = true\n')
    r = subprocess.run([binary, "--check-config", "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
