"""Mid-call behaviour of bridged calls with real peers: early media, hold and
resume by re-INVITE from either side (onto a new port and codec, with delay
on the path), DTMF both ways (RFC 4733 on both legs, SIP INFO) whatever
telephone-events the browser offers, ICE restart, UPDATE, glare, session
timers, with aiortc and headless Chromium (through Kamailio) as the WebRTC
side and a plain-RTP SIP endpoint (legacy_peer.py) as the PBX."""

import asyncio
import json
import re
import socket
import struct
import threading
import time

import numpy as np
import pytest
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


class ChromiumCall:
    """Headless Chromium -> Kamailio (kamailio/kamailio.cfg) -> rtcgw ->
    Kamailio -> a plain-RTP phone (legacy_peer.LegacyCallee): the browser's
    offer (`offer_js`, through `edit`) goes in an INVITE with `headers`,
    the 200 is ACKed and applied. `gw`, `caller`, `callee`, `browser`,
    `ok` (the 200) and `answer` (its SDP) for the test; close() at the end."""

    def __init__(self, gateway_factory, kamailio_factory, tmp_path, offer_js=None, edit=lambda sdp: sdp,
                 headers="", sip_extra=""):
        from browser import OFFER_JS, Chromium, answer_js

        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind(("127.0.0.1", 0))
        self.sip.settimeout(20)
        kam_port = free_port()
        self.gw = gateway_factory(
            f'[route]\nmode = "bridge"\ntarget = "sip:{{user}}@127.0.0.1:{self.sip.getsockname()[1]}"\n',
            sip_extra=f'next_hop = "127.0.0.1:{kam_port}"\n' + sip_extra)
        kamailio_factory(kam_port, self.gw.sip_port, self.sip.getsockname()[1])
        self.callee = LegacyCallee(self.sip)
        self.browser = Chromium(tmp_path / "chromium")
        self.ended = False
        try:
            self.offer = edit(self.browser.eval(offer_js or OFFER_JS))
            self.caller = SipCaller(Via(kam_port), headers)
            answering = threading.Thread(target=self.callee.answer)
            answering.start()
            self.caller.send(self.caller.req("INVITE", 1, self.offer, branch="z9hG4bKchrome"))
            status, self.ok = self.caller.final()
            answering.join()
            assert status == 200, self.ok[:300]
            self.caller.to_tag = re.search(r"^To: .*?(;tag=[^;\s]+)", self.ok, re.M).group(1)
            self.caller.send(self.caller.req("ACK", 1))
            self.answer = self.ok.split("\r\n\r\n", 1)[1]
            assert self.browser.eval(answer_js(self.answer)) == "connected"
        except BaseException:
            self.close()
            raise

    def bye(self, cseq=99):
        """Ends the call from the browser's side (once)."""
        if not self.ended:
            self.ended = True
            self.caller.send(self.caller.req("BYE", cseq))
            return self.caller.final()[0]

    def close(self):
        try:
            if hasattr(self, "answer"):
                self.bye()
        except OSError:
            pass
        finally:
            self.browser.close()
            self.callee.media.close()


def test_browser_dtmf_ice_restart_and_hold_from_both_sides_through_kamailio(gateway_factory, kamailio_factory,
                                                                             tmp_path):
    """Headless Chromium -> Kamailio (kamailio/kamailio.cfg) -> rtcgw ->
    Kamailio -> a plain-RTP phone: the browser's own DTMF sender, an ICE
    restart and hold/resume from the browser (transceiver direction), then
    hold and resume from the phone onto a new port, rtcgw sending there and
    taking the phone's audio from there for the browser."""
    from browser import answer_js, direction_offer_js, dtmf_js

    call = ChromiumCall(gateway_factory, kamailio_factory, tmp_path)
    gw, caller, callee, browser, answer = call.gw, call.caller, call.callee, call.browser, call.answer
    media2 = None
    try:
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
            reoffer = browser.eval(direction_offer_js(direction))
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

        assert call.bye(5) == 200
        assert callee.wait_bye()
    finally:
        call.close()
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


