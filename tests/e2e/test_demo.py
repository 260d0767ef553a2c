"""Real-peer tests of the demo target: aiortc calls the rtcgw binary."""

import asyncio
import os
import re
import time

import aiortc_peer
from conftest import assert_no_crosstalk, band_power, dominant_frequency, read_wav, steady


def run(coro):
    return asyncio.run(coro)


def answer_codec(sdp):
    m = re.search(r"^m=audio \d+ \S+ (\d+)", sdp, re.M)
    return re.search(rf"^a=rtpmap:{m.group(1)} (\S+)", sdp, re.M).group(1)


def candidate_addresses(sdp):
    return [l.split()[4] for l in sdp.splitlines() if l.startswith("a=candidate:")]


def test_aiortc_call_both_directions(gateway_factory, tmp_path):
    gw = gateway_factory()
    peer_wav = tmp_path / "peer.wav"
    r = run(aiortc_peer.call(gw.url, 1000.0, 4.0, str(peer_wav)))
    assert r["status"] == 201, r
    assert re.fullmatch(r"/v1/calls/[\w-]+", r["location"]), r["location"]
    assert r["delete_status"] == 204
    # Negotiated Opus, and ICE only on the configured address.
    assert answer_codec(r["answer"]).lower() == "opus/48000/2"
    cands = candidate_addresses(r["answer"])
    assert cands and all(a == "127.0.0.1" for a in cands), cands
    assert "a=end-of-candidates" in r["answer"] or cands  # non-trickle: complete SDP

    # rtcgw recorded the caller's 1 kHz tone.
    time.sleep(0.5)  # recording finalised after DELETE
    rate, x = read_wav(gw.recording(r["location"]))
    assert len(x) >= 3 * rate, f"recording too short: {len(x) / rate:.2f}s"
    x = steady(rate, x)
    assert abs(dominant_frequency(rate, x) - 1000.0) < 5
    assert band_power(rate, x, 1000.0) > 0.9 * band_power(rate, x, rate / 4, rate / 4)

    # The caller heard rtcgw's 440 Hz tone.
    rate, y = read_wav(peer_wav)
    assert len(y) >= 3 * rate
    y = steady(rate, y)
    assert abs(dominant_frequency(rate, y) - 440.0) < 5
    assert band_power(rate, y, 440.0) > 0.9 * band_power(rate, y, rate / 4, rate / 4)

    # Gone from the list after DELETE; a second DELETE is 404.
    assert aiortc_peer.http("GET", gw.url + "/v1/calls")[2].strip() == "[]"
    assert aiortc_peer.http("DELETE", gw.url + r["location"])[0] == 404


def tones(n):
    # Distinct tones, none a multiple of another or near 440 Hz.
    return [530.0 + 67.0 * i for i in range(n)]


def test_twenty_concurrent_calls_no_crosstalk_fixed_threads(gateway_factory, tmp_path):
    from conftest import dirty_kb

    dirty = dirty_kb()
    os.sync()  # the twenty recordings are written from the media tasks
    print(f"dirty page cache before the calls: {dirty} kB")
    gw = gateway_factory()
    freqs = tones(20)
    threads = {}

    async def scenario():
        first = asyncio.ensure_future(aiortc_peer.call(gw.url, freqs[0], 9.0, str(tmp_path / "p0.wav")))
        await asyncio.sleep(2.5)
        threads[1] = gw.threads()
        rest = [
            asyncio.ensure_future(aiortc_peer.call(gw.url, f, 5.0, str(tmp_path / f"p{i + 1}.wav")))
            for i, f in enumerate(freqs[1:])
        ]
        await asyncio.sleep(3.5)
        listed = aiortc_peer.http("GET", gw.url + "/v1/calls")[2]
        threads[20] = gw.threads()
        return [await first] + [await t for t in rest], listed

    results, listed = run(scenario())
    assert all(r["status"] == 201 for r in results), [r["status"] for r in results]
    assert listed.count('"id"') == 20, listed
    assert threads[20] == threads[1], f"threads grew with calls: {threads}"

    time.sleep(0.5)
    heard, leaks = [], []
    for f, r in zip(freqs, results):
        rate, x = read_wav(gw.recording(r["location"]))
        x = steady(rate, x, 1.0)
        heard.append((f, round(dominant_frequency(rate, x), 1), r["location"]))
        try:
            assert_no_crosstalk(rate, x, f, freqs, -35.0)
        except AssertionError as e:
            leaks.append((r["location"], str(e).splitlines()[0]))
    print("tones sent, heard:", heard)
    assert not leaks, leaks
    # Each call carries its own tone: the peak within a fifth of the 67 Hz
    # spacing (NetEq's time stretching under a 2-core CI's load of 20
    # aiortc peers has moved it 6.5 Hz, once in many runs).
    assert all(abs(h - f) < 13 for f, h, _ in heard), heard


