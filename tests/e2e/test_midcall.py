"""Mid-call behaviour of bridged calls with real peers: early media, hold and
resume by re-INVITE from the SIP side (onto a new port and codec), DTMF both
ways (RFC 4733 on both legs, SIP INFO), with aiortc and headless Chromium as
the WebRTC side and a plain-RTP SIP endpoint (legacy_peer.py) as the PBX."""

import asyncio
import re
import socket
import struct
import threading
import time

import numpy as np
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtpPacket

from conftest import dominant_frequency
from legacy_peer import LegacyCallee, Media
from conftest import free_port
from test_bridge import SipCaller, Via, aiortc_call

TE_PT = 101


def bridge_gateway(gateway_factory, sip_sock, extra=""):
    port = sip_sock.getsockname()[1]
    return gateway_factory(f'[route]\nmode = "bridge"\ntarget = "sip:{{user}}@127.0.0.1:{port}"\n' + extra)


def with_telephone_event(offer):
    """aiortc has no DTMF: its offer gets telephone-event/8000 so that rtcgw
    may send RFC 4733 to it (captured below, before aiortc drops the PT)."""
    offer = re.sub(r"^(m=audio .*)$", lambda m: m.group(1).rstrip("\r") + f" {TE_PT}\r", offer, count=1, flags=re.M)
    return offer.replace("a=rtpmap:0 PCMU/8000\r\n", f"a=rtpmap:0 PCMU/8000\r\na=rtpmap:{TE_PT} telephone-event/8000\r\n", 1)


def capture_telephone_events(monkeypatch, pt=TE_PT):
    """The RFC 4733 packets aiortc receives, as (timestamp, first 4 payload
    bytes), taken after SRTP, before aiortc's router drops the payload type
    it does not know."""
    events = []
    original = RTCDtlsTransport._handle_rtp_data

    async def capture(self, data, arrival_time_ms):
        packet = RtpPacket.parse(data)
        if packet.payload_type == pt:
            events.append((packet.timestamp, bytes(packet.payload[:4])))
        return await original(self, data, arrival_time_ms)

    monkeypatch.setattr(RTCDtlsTransport, "_handle_rtp_data", capture)
    return events


def test_early_media_hold_resume_on_new_port_and_codec_and_dtmf_to_webrtc(gateway_factory, monkeypatch):
    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind(("127.0.0.1", 0))
    sip.settimeout(20)
    gw = bridge_gateway(gateway_factory, sip)
    callee = LegacyCallee(sip, early_media=True)
    events = capture_telephone_events(monkeypatch)
    log = {}

    async def scenario():
        loop = asyncio.get_running_loop()
        received = []
        pc, caller, _, tasks = await aiortc_call(gw, callee, "z9hG4bKmid", with_telephone_event, received)
        log["statuses"] = list(caller.statuses)
        log["early_packets"] = len(callee.media.audio)
        await asyncio.sleep(3.0)

        # Hold from the SIP side: rtcgw answers recvonly and stops sending.
        log["hold_answer"] = await loop.run_in_executor(None, callee.reinvite, "sendonly")
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
        await asyncio.sleep(2.0)
        log["sent_on_hold"] = len(callee.media.packets_between(t0, time.monotonic()))

        # Resume on a new port with PCMA: rtcgw follows; the echo comes back.
        media2 = Media()
        log["resume_answer"] = await loop.run_in_executor(None, lambda: callee.reinvite("sendrecv", "PCMA", media2))
        t1 = time.monotonic()
        mark = len(received)
        await asyncio.sleep(3.0)
        log["after_resume"] = media2.packets_between(t1, time.monotonic())
        log["old_port_after_resume"] = len(callee.media.packets_between(t1 + 0.5, time.monotonic()))
        log["resumed_audio"] = received[mark:]

        # Digits from the SIP side: RFC 4733 on the new port, then SIP INFO.
        await loop.run_in_executor(None, media2.send_digit, 5, callee.gw_media)
        status, _ = await loop.run_in_executor(
            None, lambda: callee.request("INFO", "Signal=9\r\nDuration=160\r\n", "application/dtmf-relay"))
        log["info_status"] = status
        await asyncio.sleep(1.5)

        caller.send(caller.req("BYE", 2))
        bye, _ = await loop.run_in_executor(None, caller.final)
        log["bye"] = bye
        log["callee_bye"] = await loop.run_in_executor(None, callee.wait_bye)
        await pc.close()
        for t in tasks:
            t.cancel()
        media2.close()
        callee.media.close()

    asyncio.run(scenario())
    assert 183 in log["statuses"], log["statuses"]
    assert log["early_packets"] > 10, "media flowed to the callee on the 183, before its 200"
    assert "a=recvonly" in log["hold_answer"]
    assert log["sent_on_hold"] == 0, "nothing is sent to a party that put us on hold"
    assert re.search(r"^m=audio \d+ RTP/AVP 8 ", log["resume_answer"], re.M), log["resume_answer"]
    assert "a=sendrecv" in log["resume_answer"]
    assert re.search(r"^o=rtcgw (\d+) (\d+) ", log["resume_answer"], re.M).group(2) != \
        re.search(r"^o=rtcgw (\d+) (\d+) ", log["hold_answer"], re.M).group(2), "each answer has a new o= version"
    pts = {pt for _, pt, _ in log["after_resume"]}
    assert pts == {8} and len(log["after_resume"]) > 100, (pts, len(log["after_resume"]))
    assert log["old_port_after_resume"] == 0
    rate = log["resumed_audio"][0][0]
    x = np.concatenate([s for _, s in log["resumed_audio"]]).astype(float)[rate:]
    assert abs(dominant_frequency(rate, x) - 1000) < 5, "the echo is heard again after resume"
    # Digits reached the WebRTC leg as RFC 4733 (telephone-event/8000).
    digits, seen = [], set()
    for ts, p in events:
        if p[1] & 0x80 and ts not in seen:
            seen.add(ts)
            digits.append(("0123456789*#"[p[0]], struct.unpack("!H", p[2:4])[0]))
    assert [d for d, _ in digits] == ["5", "9"], digits
    assert all(600 <= dur <= 1000 for _, dur in digits[:1]), digits  # 100 ms at 8 kHz
    assert log["info_status"] == 200
    assert log["bye"] == 200 and log["callee_bye"]
    time.sleep(0.5)
    assert gw.metric("rtcgw_calls_active") == 0
    assert gw.metric("rtcgw_legacy_ports_in_use") == 0
    assert gw.metric("rtcgw_dtmf_digits_total") >= 2