def without_telephone_event(rate):
    """Drops the telephone-event at `rate` from an offer's audio section
    (its payload type, rtpmap and fmtp)."""
    def edit(sdp):
        pts = re.findall(rf"^a=rtpmap:(\d+) telephone-event/{rate}\r$", sdp, re.M)
        for pt in pts:
            sdp = re.sub(rf"^(m=audio .*?) {pt}(?=[ \r])", r"\1", sdp, count=1, flags=re.M)
            sdp = re.sub(rf"^a=(rtpmap|fmtp):{pt} .*\r\n", "", sdp, flags=re.M)
        return sdp
    return edit


def browser_events(frames, clock_of):
    """The digits in the browser's received frames (OFFER_SEEING_EVENTS_JS):
    (event, duration in ms from the end packet's field, arrival span in ms
    from the first packet to the first end packet)."""
    by_ts = {}
    for f in frames:
        if len(f["bytes"]) == 4 and f["pt"] in clock_of:
            by_ts.setdefault(f["ts"], []).append(f)
    out = []
    for ts, fs in sorted(by_ts.items(), key=lambda kv: kv[1][0]["at"]):
        end = next((f for f in fs if f["bytes"][1] & 0x80), None)
        if end is None:
            continue
        field = end["bytes"][2] << 8 | end["bytes"][3]
        out.append(("0123456789*#ABCD"[end["bytes"][0]], field * 1000 / clock_of[end["pt"]], end["at"] - fs[0]["at"]))
    return out


@pytest.mark.parametrize("offered", ["both", "48000", "8000"])
def test_browser_digits_both_ways_whatever_telephone_events_it_offers(gateway_factory, kamailio_factory, tmp_path,
                                                                      offered):
    """Issue 17, items 1 and 4, with Chromium through Kamailio: its offer as
    Chrome sends it (telephone-event at 48000 and 8000 Hz), or with one of
    the two. Digits of 100, 160 and 400 ms from the browser's RTCDTMFSender
    reach the phone as RFC 4733 at 8 kHz, and SIP INFO digits from the phone
    reach the browser (seen before its NetEq, insertable streams), each with
    the duration it was sent with, within one 20 ms packet. With only
    telephone-event/8000 beside Opus, libwebrtc's senders can only say whole
    frames (120 ms steps, see rtcgw_proto::rtp::event_clock): there, within
    half a step."""
    from browser import OFFER_SEEING_EVENTS_JS, dtmf_js

    edit = {"both": lambda sdp: sdp, "48000": without_telephone_event(8000), "8000": without_telephone_event(48000)}
    call = ChromiumCall(gateway_factory, kamailio_factory, tmp_path, OFFER_SEEING_EVENTS_JS, edit[offered])
    tolerance_ms = 20 if offered != "8000" else 60
    try:
        assert "telephone-event/48000" in call.offer or offered == "8000", call.offer
        clock_of = {int(pt): int(rate) for pt, rate in
                    re.findall(r"^a=rtpmap:(\d+) telephone-event/(\d+)", call.answer, re.M)}
        assert len(clock_of) == 1, call.answer
        time.sleep(1.0)
        sent = [("1", 100), ("4", 160), ("5", 400)]
        for tone, ms in sent:
            assert call.browser.eval(dtmf_js(tone, duration_ms=ms)) == "sent"
            time.sleep(0.6)
        got = [(d, duration / 8) for d, duration, _ in call.callee.media.digits()]
        print(f"{offered}: browser -> phone {got}; rtcgw:", [line for line in call.gw.log().splitlines()
                                                           if "audio clock" in line][:1])
        assert [d for d, _ in got] == [t for t, _ in sent], got
        off = [(t, ms, g) for (t, ms), (_, g) in zip(sent, got) if abs(g - ms) > tolerance_ms]
        assert not off, f"browser -> phone (digit, sent ms, arrived ms): {off}"

        for tone, ms in (("7", 100), ("8", 160), ("9", 400)):
            status, _ = call.callee.request("INFO", f"Signal={tone}\r\nDuration={ms}\r\n", "application/dtmf-relay")
            assert status == 200
            time.sleep(ms / 1000 + 0.3)
        time.sleep(0.5)
        events = browser_events(call.browser.eval("frames_in"), clock_of)
        print(f"{offered}: phone -> browser {events}")
        assert [d for d, _, _ in events] == ["7", "8", "9"], events
        off = [(d, ms, got, span) for (d, got, span), ms in zip(events, (100, 160, 400))
               if abs(got - ms) > tolerance_ms]
        assert not off, f"phone -> browser (digit, sent ms, field ms, arrival span ms): {off}"
        if offered != "8000":
            # On the wire as long as it says: updates from its start to its end.
            assert all(ms - 60 <= span <= ms + 40 for (_, _, span), ms in zip(events, (100, 160, 400))), events
    finally:
        call.close()