def test_neteq_settings_reach_libwebrtc(gateway_factory, tmp_path):
    gw = gateway_factory(
        "[webrtc]\njitter_buffer_max_packets = 77\njitter_buffer_fast_accelerate = true\n"
        'jitter_buffer_min_delay_ms = 300\nlog_level = "info"\n',
        log_filter="info,webrtc=info",
    )

    async def scenario():
        call = asyncio.ensure_future(aiortc_peer.call(gw.url, 800.0, 5.0, str(tmp_path / "p.wav")))
        await asyncio.sleep(4.0)
        calls = aiortc_peer.http("GET", gw.url + "/v1/calls")[2]
        cid = re.search(r'"id":"([^"]+)"', calls).group(1)
        stats = aiortc_peer.http("GET", gw.url + f"/v1/calls/{cid}/stats?raw=true")[2]
        return await call, stats

    r, stats = run(scenario())
    assert r["status"] == 201
    log = gw.log()
    # libwebrtc's own voice engine logs the options it applied.
    applied = [l for l in log.splitlines() if "ApplyOptions" in l]
    assert any("audio_jitter_buffer_max_packets: 77" in l for l in applied), applied
    assert any("audio_jitter_buffer_fast_accelerate: 1" in l for l in applied), applied
    assert any("audio_jitter_buffer_min_delay_ms: 300" in l for l in applied), applied
    # And NetEQ acts on the minimum delay: its target delay is at least 300 ms.
    import json

    inbound = [s for s in json.loads(stats) if s["type"] == "inbound-rtp"][0]["members"]
    assert inbound["jitterBufferEmittedCount"] > 0
    target_ms = 1000 * inbound["jitterBufferTargetDelay"] / inbound["jitterBufferEmittedCount"]
    assert target_ms >= 250, inbound
    # rtcgw logs the settings at call start.
    assert re.search(r"call starting.*jitter_buffer_max_packets=77", log)


OFFER_AVP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)


def webrtc_offer():
    """A real aiortc offer (no call is made)."""
    from aiortc import RTCPeerConnection

    async def make():
        pc = RTCPeerConnection()
        pc.addTrack(aiortc_peer.ToneTrack(500.0))
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    return run(make())


def test_bad_input_gets_4xx_with_reason_and_server_keeps_serving(gateway_factory, tmp_path):
    gw = gateway_factory()
    good = webrtc_offer()
    post = lambda body, ctype="application/sdp": aiortc_peer.http(
        "POST", gw.url + "/v1/calls", body.encode() if isinstance(body, str) else body, ctype
    )
    cases = {
        "malformed": (post("this is not SDP\r\n"), 400, "malformed SDP"),
        "no audio": (post(good.replace("m=audio", "m=video")), 400, "no audio"),
        "plain RTP/AVP": (post(OFFER_AVP), 400, "not a WebRTC offer"),
        "libwebrtc parse error": (
            post(re.sub(r"a=candidate:[^\r\n]*", "a=candidate:1 1 udp", good, count=1)),
            400,
            "invalid SDP",
        ),
        # A digest of the wrong length: libwebrtc parses it and fails only
        # when applying the description (it was a 500).
        "fingerprint of the wrong length": (
            post(re.sub(r"a=fingerprint:\S+ (\S+)", lambda m: "a=fingerprint:sha-1 " + m.group(1), good)),
            400,
            "a sha-1 digest has 20 bytes",
        ),
        "too large": (post("v=0\r\n" + "a=x\r\n" * 20000), 413, "length limit"),
        "wrong content type": (post(good, "application/json"), 415, "application/sdp"),
        "binary": (post(b"\xff\xfe\x00garbage"), 400, "UTF-8"),
    }
    for name, ((status, _, body), want, reason) in cases.items():
        assert status == want, (name, status, body)
        assert reason.lower() in body.lower(), (name, body)
    assert aiortc_peer.http("DELETE", gw.url + "/v1/calls/nope")[0] == 404

    # Refusals are counted by reason.
    metrics = aiortc_peer.http("GET", gw.url + "/metrics")[2]
    for reason, n in [("malformed_sdp", 2), ("no_audio", 1), ("not_webrtc", 1), ("invalid_sdp", 1),
                      ("body_too_large", 1), ("content_type", 1)]:
        assert f'rtcgw_calls_refused_total{{reason="{reason}"}} {n}' in metrics, (reason, metrics)
    assert 'reason="internal"' not in metrics

    # ...and the next call works.
    r = run(aiortc_peer.call(gw.url, 1000.0, 2.0, str(tmp_path / "p.wav")))
    assert r["status"] == 201 and r["delete_status"] == 204
    assert gw.proc.poll() is None
