"""A real browser phone through a softswitch: headless Chromium (its own
WebRTC, a fake microphone playing recorded speech) runs JsSIP (from npm),
registers over SIP-over-WebSocket (RFC 7118) to Debian's Kamailio with the
example kamailio/kamailio.cfg, and calls through rtcgw (bridge mode) to a
plain-RTP SIP endpoint, and is called from one. All on loopback."""

import http.server
import re
import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

import browser
import kamailio_proc
import rtp_tools
import test_bridge
from conftest import ROOT, free_port
from legacy_peer import LegacyCallee
from test_midcall import ulaw_pcm

PAGE = ROOT / "tests" / "e2e" / "jssip" / "phone.html"
NPM_DIR = ROOT / "target" / "e2e-npm"
JSSIP_VERSION = "3.13.8"
USER = "alice"  # the browser's SIP user at Kamailio
EXTENSION = "1000"  # the SIP side's extension the browser calls


def jssip_js():
    """JsSIP as one browser script. The npm packages (tests/e2e/jssip/
    package.json, pinned with integrity by its package-lock.json) are
    installed with npm ci into target/e2e-npm (scripts/test does it; done
    here when missing); JsSIP 3.13 ships only CommonJS (lib/), so esbuild
    bundles it for the page."""
    out = NPM_DIR / f"jssip-{JSSIP_VERSION}.js"
    if out.exists():
        return out
    pkg = NPM_DIR / "node_modules" / "jssip"
    if not pkg.exists():
        NPM_DIR.mkdir(parents=True, exist_ok=True)
        for f in ("package.json", "package-lock.json"):
            shutil.copy(PAGE.parent / f, NPM_DIR / f)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NPM_DIR,
                       check=True, timeout=300)
    tmp = out.with_suffix(".tmp")
    subprocess.run([str(NPM_DIR / "node_modules" / ".bin" / "esbuild"), str(pkg / "lib" / "JsSIP.js"),
                    "--bundle", "--format=iife", "--global-name=JsSIP", "--minify", "--log-level=warning",
                    f"--outfile={tmp}"], check=True, timeout=120)
    tmp.rename(out)
    return out


def assert_audio_both_ways(heard, stats):
    """The SIP side's recording (PCM) holds speech, not silence; the
    browser's getStats shows audio received (with energy) and sent."""
    print("browser stats:", stats, "SIP side hears RMS", round(rms(heard)))
    assert len(heard) > 2 * 8000, len(heard)
    assert rms(heard) > 300, rms(heard)
    assert stats["inbound"]["packetsReceived"] > 100, stats
    assert stats["inbound"]["totalAudioEnergy"] > 0, stats
    assert stats["outbound"]["packetsSent"] > 100, stats


class PageServer:
    """The phone page and JsSIP over HTTP on 127.0.0.1 (a secure context,
    so getUserMedia works without TLS)."""

    def __init__(self):
        files = {"/": (PAGE, "text/html"), "/jssip.js": (jssip_js(), "text/javascript")}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path, ctype = files.get(self.path.split("?")[0], (None, None))
                if path is None:
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def rms(x):
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0


class Setup:
    """rtcgw (bridge mode) and Kamailio, the phone page served, Chromium
    showing it and registered as USER over ws://; close() ends them all."""

    def __init__(self, gateway_factory, tmp_path, dest_port):
        self.closers = []
        self.kam_port, self.ws_port = free_port(), free_port()
        # rtcgw's outbound legs go to Kamailio, which sends them on to a
        # registered browser or to the SIP destination.
        self.gw = gateway_factory(f'[route]\nmode = "bridge"\ntarget = "sip:{{user}}@127.0.0.1:{self.kam_port}"\n')
        self.kam_log = tmp_path / "kamailio.log"
        try:
            self.kam = kamailio_proc.start_example(
                self.kam_log.open("w"), self.kam_port, self.gw.sip_port, dest_port, self.ws_port)
            self.closers.append(lambda: kamailio_proc.stop(self.kam))
            server = PageServer()
            self.closers.append(server.close)
            mic = browser.fake_microphone(rtp_tools.SPEECH, tmp_path / "mic.wav")
            self.browser = browser.Chromium(tmp_path / "chromium", extra_flags=browser.fake_microphone_flags(mic))
            self.closers.append(self.browser.close)
            self.browser.cdp("Page.enable")
            self.browser.open(server.url, "document.readyState === 'complete' && !!window.JsSIP && !!window.phone")
            registered = self.browser.eval(
                f"phone.register('ws://127.0.0.1:{self.ws_port}', '{USER}', '127.0.0.1')", timeout=10)
            assert registered == "registered", registered
        except BaseException:
            self.close()
            raise

    def eval(self, js, timeout=15):
        try:
            return self.browser.eval(js, timeout=timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}\nphone log:\n" + "\n".join(self.phone_log())) from None

    def phone_log(self):
        try:
            return self.browser.eval("phone.log", timeout=5) or []
        except Exception as e:  # noqa: BLE001 - diagnostics only
            return [f"(no log: {e})"]

    def stats(self):
        return self.eval("phone.stats()")

    def calls_end(self, timeout=5):
        deadline = time.time() + timeout
        while self.gw.metric("rtcgw_calls_active") != 0 and time.time() < deadline:
            time.sleep(0.1)
        return self.gw.metric("rtcgw_calls_active") == 0

    def close(self):
        if getattr(self, "browser", None) and self.closers:
            print("---- phone log ----\n" + "\n".join(self.phone_log()))
        for close in reversed(self.closers):
            try:
                close()
            except Exception as e:  # noqa: BLE001 - close the rest
                print("cleanup:", e)
        self.closers = []
        if self.kam_log.exists():
            print("---- kamailio ----\n" + self.kam_log.read_text(errors="replace")[-6000:])


