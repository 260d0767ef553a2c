"""rtcgw behind a stock Kamailio (Debian's kamailio, kamailio/kamailio.cfg
from this repository): WebRTC caller -> Kamailio -> rtcgw -> Kamailio ->
plain RTP callee, and the reverse."""

import socket
import time
from pathlib import Path


import test_bridge
from test_bridge import Via
from conftest import free_port

ROOT = Path(__file__).resolve().parents[2]



def test_webrtc_caller_through_kamailio_to_rtp_callee_and_back(gateway_factory, kamailio_factory):
    kam_port, dest_port = free_port(), free_port()
    gw = gateway_factory(
        f'[route]\nmode = "bridge"\ntarget = "sip:{{user}}@127.0.0.1:{dest_port}"\n',
        sip_extra=f'next_hop = "127.0.0.1:{kam_port}"')
    kam = kamailio_factory(kam_port, gw.sip_port, dest_port)
    statuses = test_bridge.echo_call_via(kam_port, dest_port)
    assert 180 in statuses, statuses
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