def with_chrome_telephone_events(offer):
    """aiortc's offer with the telephone-events Chrome offers beside Opus:
    110 at 48000 Hz and 126 at 8000 Hz."""
    offer = re.sub(r"^(m=audio .*)$", lambda m: m.group(1).rstrip("\r") + " 110 126\r", offer, count=1, flags=re.M)
    return re.sub(r"(a=rtpmap:\d+ opus/48000/2\r\n)",
                  lambda m: m.group(1) + "a=rtpmap:110 telephone-event/48000\r\na=fmtp:110 0-15\r\n"
                  "a=rtpmap:126 telephone-event/8000\r\na=fmtp:126 0-15\r\n", offer, count=1)


def test_dtmf_toward_a_chrome_shaped_offer_goes_on_the_opus_clock(gateway_factory, monkeypatch):
    """Issue 17, item 1: with telephone-event at 48000 and 8000 Hz offered,
    a digit from the SIP side went out on the 8000 Hz payload type with its
    duration counted at 48 kHz (160 ms arrived as 40 ms). rtcgw answers the
    48000 Hz event only, and digits go out on it with their durations."""
    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind(("127.0.0.1", 0))
    sip.settimeout(20)
    gw = bridge_gateway(gateway_factory, sip)
    callee = LegacyCallee(sip)
    events = capture_telephone_events(monkeypatch, pt=110)
    log = {}

    async def scenario():
        loop = asyncio.get_running_loop()
        pc, caller, ok, _ = await aiortc_call(gw, callee, "z9hG4bKchromedtmf", with_chrome_telephone_events)
        log["answer"] = ok.split("\r\n\r\n", 1)[1]
        await asyncio.sleep(2.0)
        # RFC 4733 from the phone (100 ms), then SIP INFO of 160 ms.
        await loop.run_in_executor(None, callee.media.send_digit, 5, callee.gw_media)
        await asyncio.sleep(0.5)
        status, _ = await loop.run_in_executor(
            None, lambda: callee.request("INFO", "Signal=9\r\nDuration=160\r\n", "application/dtmf-relay"))
        log["info_status"] = status
        await asyncio.sleep(1.5)
        caller.send(caller.req("BYE", 2))
        await loop.run_in_executor(None, caller.final)
        await loop.run_in_executor(None, callee.wait_bye)
        await pc.close()
        callee.media.close()

    asyncio.run(scenario())
    answer = log["answer"]
    assert re.search(r"^a=rtpmap:110 telephone-event/48000\r$", answer, re.M), answer
    assert "telephone-event/8000" not in answer, answer
    assert log["info_status"] == 200
    digits, seen = [], set()
    for ts, p in events:
        if p[1] & 0x80 and ts not in seen:
            seen.add(ts)
            digits.append(("0123456789*#"[p[0]], struct.unpack("!H", p[2:4])[0]))
    assert [d for d, _ in digits] == ["5", "9"], (digits, answer)
    # Durations on the 48 kHz clock, within one 20 ms packet (960).
    assert abs(digits[0][1] - 4800) <= 960, digits
    assert abs(digits[1][1] - 7680) <= 960, digits