def test_browser_update_glare_and_a_refresher_that_goes_quiet_through_kamailio(gateway_factory, kamailio_factory,
                                                                               tmp_path):
    """Chromium through Kamailio with RFC 4028 session timers (Session-Expires
    90, the browser's side refreshing): the 200 negotiates them; a re-INVITE
    without SDP gets rtcgw's offer in the 200, and the browser's UPDATE
    offer crossing it is glare (491) until the ACK brings the answer; the
    retried UPDATE holds, another resumes, audio flows again. Then the
    browser's side stops refreshing: rtcgw ends the call on both legs
    min(32 s, a third) before the interval runs out (section 10)."""
    from browser import answer_js, direction_offer_js

    def browser_offer(direction):
        return call.browser.eval(direction_offer_js(direction))

    call = ChromiumCall(gateway_factory, kamailio_factory, tmp_path,
                        headers="Supported: timer\r\nSession-Expires: 90;refresher=uac\r\nMin-SE: 90\r\n",
                        sip_extra="session_timers = true")
    caller, callee, gw = call.caller, call.callee, call.gw
    try:
        assert re.search(r"^Session-Expires: 90;refresher=uac\r$", call.ok, re.M), call.ok[:600]
        assert re.search(r"^Require: timer\r$", call.ok, re.M), call.ok[:600]

        # A re-INVITE without SDP: rtcgw's 200 is an offer.
        caller.send(caller.req("INVITE", 2))
        status, ok2 = caller.final()
        assert status == 200, ok2[:300]
        rtcgw_offer = ok2.split("\r\n\r\n", 1)[1]
        assert "m=audio" in rtcgw_offer
        # Glare: the browser's hold offer (UPDATE) crosses it.
        caller.send(caller.req("UPDATE", 3, browser_offer("sendonly")))
        status, glare = caller.final()
        assert status == 491, glare[:300]
        # The browser rolls its offer back, answers rtcgw's, ACKs with it.
        answer = call.browser.eval(f"""(async () => {{
          await pc.setLocalDescription({{type: 'rollback'}});
          pc.getTransceivers()[0].direction = 'sendrecv';
          await pc.setRemoteDescription({{type: 'offer', sdp: {json.dumps(rtcgw_offer)}}});
          await pc.setLocalDescription(await pc.createAnswer());
          return pc.localDescription.sdp; }})()""")
        caller.send(caller.req("ACK", 2, answer))
        # The retried UPDATE goes through (hold), then a resume.
        for cseq, direction, expected in ((4, "sendonly", "a=recvonly"), (5, "sendrecv", "a=sendrecv")):
            caller.send(caller.req("UPDATE", cseq, browser_offer(direction)))
            status, ok = caller.final()
            assert status == 200, ok[:300]
            assert re.search(r"^Session-Expires: 90;refresher=uac\r$", ok, re.M), "the UPDATE refreshed the session"
            body = ok.split("\r\n\r\n", 1)[1]
            assert expected in body, body
            assert call.browser.eval(answer_js(body)) == "connected"
        last_refresh = time.monotonic()
        time.sleep(1.5)
        t = time.monotonic()
        assert len(callee.media.packets_between(t - 1.0, t)) > 30, "audio flows after the UPDATE resume"

        # The browser's side goes quiet: rtcgw's BYE at 90 - 30 = 60 s.
        bye = caller.wait_request("BYE", timeout=75)
        waited = time.monotonic() - last_refresh
        assert bye is not None, "no BYE after the session interval"
        assert 57 <= waited <= 63, f"BYE {waited:.1f} s after the last refresh"
        call.ended = True
        assert callee.wait_bye(), "the phone's leg ended too"
        assert gw.metric("rtcgw_sip_rejected_total", reason="session_expired") == 1
        assert gw.metric("rtcgw_sip_rejected_total", reason="request_pending") == 1
    finally:
        call.close()
    time.sleep(0.5)
    assert gw.metric("rtcgw_calls_active") == 0


