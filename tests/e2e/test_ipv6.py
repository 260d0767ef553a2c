"""IPv6 and dual stack: SIP on 127.0.0.1 and [::1] at once (sip.also_listen),
media on both families (media.addresses); each peer is answered in its own
family (Via, Contact, c=, o=, RTP), over UDP and TCP; and a call bridged
from IPv4 (a WebRTC client) to IPv6 (a plain RTP SIP callee)."""

import asyncio
import re
import socket
import threading
import time

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription

import aiortc_peer
from conftest import band_power, dominant_frequency, free_port
from legacy_peer import LegacyCallee, plain_call


def dual_stack(gateway_factory, extra="", legacy_extra=""):
    port6 = free_port()
    gw = gateway_factory(extra, sip_extra=f'also_listen = ["[::1]:{port6}"]\n',
                         media_extra='addresses = ["127.0.0.1", "::1"]\n', legacy_extra=legacy_extra)
    gw.sip6 = ("::1", port6)
    return gw


def test_dual_stack_each_peer_in_its_own_family(gateway_factory):
    gw = dual_stack(gateway_factory)
    ok6, got6, bye6 = plain_call(gw.sip6, host="::1")
    assert re.search(r"^Contact: <sip:rtcgw@\[::1\]:\d+>", ok6, re.M), ok6
    assert "c=IN IP6 ::1\r\n" in ok6 and "IN IP4" not in ok6.split("\r\n\r\n", 1)[1], ok6
    assert len(got6) > 50 and bye6, "RTP came back over IPv6 and the BYE was answered"
    ok4, got4, bye4 = plain_call(("127.0.0.1", gw.sip_port))
    assert re.search(r"^Contact: <sip:rtcgw@127\.0\.0\.1:\d+>", ok4, re.M), ok4
    assert "c=IN IP4 127.0.0.1\r\n" in ok4 and len(got4) > 50 and bye4
    # SIP over TCP on IPv6.
    t = socket.create_connection(gw.sip6, timeout=5)
    lport = t.getsockname()[1]
    t.sendall((f"OPTIONS sip:rtcgw@[::1]:{gw.sip6[1]} SIP/2.0\r\nVia: SIP/2.0/TCP [::1]:{lport};branch=z9hG4bKt6\r\n"
               f"From: <sip:py@[::1]>;tag=t6\r\nTo: <sip:rtcgw@[::1]>\r\nCall-ID: tcp6@py\r\nCSeq: 1 OPTIONS\r\n"
               f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode())
    resp = t.recv(65535).decode()
    t.close()
    assert resp.startswith("SIP/2.0 200"), resp[:200]
    time.sleep(0.5)
    assert gw.metric("rtcgw_calls_active") == 0


def test_a_webrtc_caller_on_ipv4_bridged_to_an_ipv6_sip_callee(gateway_factory):
    sip6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sip6.bind(("::1", 0))
    sip6.settimeout(20)
    callee_port = sip6.getsockname()[1]
    gw = dual_stack(gateway_factory, f'[route]\nmode = "bridge"\ntarget = "sip:{{user}}@[::1]:{callee_port}"\n',
                    legacy_extra='addresses = ["::1", "127.0.0.1"]\n')
    callee = LegacyCallee(sip6)

    async def main():
        pc = RTCPeerConnection()
        pc.addTrack(aiortc_peer.ToneTrack(1000.0))
        received, tasks = [], []
        pc.on("track", lambda t: tasks.append(asyncio.ensure_future(aiortc_peer.record(t, received))))
        await pc.setLocalDescription(await pc.createOffer())
        answering = threading.Thread(target=callee.answer, daemon=True)
        answering.start()
        loop = asyncio.get_running_loop()
        status, h, answer = await loop.run_in_executor(
            None, aiortc_peer.http, "POST", gw.url + "/v1/calls?to=alice", pc.localDescription.sdp.encode(),
            "application/sdp")
        answering.join(5)
        assert status == 201, answer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.sleep(4.0)
        await loop.run_in_executor(None, aiortc_peer.http, "DELETE", gw.url + h["location"])
        await pc.close()
        for t in tasks:
            t.cancel()
        return received

    try:
        received = asyncio.run(main())
        # The outbound leg is IPv6 through and through.
        assert callee.invite.startswith(f"INVITE sip:alice@[::1]:{callee_port}"), callee.invite[:200]
        assert re.search(r"^Via: SIP/2.0/UDP \[::1\]:", callee.invite, re.M), callee.invite
        assert re.search(r"^Contact: <sip:rtcgw@\[::1\]:", callee.invite, re.M), callee.invite
        assert "c=IN IP6 ::1\r\n" in callee.invite, callee.invite
        assert callee.wait_bye(), "DELETE ended the IPv6 leg"
    finally:
        callee.media.close()
    assert len(callee.media.audio) > 100, "RTP over IPv6 reached the callee"
    rate = received[0][0]
    pcm = np.concatenate([s for _, s in received]).astype(float)[rate:]
    assert abs(dominant_frequency(rate, pcm) - 1000) < 5
    assert band_power(rate, pcm, 1000) > 0.5 * band_power(rate, pcm, rate / 4, rate / 4)
