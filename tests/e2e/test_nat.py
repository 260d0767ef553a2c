"""Behind a 1:1 NAT (tests/e2e/nat.py: public 127.0.0.2 forwarded to the
gateway's private 127.0.0.1): with media.addresses = ["127.0.0.1!127.0.0.2"]
and sip.announce, peers are only ever told the public address (ICE
candidates, c=, o=, Via, Contact) and calls have audio both ways through
the NAT. And the startup self-check refuses what cannot work."""

import asyncio
import json
import os
import re
import subprocess
import time
import wave

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription

import aiortc_peer
from conftest import ROOT, free_port
from legacy_peer import plain_call
from nat import PUBLIC, Nat

NAT_MEDIA = 'addresses = ["127.0.0.1!127.0.0.2"]\nport_min = {p}\nport_max = {q}\n'


def nat_gateway(gateway_factory):
    p = free_port() & ~1
    return gateway_factory(media_extra=NAT_MEDIA.format(p=p, q=p + 9), sip_extra='announce = "127.0.0.2"\n')


def unreachable_candidates(sdp):
    """The offer with its host candidates on a closed port of 127.0.0.4:
    a client behind a NAT of its own (libwebrtc ignores ports below 1024)."""
    return re.sub(r"(a=candidate:\S+ \d \S+ \d+) 127\.0\.0\.1 \d+", rf"\1 127.0.0.4 {free_port()}", sdp)


async def call_from_behind_a_nat(gw, pc):
    """POSTs `pc`'s offer with unreachable host candidates; (headers, answer)."""
    await pc.setLocalDescription(await pc.createOffer())
    offer = unreachable_candidates(pc.localDescription.sdp)
    status, h, answer = await asyncio.get_running_loop().run_in_executor(
        None, aiortc_peer.http, "POST", gw.url + "/v1/calls", offer.encode(), "application/sdp")
    assert status == 201, answer
    return h, answer


def recorded_rms(gw):
    """The RMS of the gateway's one recording (what it received)."""
    time.sleep(0.5)
    recs = list(gw.record_dir.glob("*.wav"))
    assert len(recs) == 1, recs
    with wave.open(str(recs[0])) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(float)
    return float(np.sqrt(np.mean(x ** 2)))


def test_webrtc_call_through_a_1_to_1_nat(gateway_factory):
    gw = nat_gateway(gateway_factory)
    nat = Nat()

    async def main():
        pc = RTCPeerConnection()
        pc.addTrack(aiortc_peer.ToneTrack(1000.0))
        received, tasks = [], []
        pc.on("track", lambda t: tasks.append(asyncio.ensure_future(aiortc_peer.record(t, received))))
        # The client is behind a NAT of its own: its host candidate leads
        # nowhere (a closed loopback port), so the only path is the one
        # the gateway learns from the checks arriving through our NAT.
        h, answer = await call_from_behind_a_nat(gw, pc)
        loop = asyncio.get_running_loop()
        # The peer is told the public address only.
        cands = re.findall(r"^a=candidate:\S+ \d \S+ \d+ (\S+) (\d+) typ host", answer, re.M)
        assert cands and all(ip == PUBLIC for ip, _ in cands), answer
        assert "127.0.0.1" not in answer, answer
        nat.open(*{int(port) for _, port in cands})
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.sleep(4.0)
        state = pc.connectionState
        await loop.run_in_executor(None, aiortc_peer.http, "DELETE", gw.url + h["location"])
        await pc.close()
        for t in tasks:
            t.cancel()
        return state, received

    try:
        state, received = asyncio.run(main())
    finally:
        nat.close()
    assert state == "connected"
    samples = sum(len(s) for _, s in received)
    assert samples > 2 * 48000, samples
    assert nat.counts["in"] > 100 and nat.counts["out"] > 100, nat.counts
    # The recording has our tone: audio went in through the NAT too.
    assert recorded_rms(gw) > 1000


def test_plain_rtp_and_sip_through_a_1_to_1_nat(gateway_factory):
    gw = nat_gateway(gateway_factory)
    nat = Nat()
    nat.open(gw.sip_port)
    try:
        # SIP to the public address; RTP to where the answer says (opened
        # in the NAT when the answer comes); the BYE to the Contact.
        ok, got, bye_ok = plain_call((PUBLIC, gw.sip_port), seconds=3.0,
                                     on_answer=lambda port: nat.open(port, port + 1))
    finally:
        nat.close()
    body = ok.split("\r\n\r\n", 1)[1]
    # SIP and SDP name the public address, never the private one.
    contact = re.search(r"^Contact: <([^>]+)>", ok, re.M).group(1)
    assert contact.startswith(f"sip:rtcgw@{PUBLIC}:{gw.sip_port}"), contact
    assert re.search(rf"^c=IN IP4 {re.escape(PUBLIC)}\r$", body, re.M), body
    assert re.search(rf"^o=.* IN IP4 {re.escape(PUBLIC)}\r$", body, re.M), body
    assert "127.0.0.1" not in body, body
    assert bye_ok, "the BYE reached the gateway through the NAT"
    assert len(got) > 100, "the demo's audio came back"
    assert nat.counts["in"] > 140, nat.counts
    assert recorded_rms(gw) > 100, "our speech reached the gateway through the NAT"


def test_the_self_check_refuses_what_cannot_work(tmp_path):
    binary = os.environ.get("RTCGW_BIN", str(ROOT / "target/release/rtcgw"))
    cases = [
        # Loopback media announced to peers on a public SIP address.
        ('[sip]\nlisten = "192.0.2.1:5060"\n', "loopback"),
        # The public address of a NAT written as if it were ours.
        ('[media]\naddresses = ["192.0.2.77"]\n', "not an address of this host"),
    ]
    for text, why in cases:
        cfg = tmp_path / "c.toml"
        cfg.write_text(text + f'[http]\nlisten = "127.0.0.1:{free_port()}"\n')
        if "sip" in text:
            r = subprocess.run([binary, "--check-config", "--config", str(cfg)], capture_output=True, text=True,
                               timeout=30)
        else:
            r = subprocess.run([binary, "--config", str(cfg)], capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and why in r.stdout + r.stderr, (text, r.stdout, r.stderr)


def test_a_call_without_audio_says_why(gateway_factory):
    """The NAT's ports never opened (the public address announced, nothing
    forwarding): the WebRTC leg gets no check at all, and 5 s after the
    answer the log and the call's stats say so, with the peer's candidates
    (the plain RTP leg's verdict, what was dropped and from where, is
    tested in memory: crates/proto/src/rtp/session.rs)."""
    gw = nat_gateway(gateway_factory)

    async def main():
        pc = RTCPeerConnection()
        pc.addTrack(aiortc_peer.ToneTrack(1000.0))
        h, answer = await call_from_behind_a_nat(gw, pc)
        loop = asyncio.get_running_loop()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.sleep(7.0)
        stats = await loop.run_in_executor(None, aiortc_peer.http, "GET", gw.url + h["location"] + "/stats")
        await loop.run_in_executor(None, aiortc_peer.http, "DELETE", gw.url + h["location"])
        await pc.close()
        return stats

    status, _, body = asyncio.run(main())
    assert status == 200, body
    leg = next(l for l in json.loads(body)["legs"] if l["leg"] == "webrtc")
    assert "no connectivity check" in leg.get("noMedia", ""), leg
    assert "127.0.0.4:" in leg["noMedia"], leg
    log = gw.log()
    assert re.search(r"WARN .*no media 5 s after the answer: ICE: no connectivity check", log), log[-3000:]
