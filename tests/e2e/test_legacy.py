"""The legacy (plain RTP) leg against real peers: SIPp playing real recorded
speech and RFC 4733 digits as PCMU and PCMA, and a Python RTP peer that
checks what rtcgw sends and throws bad packets at it."""

import re
import socket
import struct
import subprocess
import time

import numpy as np
import pytest

import rtp_tools
from conftest import band_power, dominant_frequency, free_port, read_wav

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="legacy speech and digits">
  <send retrans="500"><![CDATA[

      INVITE sip:demo@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:demo@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

v=0
o=sipp 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP {pt} 101
a=rtpmap:{pt} {codec}/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20

    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="200" rrs="true">
    <action>
      <ereg regexp="m=audio [0-9]+ RTP/AVP {pt} 101" search_in="body" check_it="true" assign_to="m"/>
    </action>
  </recv>
  <send><![CDATA[

      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:demo@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
  <pause milliseconds="{pause_ms}"/>
  <send retrans="500"><![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:demo@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]></send>
  <recv response="200" crlf="true"/>
  <Reference variables="m"/>
</scenario>
"""


def to_8k(x48):
    """48 kHz -> 8 kHz by averaging (a crude low-pass; enough to correlate)."""
    n = len(x48) // 6
    return x48[: n * 6].reshape(n, 6).mean(axis=1)


@pytest.mark.parametrize("codec,pt", [("PCMU", 0), ("PCMA", 8)])
def test_sipp_speech_and_digits_reach_the_recording(gateway_factory, tmp_path, codec, pt):
    gw = gateway_factory()
    speech = rtp_tools.speech_pcap(str(tmp_path / "speech.pcap"), 6.0, codec, digits=[1, 5, 11])
    sc = tmp_path / "legacy.xml"
    sc.write_text(SCENARIO.format(pt=pt, codec=codec, pcap=tmp_path / "speech.pcap", pause_ms=8500))
    cmd = ["sipp", f"127.0.0.1:{gw.sip_port}", "-sf", str(sc), "-m", "1", "-i", "127.0.0.1",
           "-p", str(free_port()), "-mi", "127.0.0.1", "-mp", str(free_port() & ~1), "-timeout", "40s",
           "-nostdin", "-trace_err", "-error_file", "/dev/stderr"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=70)
    assert p.returncode == 0, p.stdout[-1500:] + p.stderr[-2500:]
    time.sleep(0.5)
    log = gw.log()
    call_id = re.search(r"legacy call starting call=(\S+) codec=" + codec, log).group(1)
    rate, rec = read_wav(gw.recording("/v1/calls/" + call_id))
    assert rate == 48000 and len(rec) > 5 * rate
    # The recording holds the speech: high correlation with the source at
    # some delay (NetEQ's, which may shrink by a few ms when NetEQ
    # accelerates: measured per half second), after G.711 and resampling.
    # Source from 1 s on; the recording starts at call set-up, before the
    # speech, so the match sits 1 s plus set-up and NetEQ delay later.
    corr = rtp_tools.windowed_correlation(speech[8000:40000], to_8k(rec), max_lag=16000)
    assert corr > 0.7, f"correlation with the sent speech: {corr:.2f}"
    # RFC 4733 digits, each once despite the retransmitted end packets.
    digits = re.findall(r"DTMF digit \(RFC 4733\) call=" + re.escape(call_id) + r" digit=(\S) duration_ms=(\d+)", log)
    assert [d for d, _ in digits] == ["1", "5", "#"], digits
    assert all(int(ms) == 100 for _, ms in digits), digits
    assert gw.metric("rtcgw_dtmf_digits_total") == 3
    assert gw.metric("rtcgw_legacy_ports_in_use") == 0, "ports released at hangup"


def sip(sock, gw, text):
    sock.sendto(text.encode(), ("127.0.0.1", gw.sip_port))


def sip_final(sock):
    while True:
        data = sock.recv(65535).decode()
        if int(data.split()[1]) >= 200:
            return data


@pytest.mark.parametrize("srtp", [False, True], ids=["rtp", "sdes-srtp"])
def test_python_peer_hears_the_demo_and_bad_rtp_is_dropped(gateway_factory, tmp_path, srtp):
    gw = gateway_factory()
    import base64

    from pylibsrtp import Policy, Session

    our_key = bytes(range(30))
    profile = Policy.SRTP_PROFILE_AES128_CM_SHA1_80
    sig = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sig.bind(("127.0.0.1", 0))
    sig.settimeout(5)
    media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    media.bind(("127.0.0.1", 0))
    media.settimeout(0.02)
    mport = media.getsockname()[1]
    proto = "RTP/SAVP" if srtp else "RTP/AVP"
    crypto = f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(our_key).decode()}\r\n" if srtp else ""
    sdp = (f"v=0\r\no=py 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           f"m=audio {mport} {proto} 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n{crypto}")
    sport = sig.getsockname()[1]
    head = (f"sip:demo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{sport};branch=z9hG4bK{{b}};rport\r\n"
            f"From: <sip:py@127.0.0.1>;tag=pyt\r\nTo: <sip:demo@127.0.0.1>{{to}}\r\nCall-ID: py-legacy-1\r\n"
            f"CSeq: {{cseq}}\r\nContact: <sip:py@127.0.0.1:{sport}>\r\nMax-Forwards: 70\r\n")
    sip(sig, gw, "INVITE " + head.format(b="inv1", to="", cseq="1 INVITE")
        + f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}")
    ok = sip_final(sig)
    assert ok.startswith("SIP/2.0 200"), ok[:80]
    to_tag = re.search(r"^To: .*(;tag=\S+)", ok, re.M).group(1).strip()
    gw_port = int(re.search(rf"^m=audio (\d+) {proto} 8 101", ok, re.M).group(1))
    tx = rx = None
    if srtp:
        # rtcgw answers with its own key; we protect with ours (RFC 4568).
        their_key = base64.b64decode(re.search(r"^a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:(\S+)", ok, re.M).group(1))
        assert len(their_key) == 30 and their_key != our_key
        tx = Session(Policy(key=our_key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))
        rx = Session(Policy(key=their_key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=profile))
    sip(sig, gw, "ACK " + head.format(b="ack1", to=to_tag, cseq="1 ACK") + "Content-Length: 0\r\n\r\n")

    # 3 s of a 1 kHz tone from us, 20 ms packets, with bad packets between.
    tone = (0.3 * 32767 * np.sin(2 * np.pi * 1000 * np.arange(24000) / 8000)).astype(np.int16)
    bad = [
        b"\x40" + bytes(11) + bytes(160),                      # version 1
        b"\x80\x08\x00",                                        # truncated
        rtp_tools.rtp(55, 1, 1, 99, bytes(160)),                # unknown payload type
        b"\x8f" + rtp_tools.rtp(8, 1, 1, 99, bytes(20))[1:],    # 15 CSRCs past the end
        b"\xa0" + rtp_tools.rtp(8, 1, 1, 99, bytes(20))[1:-1] + b"\xff",  # padding past the end
        b"\x80\xc8\x00\x30" + bytes(8),                         # RTCP with a wrong length
    ]
    got = []
    start = time.monotonic()
    for i in range(150):
        payload = rtp_tools.alaw_encode(tone[i * 160:(i + 1) * 160]).tobytes()
        packet = rtp_tools.rtp(8, i, i * 160, 0xABCDEF, payload, marker=i == 0)
        media.sendto(tx.protect(packet) if tx else packet, ("127.0.0.1", gw_port))
        if i % 25 == 5:
            media.sendto(bad[(i // 25) % len(bad)], ("127.0.0.1", gw_port))
        due = start + (i + 1) * 0.02
        while time.monotonic() < due:
            try:
                data = media.recv(2048)
                if rx and len(data) > 12 and not (192 <= data[1] <= 223):
                    data = rx.unprotect(data)
                got.append(data)
            except socket.timeout:
                pass
    for b in bad:
        media.sendto(b, ("127.0.0.1", gw_port))
    time.sleep(0.1)
    sip(sig, gw, "BYE " + head.format(b="bye1", to=to_tag, cseq="2 BYE") + "Content-Length: 0\r\n\r\n")
    assert sip_final(sig).startswith("SIP/2.0 200")

    # What rtcgw sent: PCMA, 20 ms packets, the demo's 440 Hz tone.
    rtp = [p for p in got if len(p) > 12 and p[1] & 0x7F == 8]
    assert len(rtp) > 100, f"{len(rtp)} RTP packets from rtcgw"
    seqs = [struct.unpack("!H", p[2:4])[0] for p in rtp]
    tss = [struct.unpack("!I", p[4:8])[0] for p in rtp]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))
    assert all((b - a) & 0xFFFFFFFF == 160 for a, b in zip(tss, tss[1:]))
    pcm = np.concatenate([rtp_tools.alaw_decode(np.frombuffer(p[12:], np.uint8)) for p in rtp]).astype(float)
    assert abs(dominant_frequency(8000, pcm) - 440) < 5
    # RTCP arrived too (rtcp-mux was not offered: on rtcgw's RTP port + 1, so not here) -
    # and the stream survived the bad packets: rtcgw recorded our tone.
    time.sleep(0.5)
    call_id = re.search(r"legacy call starting call=(\S+)", gw.log()).group(1)
    rate, rec = read_wav(gw.recording("/v1/calls/" + call_id))
    rec = rec[rate // 2:]
    assert abs(dominant_frequency(rate, rec) - 1000) < 5
    assert band_power(rate, rec, 1000) > 0.8 * band_power(rate, rec, rate / 4, rate / 4)
    # Bad packets: dropped and counted by reason (with SRTP, unauthenticated).
    reasons = ["srtp_auth_failed"] if srtp else [
        "bad_version", "truncated", "unknown_payload_type", "csrc_past_end", "padding_past_end", "bad_rtcp_length"]
    for reason in reasons:
        assert gw.metric("rtcgw_rtp_dropped_total", reason=reason) >= 1, reason
