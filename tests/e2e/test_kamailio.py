"""rtcgw behind a stock Kamailio (Debian's kamailio, kamailio/kamailio.cfg
from this repository): WebRTC caller -> Kamailio -> rtcgw -> Kamailio ->
plain RTP callee, and the reverse."""

import asyncio
import socket
import subprocess
import time
from pathlib import Path

import pytest

import kamailio_proc
import test_bridge
from conftest import band_power, dominant_frequency, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def kamailio_factory():
    started = []

    def start(kam_port, rtcgw_port, dest_port):
        p = kamailio_proc.start_example(subprocess.PIPE, kam_port, rtcgw_port, dest_port, free_port())
        started.append(p)
        return p

    yield start
    for p in started:
        print("---- kamailio ----\n" + kamailio_proc.stop(p)[-6000:])


class Via:
    """Points the test's SIP caller at Kamailio instead of rtcgw."""

    def __init__(self, port):
        self.sip_port = port


def test_webrtc_caller_through_kamailio_to_rtp_callee_and_back(gateway_factory, kamailio_factory):
    kam_port, dest_port = free_port(), free_port()
    gw = gateway_factory(
        f'[route]\nmode = "bridge"\ntarget = "sip:{{user}}@127.0.0.1:{dest_port}"\n',
        sip_extra=f'next_hop = "127.0.0.1:{kam_port}"')
    kam = kamailio_factory(kam_port, gw.sip_port, dest_port)
    uas = subprocess.Popen(
        ["sipp", "-sf", str(test_bridge.SIPP_DIR / "uas_echo.xml"), "-i", "127.0.0.1", "-p", str(dest_port),
         "-mi", "127.0.0.1", "-mp", str(free_port() & ~1), "-rtp_echo", "-m", "1", "-timeout", "40s",
         "-nostdin", "-trace_err", "-error_file", "/dev/stderr"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        statuses, bye_status, rate, pcm = asyncio.run(test_bridge.bridged_call(Via(kam_port), 5.0))
        out, err = uas.communicate(timeout=30)
    finally:
        uas.kill()
    assert 180 in statuses and bye_status == 200, statuses
    assert uas.returncode == 0, (out[-1500:], err[-2500:])
    steady = pcm[rate:]
    assert abs(dominant_frequency(rate, steady) - 1000) < 5
    assert band_power(rate, steady, 1000) > 0.8 * band_power(rate, steady, rate / 4, rate / 4)
    assert kam.poll() is None
    time.sleep(0.5)
    assert gw.metric("rtcgw_calls_active") == 0


def test_rtp_caller_through_kamailio_to_webrtc_callee(gateway_factory, kamailio_factory):
    callee = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    callee.bind(("127.0.0.1", 0))
    callee.settimeout(30)
    kam_port, dest_port = free_port(), callee.getsockname()[1]
    gw = gateway_factory(
        f'[route]\nmode = "bridge"\ntarget = "sip:{{user}}@127.0.0.1:{dest_port}"\n',
        sip_extra=f'next_hop = "127.0.0.1:{kam_port}"')
    kamailio_factory(kam_port, gw.sip_port, dest_port)
    test_bridge.plain_rtp_caller_to_webrtc_callee(Via(kam_port), gw, callee)