def ulaw_pcm(packets):
    import rtp_tools

    return np.concatenate([rtp_tools.ulaw_decode(np.frombuffer(p, np.uint8)) for _, pt, p in packets if pt == 0]).astype(float)


def legacy_inbound(gw):
    """The (only) call's legacy leg: RTP packets received so far and
    samples concealed, from GET /v1/calls/{id}/stats."""
    import json
    import urllib.request

    calls = json.loads(urllib.request.urlopen(gw.url + "/v1/calls", timeout=5).read())
    stats = json.loads(urllib.request.urlopen(f"{gw.url}/v1/calls/{calls[0]['id']}/stats", timeout=5).read())
    leg = next(leg for leg in stats["legs"] if leg["leg"] == "legacy")
    return leg["inbound"]["packetsReceived"], leg["inbound"].get("concealedSamples") or 0


def test_browser_dtmf_ice_restart_and_hold_from_both_sides_through_kamailio(gateway_factory, kamailio_factory,
                                                                             tmp_path):
    """Headless Chromium -> Kamailio (kamailio/kamailio.cfg) -> rtcgw ->
    Kamailio -> a plain-RTP phone: the browser's own DTMF sender, an ICE
    restart and hold/resume from the browser (transceiver direction), then
    hold and resume from the phone onto a new port, rtcgw sending there and
    taking the phone's audio from there for the browser."""
    from browser import OFFER_JS, Chromium, answer_js, dtmf_js

    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind(("127.0.0.1", 0))
    sip.settimeout(20)
    kam_port = free_port()
    gw = gateway_factory(f'[route]\nmode = "bridge"\ntarget = "sip:{{user}}@127.0.0.1:{sip.getsockname()[1]}"\n',
                         sip_extra=f'next_hop = "127.0.0.1:{kam_port}"')
    kamailio_factory(kam_port, gw.sip_port, sip.getsockname()[1])
    callee = LegacyCallee(sip)
    browser = Chromium(tmp_path / "chromium")
    media2 = None
    try:
        offer = browser.eval(OFFER_JS)
        caller = SipCaller(Via(kam_port))
        answering = threading.Thread(target=callee.answer)
        answering.start()
        caller.send(caller.req("INVITE", 1, offer, branch="z9hG4bKchrome"))
        status, ok = caller.final()
        answering.join()
        assert status == 200, ok[:300]
        caller.to_tag = re.search(r"^To: .*?(;tag=[^;\s]+)", ok, re.M).group(1)
        caller.send(caller.req("ACK", 1))
        answer = ok.split("\r\n\r\n", 1)[1]
        assert browser.eval(answer_js(answer)) == "connected"
        time.sleep(1.0)

        # The browser's RFC 4733 digits (telephone-event/48000 with Opus)
        # come out on the legacy leg as telephone-event/8000.
        assert browser.eval(dtmf_js("123#")) == "sent"
        time.sleep(1.0)
        digits = callee.media.digits()
        assert [d for d, _, _ in digits] == ["1", "2", "3", "#"], digits
        for _, duration, _ in digits:
            assert 700 <= duration <= 1000, digits  # 100 ms at 8 kHz
        # Longer digits keep their length too (issue 17, item 4: they came
        # out at 240 and 480 ms for 160 and 400), within one 20 ms packet.
        for tone, ms in (("4", 160), ("5", 400)):
            assert browser.eval(dtmf_js(tone, duration_ms=ms)) == "sent"
            time.sleep(0.8)
            d, duration, _ = callee.media.digits()[-1]
            assert d == tone and abs(duration - 8 * ms) <= 160, (tone, ms, callee.media.digits())
        events = [e for e in callee.media.events if e[0] == 101]
        assert len(events) == len(callee.media.events), "telephone-event PT as negotiated"

        # ICE restart by re-INVITE from the browser's side: new credentials,
        # the WebRTC leg reconnects, the legacy leg never notices.
        before = len(callee.media.audio)
        restart = browser.eval("""(async () => {
          pc.restartIce();
          await pc.setLocalDescription(await pc.createOffer());
          if (pc.iceGatheringState !== 'complete') await new Promise(r => pc.addEventListener(
            'icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r()));
          return pc.localDescription.sdp; })()""")
        caller.send(caller.req("INVITE", 2, restart, branch="z9hG4bKrestart"))
        status, ok2 = caller.final()
        assert status == 200, ok2[:300]
        caller.send(caller.req("ACK", 2))
        answer2 = ok2.split("\r\n\r\n", 1)[1]
        ufrag = lambda s: re.search(r"^a=ice-ufrag:(\S+)", s, re.M).group(1)  # noqa: E731
        assert ufrag(answer2) != ufrag(answer), "rtcgw answered the ICE restart with new credentials"
        assert browser.eval(answer_js(answer2)) == "connected"
        t0 = time.monotonic()
        time.sleep(2.0)
        after = callee.media.packets_between(t0, time.monotonic())
        assert len(after) > 80, "the legacy leg kept its RTP flowing"
        x = ulaw_pcm(after)
        assert abs(dominant_frequency(8000, x) - 1000) < 10, "the browser's tone still reaches the SIP side"
        assert len(callee.media.audio) > before

        # Hold and resume from the browser's side (re-INVITE sendonly, then
        # sendrecv): libwebrtc answers recvonly, then sendrecv.
        for cseq, direction, expected in ((3, "sendonly", "a=recvonly"), (4, "sendrecv", "a=sendrecv")):
            reoffer = browser.eval(f"""(async () => {{
              pc.getTransceivers()[0].direction = '{direction}';
              await pc.setLocalDescription(await pc.createOffer());
              return pc.localDescription.sdp; }})()""")
            caller.send(caller.req("INVITE", cseq, reoffer, branch=f"z9hG4bKhold{cseq}"))
            status, okh = caller.final()
            assert status == 200, okh[:300]
            caller.send(caller.req("ACK", cseq))
            body = okh.split("\r\n\r\n", 1)[1]
            assert expected in body, body
            assert browser.eval(answer_js(body)) == "connected"
        t2 = time.monotonic()
        time.sleep(1.5)
        assert len(callee.media.packets_between(t2, time.monotonic())) > 50, "audio flows after the browser resumed"

        # Hold and resume from the phone, through Kamailio, onto a new port:
        # rtcgw's audio reaches the new port, and rtcgw takes the phone's
        # echo of it from there (for the browser) without concealing.
        assert "a=recvonly" in callee.reinvite("sendonly")
        time.sleep(0.5)
        media2 = Media()
        assert "a=sendrecv" in callee.reinvite("sendrecv", None, media2)
        time.sleep(0.3)
        packets, concealed = legacy_inbound(gw)
        t3 = time.monotonic()
        time.sleep(1.5)
        assert len(media2.packets_between(t3, time.monotonic())) > 50, "rtcgw sends to the new port"
        packets2, concealed2 = legacy_inbound(gw)
        assert packets2 - packets > 50, "rtcgw takes the phone's audio from its new port"
        # (NetEq's samples at its 48 kHz output: under a fifth of the 1.5 s.)
        assert concealed2 - concealed < 48000 * 1.5 / 5, "and plays it, not concealment"

        caller.send(caller.req("BYE", 5))
        bye, _ = caller.final()
        assert bye == 200
        assert callee.wait_bye()
    finally:
        browser.close()
        callee.media.close()
        if media2:
            media2.close()
    time.sleep(0.5)
    assert gw.metric("rtcgw_calls_active") == 0
    assert gw.metric("rtcgw_legacy_ports_in_use") == 0


