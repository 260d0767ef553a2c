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
from conftest import band_power, dominant_frequency, free_port

SIPP_DIR = Path(__file__).resolve().parents[1] / "sipp"


class SipCaller:
    """Just enough of a SIP UAC over UDP to carry a WebRTC offer."""

    def __init__(self, gw):
        self.gw = gw
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.s.settimeout(15)
        self.port = self.s.getsockname()[1]
        self.to_tag = ""
        self.statuses = []

    def req(self, method, cseq, body="", branch=None):
        branch = branch or f"z9hG4bK{time.monotonic_ns()}"
        ct = "Content-Type: application/sdp\r\n" if body else ""
        return (f"{method} sip:echo@127.0.0.1:{self.gw.sip_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport\r\n"
                f"From: <sip:browser@127.0.0.1>;tag=caller\r\nTo: <sip:echo@127.0.0.1>{self.to_tag}\r\n"
                f"Call-ID: bridge-1\r\nCSeq: {cseq} {method}\r\nContact: <sip:browser@127.0.0.1:{self.port}>\r\n"
                f"Max-Forwards: 70\r\n{ct}Content-Length: {len(body.encode())}\r\n\r\n{body}")

    def send(self, text):
        self.s.sendto(text.encode(), ("127.0.0.1", self.gw.sip_port))

    def final(self):
        while True:
            data = self.s.recv(65535).decode()
            status = int(data.split()[1])
            self.statuses.append(status)
            if status >= 200:
                return status, data


async def bridged_call(gw, seconds):
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
    sip.send(sip.req("INVITE", 1, pc.localDescription.sdp, branch="z9hG4bKbridgeinv"))
    status, ok = await loop.run_in_executor(None, sip.final)
    assert status == 200, ok[:200]
    sip.to_tag = re.search(r"^To: .*?(;tag=[^;\s]+)", ok, re.M).group(1)
    body = ok.split("\r\n\r\n", 1)[1]
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


def test_webrtc_caller_reaches_plain_rtp_callee_and_hears_the_echo(gateway_factory):
    callee_port = free_port()
    gw = gateway_factory(f'[route]\nmode = "bridge"\ntarget = "sip:{{user}}@127.0.0.1:{callee_port}"\n')
    uas = subprocess.Popen(
        ["sipp", "-sf", str(SIPP_DIR / "uas_echo.xml"), "-i", "127.0.0.1", "-p", str(callee_port),
         "-mi", "127.0.0.1", "-mp", str(free_port() & ~1), "-rtp_echo", "-m", "1", "-timeout", "40s",
         "-nostdin", "-trace_err", "-error_file", "/dev/stderr"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