def test_browser_calls_a_sip_extension_through_kamailio(gateway_factory, tmp_path):
    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind(("127.0.0.1", 0))
    sip.settimeout(20)
    callee = LegacyCallee(sip)
    answered = {}
    answering = threading.Thread(target=lambda: answered.update(offer=callee.answer()), daemon=True)
    setup = None
    try:
        setup = Setup(gateway_factory, tmp_path, dest_port=sip.getsockname()[1])
        answering.start()
        # Browser -> ws -> Kamailio -> rtcgw -> Kamailio -> the extension.
        assert setup.eval(f"phone.call('sip:{EXTENSION}@127.0.0.1')", timeout=20) == "confirmed"
        answering.join(timeout=5)
        offer = answered.get("offer", "")
        assert re.search(r"^m=audio \d+ RTP/AVP ", offer, re.M), "rtcgw offered plain RTP to the SIP side"
        assert f"INVITE sip:{EXTENSION}@" in callee.invite and "Record-Route:" in callee.invite
        t0 = time.monotonic()
        time.sleep(4.0)
        stats = setup.stats()
        # The SIP side hears the browser's microphone: speech, not silence.
        # The browser hears the echo of its speech and sends its own.
        assert_audio_both_ways(ulaw_pcm(callee.media.packets_between(t0 + 1.0, time.monotonic())), stats)
        # The browser hangs up: its BYE reaches rtcgw, which ends the SIP leg.
        assert setup.eval("phone.hangup()").startswith("ended local"), setup.phone_log()
        assert callee.wait_bye(timeout=10), "the SIP side got the BYE"
        assert setup.calls_end(), "rtcgw_calls_active back to 0"
        assert setup.gw.metric("rtcgw_legacy_ports_in_use") == 0
    finally:
        if setup:
            setup.close()
        callee.media.close()
        sip.close()


class Entry:
    """Where the SIP caller sends its INVITE (Kamailio)."""

    def __init__(self, port):
        self.sip_port = port


class Caller(test_bridge.SipCaller):
    """test_bridge's UAC, calling USER at Kamailio."""

    def req(self, method, cseq, body="", branch=None):
        return super().req(method, cseq, body, branch).replace("sip:echo@", f"sip:{USER}@")


def test_sip_caller_rings_the_registered_browser_through_kamailio(gateway_factory, tmp_path):
    media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    media.bind(("127.0.0.1", 0))
    media.settimeout(0.02)
    dest = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # nothing should go here
    dest.bind(("127.0.0.1", 0))
    setup = None
    try:
        setup = Setup(gateway_factory, tmp_path, dest_port=dest.getsockname()[1])
        caller = Caller(Entry(setup.kam_port))
        sdp = (f"v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               f"m=audio {media.getsockname()[1]} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n")
        # PBX -> Kamailio -> rtcgw -> Kamailio (lookup) -> ws -> the browser.
        caller.send(caller.req("INVITE", 1, sdp, branch="z9hG4bKjssipinv"))
        status, ok = caller.final()
        assert status == 200, (ok[:300], setup.phone_log())
        assert 180 in caller.statuses, caller.statuses
        assert re.search(r"^m=audio \d+ RTP/AVP 0", ok, re.M), "the SIP caller gets a plain RTP answer"
        caller.to_tag = re.search(r"^To: .*?(;tag=[^;\s]+)", ok, re.M).group(1)
        caller.send(caller.req("ACK", 1))
        gw_rtp = ("127.0.0.1", int(re.search(r"^m=audio (\d+) RTP/AVP", ok, re.M).group(1)))
        assert setup.browser.wait_for("phone.state === 'confirmed' && phone.state", timeout=10)

        # 4 s of recorded speech as PCMU, 20 ms packets, while recording
        # what comes back (the browser's microphone, through rtcgw).
        speech = rtp_tools.read_speech(4.0)
        got, start = [], time.monotonic()
        for i in range(len(speech) // 160):
            payload = rtp_tools.ulaw_encode(speech[i * 160:(i + 1) * 160]).tobytes()
            media.sendto(rtp_tools.rtp(0, i, i * 160, 0x5151, payload, marker=i == 0), gw_rtp)
            while time.monotonic() < start + (i + 1) * 0.02:
                try:
                    got.append((time.monotonic(), media.recv(2048)))
                except socket.timeout:
                    pass
        stats = setup.stats()
        assert_audio_both_ways(
            ulaw_pcm([(t, p[1] & 0x7F, p[12:]) for t, p in got if t > start + 1.0 and len(p) > 12]), stats)

        # The caller hangs up; the BYE reaches the browser over its WebSocket.
        caller.send(caller.req("BYE", 2))
        bye, _ = caller.final()
        assert bye == 200
        ended = setup.browser.wait_for("phone.state.startsWith('ended') && phone.state", timeout=10)
        assert ended == "ended remote Terminated", ended
        assert setup.calls_end(), "rtcgw_calls_active back to 0"
        dest.settimeout(0.01)
        with pytest.raises(socket.timeout):
            dest.recv(65535)  # the registered user's call never went to DEST_PORT
    finally:
        if setup:
            setup.close()
        media.close()
        dest.close()