class DelayedPhone:
    """A phone's RTP port: sends a tone (PCMU, 20 ms packets) to `dest`
    while `sending`, each packet `delay` seconds after it was made (the path
    delay: what was sent just before a switch is still in flight after it),
    and notes when rtcgw's packets arrive."""

    def __init__(self, freq, delay=0.040):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.005)
        self.port = self.sock.getsockname()[1]
        self.freq, self.delay = freq, delay
        self.dest, self.sending, self.running = None, False, True
        self.arrivals = []
        self.ssrc = 0x5000 + self.port
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        import rtp_tools

        in_flight, seq, ts, next_send = [], 0, 0, time.monotonic()
        while self.running:
            now = time.monotonic()
            if not self.sending:
                next_send = now
            elif self.dest and now >= next_send:
                t = (ts + np.arange(160)) / 8000.0
                payload = rtp_tools.ulaw_encode(8000 * np.sin(2 * np.pi * self.freq * t)).tobytes()
                in_flight.append((now + self.delay, rtp_tools.rtp(0, seq, ts, self.ssrc, payload)))
                seq, ts, next_send = seq + 1, ts + 160, next_send + 0.02
            while in_flight and in_flight[0][0] <= now:
                self.sock.sendto(in_flight.pop(0)[1], self.dest)
            try:
                data, _ = self.sock.recvfrom(2048)
            except (socket.timeout, OSError):
                continue
            if len(data) >= 12 and data[1] & 0x7F in (0, 8):
                self.arrivals.append(time.monotonic())

    def received_between(self, t0, t1):
        return sum(1 for a in self.arrivals if t0 <= a < t1)

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