# The browser's ear: the received track through a WebAudio analyser (the
# track also plays in a muted element, which Chromium needs to feed WebAudio
# from a remote track); peaks() samples the loudest frequency every 100 ms.
EAR_JS = """(async () => {
  const ctx = new AudioContext();
  const stream = new MediaStream([pc.getReceivers()[0].track]);
  const el = new Audio();
  el.muted = true;
  el.srcObject = stream;
  await el.play();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  ctx.createMediaStreamSource(stream).connect(analyser);
  window.peaks = async (n) => {
    const out = [], bins = new Float32Array(analyser.frequencyBinCount);
    for (let i = 0; i < n; i++) {
      await new Promise(r => setTimeout(r, 100));
      analyser.getFloatFrequencyData(bins);
      let best = 0;
      for (let k = 1; k < bins.length; k++) if (bins[k] > bins[best]) best = k;
      out.push(best * ctx.sampleRate / analyser.fftSize);
    }
    return out;
  };
  return ctx.state; })()"""


def test_browser_hears_the_phone_resume_on_a_new_port_with_40_ms_of_path_delay_20_times(
        gateway_factory, kamailio_factory, tmp_path):
    """Issue 17, item 2, with Chromium through Kamailio: the phone holds
    (sendonly, sending on), then resumes from a new port; its RTP has 40 ms
    of delay, so the old port's last packets arrive after the re-answer.
    Twenty cycles, tones alternating 1500/500 Hz per port: within 1 s of
    each resume rtcgw's audio reaches the new port and the browser hears the
    new port's tone."""
    call = ChromiumCall(gateway_factory, kamailio_factory, tmp_path)
    callee = call.callee
    callee.media.close()
    phones = [DelayedPhone(500.0)]
    callee.media = phones[0]
    cycles = []
    try:
        assert call.browser.eval(EAR_JS) == "running"
        phones[0].dest, phones[0].sending = callee.gw_media, True
        time.sleep(1.5)
        for i in range(20):
            assert "a=recvonly" in callee.reinvite("sendonly", None, phones[-1])
            time.sleep(0.3)
            new = DelayedPhone(1500.0 if i % 2 == 0 else 500.0)
            new.dest = callee.gw_media
            assert "a=sendrecv" in callee.reinvite("sendrecv", None, new)
            old = phones[-1]
            old.sending, new.sending = False, True
            t = time.monotonic()
            phones.append(new)
            time.sleep(0.2)
            heard = call.browser.eval("peaks(8)")
            cycles.append((new.received_between(t + 0.2, time.monotonic()), new.freq, heard))
        drops = {r: call.gw.metric("rtcgw_rtp_dropped_total", reason=r)
                 for r in ("wrong_source", "source_probation", "duplicate", "late")}
    finally:
        call.close()
        for p in phones:
            p.close()
    bad = [(i, to_phone, freq, heard) for i, (to_phone, freq, heard) in enumerate(cycles)
           if to_phone < 30 or sum(abs(f - freq) < 30 for f in heard) < 5]
    assert not bad, f"cycles without audio both ways within 1 s (cycle, packets to the new port, tone, heard): {bad} {drops}"