def test_resume_on_a_new_port_with_40_ms_of_path_delay_20_times(gateway_factory):
    """Issue 17, item 2: the phone holds (sendonly: it goes on sending), then
    resumes on a new port; with 40 ms of delay on its RTP, packets from the
    old port still arrive after the re-answer, and rtcgw latched onto them:
    one-way audio. Twenty cycles in one call: each time, within 1 s of the
    resume, rtcgw's audio reaches the new port and the new port's tone
    reaches the browser."""
    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind(("127.0.0.1", 0))
    sip.settimeout(20)
    gw = bridge_gateway(gateway_factory, sip)
    callee = LegacyCallee(sip)
    callee.media.close()
    phones = [DelayedPhone(500.0)]
    callee.media = phones[0]
    cycles = []

    async def scenario():
        loop = asyncio.get_running_loop()
        received = []
        pc, caller, _, tasks = await aiortc_call(gw, callee, "z9hG4bKdelay", received=received)
        phones[0].dest, phones[0].sending = callee.gw_media, True
        await asyncio.sleep(2.0)
        for i in range(20):
            # Hold (from the port in use), the phone sending on.
            await loop.run_in_executor(None, lambda: callee.reinvite("sendonly", None, phones[-1]))
            await asyncio.sleep(0.3)
            new = DelayedPhone(1500.0 if i % 2 == 0 else 500.0)
            new.dest = callee.gw_media
            await loop.run_in_executor(None, lambda: callee.reinvite("sendrecv", None, new))
            # The old port stops; what it sent in the last 40 ms is still
            # on its way and arrives after the re-answer.
            old = phones[-1]
            old.sending, new.sending = False, True
            t = time.monotonic()
            phones.append(new)
            await asyncio.sleep(0.2)
            mark = len(received)
            await asyncio.sleep(1.0)
            heard = received[mark:]
            cycles.append((new.received_between(t + 0.2, t + 1.2), new.freq, heard))
        drops.update({r: gw.metric("rtcgw_rtp_dropped_total", reason=r)
                      for r in ("wrong_source", "source_probation", "duplicate", "late", "unknown_payload_type")})
        caller.send(caller.req("BYE", 2))
        await loop.run_in_executor(None, caller.final)
        await pc.close()
        for task in tasks:
            task.cancel()

    drops = {}
    try:
        asyncio.run(scenario())
    finally:
        for p in phones:
            p.close()
    assert len(cycles) == 20
    bad = []
    for i, (to_phone, freq, heard) in enumerate(cycles):
        rate = heard[0][0] if heard else 48000
        x = np.concatenate([s for _, s in heard]).astype(float) if heard else np.zeros(1)
        f = dominant_frequency(rate, x) if len(x) > rate // 2 else 0
        if to_phone < 40 or abs(f - freq) > 10:
            bad.append((i, to_phone, freq, f))
    assert not bad, f"cycles without audio both ways within 1 s (cycle, packets to the new port, tone, heard): {bad} {drops}"
