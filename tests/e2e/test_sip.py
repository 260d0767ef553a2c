"""Real-peer SIP tests: SIPp (Debian sip-tester) and raw SIP over UDP/TCP
against the rtcgw binary."""

import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

import aiortc_peer
from conftest import free_port

SIPP_DIR = Path(__file__).resolve().parents[1] / "sipp"
OFFER = (Path(__file__).resolve().parents[1] / "data" / "aiortc_offer.sdp").read_text()


def sipp(gw, scenario, transport="u1", calls=1, extra=(), timeout_s=30):
    """Runs a SIPp UAC scenario against the gateway; returns (rc, output).
    `timeout_s` bounds the whole SIPp run."""
    port = free_port()
    cmd = [
        "sipp", f"127.0.0.1:{gw.sip_port}", "-sf", str(SIPP_DIR / scenario), "-t", transport,
        "-m", str(calls), "-i", "127.0.0.1", "-p", str(port), "-timeout", f"{timeout_s}s", "-nostdin",
        "-trace_err", "-error_file", "/dev/stderr", *extra,
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s + 30)
    return p.returncode, p.stdout[-2000:] + p.stderr[-4000:]


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_sipp_call_options_cancel_and_retransmission(gateway_factory, transport):
    gw = gateway_factory()
    rc, out = sipp(gw, "options.xml", transport)
    assert rc == 0, out
    # An INVITE with a real WebRTC offer: 100, 200 with a WebRTC answer
    # (checked in the scenario), ACK, BYE/200.
    rc, out = sipp(gw, "uac_webrtc_call.xml", transport)
    assert rc == 0, out
    # CANCEL before the answer: 200 to the CANCEL, 487 to the INVITE.
    rc, out = sipp(gw, "cancel.xml", transport)
    assert rc == 0, out
    # A retransmitted INVITE is absorbed: one call. (-nr: SIPp must not
    # answer each retransmitted 100 with yet another INVITE.)
    before = gw.metric("rtcgw_sip_responses_total", code="200")
    rc, out = sipp(gw, "invite_retransmission.xml", transport, extra=["-nr"])
    assert rc == 0, out
    time.sleep(1.2)  # metrics snapshot period
    assert gw.metric("rtcgw_sip_responses_total", code="200") == before + 2  # INVITE, BYE
    assert gw.metric("rtcgw_sip_responses_total", code="487") == 1
    assert gw.metric("rtcgw_calls_active") == 0
    assert gw.proc.poll() is None


def request(method, body="", extra_headers="", branch=None, call_id=None, ctype="application/sdp", to_tag=""):
    branch = branch or f"z9hG4bK{time.monotonic_ns()}"
    call_id = call_id or f"cid-{time.monotonic_ns()}"
    ct = f"Content-Type: {ctype}\r\n" if body else ""
    return (
        f"{method} sip:demo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch={branch};rport\r\n"
        f"From: <sip:t@127.0.0.1>;tag=ft1\r\nTo: <sip:demo@127.0.0.1>{to_tag}\r\nCall-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContact: <sip:t@127.0.0.1:9>\r\n{extra_headers}{ct}"
        f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
    )


class Udp:
    def __init__(self, gw):
        self.gw = gw
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.s.settimeout(5)

    def send(self, text):
        self.s.sendto(text.encode() if isinstance(text, str) else text, ("127.0.0.1", self.gw.sip_port))

    def final(self, text=None):
        """Sends `text` (if given) and returns the first final response."""
        if text is not None:
            self.send(text)
        while True:
            data = self.s.recv(65535).decode(errors="replace")
            status = int(data.split()[1])
            if status >= 200:
                return status, data

    def silent(self, text, wait=0.7):
        """Sends and asserts nothing comes back."""
        self.send(text)
        self.s.settimeout(wait)
        try:
            data = self.s.recv(65535)
            raise AssertionError(f"expected no answer, got {data[:80]!r}")
        except socket.timeout:
            pass
        finally:
            self.s.settimeout(5)


def test_uas_answers_by_the_rules(gateway_factory):
    gw = gateway_factory()
    u = Udp(gw)
    status, resp = u.final(request("OPTIONS"))
    assert status == 200
    assert re.search(r"^Allow: .*INVITE", resp, re.M) and re.search(r"^Accept: application/sdp", resp, re.M)
    # rport and received stamped on our Via (RFC 3581).
    assert re.search(r"^Via: .*rport=\d+", resp, re.M) and "received=127.0.0.1" in resp

    assert u.final(request("NEWMETHOD"))[0] == 501
    status, resp = u.final(request("REGISTER"))
    assert status == 405 and re.search(r"^Allow:", resp, re.M)
    status, resp = u.final(request("OPTIONS", extra_headers="Require: nonexistent-extension\r\n"))
    assert status == 420 and re.search(r"^Unsupported: nonexistent-extension", resp, re.M)
    # An INVITE refused with a final response is ACKed in its transaction
    # (same branch), which stops the response's retransmissions.
    def refused_invite(body, ctype="application/sdp"):
        branch, cid = f"z9hG4bK-r-{time.monotonic_ns()}", f"r-{time.monotonic_ns()}"
        status, resp = u.final(request("INVITE", body, branch=branch, call_id=cid, ctype=ctype))
        tag = re.search(r"^To: .*;tag=([^;\s]+)", resp, re.M).group(1)
        u.send(request("ACK", branch=branch, call_id=cid, to_tag=f";tag={tag}"))
        return status, resp

    # A plain RTP/AVP offer with no codec the legacy leg takes (GSM only).
    avp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 3\r\n"
    status, resp = refused_invite(avp)
    assert status == 488 and "no codec in common" in resp.splitlines()[0], resp.splitlines()[0]
    assert refused_invite("hello", ctype="text/plain")[0] == 415
    # BYE for no dialog: 481.
    assert u.final(request("BYE", to_tag=";tag=nope"))[0] == 481
    # A late offer (INVITE without SDP): rtcgw offers WebRTC in the 200.
    cid = "late-offer-1"
    # Our real address as Contact: in-dialog requests from rtcgw go there.
    contact = f"<sip:t@127.0.0.1:{u.s.getsockname()[1]}>"
    status, resp = u.final(request("INVITE", call_id=cid).replace("<sip:t@127.0.0.1:9>", contact))
    assert status == 200 and "UDP/TLS/RTP/SAVPF" in resp and "a=setup:actpass" in resp
    to = re.search(r"^To: (.*)$", resp, re.M).group(1).strip()
    # ...and an ACK without the answer ends the call with a BYE.
    ack = request("ACK", call_id=cid).replace("To: <sip:demo@127.0.0.1>\r\n", f"To: {to}\r\n")
    u.send(ack)
    data = u.s.recv(65535).decode()
    assert data.startswith("BYE "), data[:60]
    for reason in ["unknown_method", "method_not_allowed", "unsupported_require"]:
        assert gw.metric("rtcgw_sip_rejected_total", reason=reason) >= 0  # exported
    time.sleep(1.2)
    assert gw.metric("rtcgw_sip_rejected_total", reason="unknown_method") == 1
    assert gw.metric("rtcgw_sip_rejected_total", reason="unsupported_require") == 1


def ruri(msg, uri):
    """`msg` (from request()) with another Request-URI."""
    return msg.replace("sip:demo@127.0.0.1 SIP/2.0\r\n", f"{uri} SIP/2.0\r\n", 1)


# RFC 4475-style cases: (name, message, expectation). Expectation: a status
# code, or None for "dropped".
def torture():
    ok = request("OPTIONS")
    inv = request("INVITE")
    weird_method = "!interesting-Method0123456789_*+`.%indeed'~"
    weird_user = "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    long_vias = "".join(
        f"{name}: SIP/2.0/TCP sip{i}.example.com\r\n"
        for i, name in zip(range(33, 0, -1), ["v", "V ", "ViA", "via", "VIA  ", "vIa"] * 6)
    )
    multipart = (
        "--7a9cbec02ceef655\r\nContent-Type: text/plain\r\n\r\nHello\r\n--7a9cbec02ceef655\r\n"
        "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        "0\x82\x00\x01\r\n\r\n\x00\r\n--7a9cbec02ceef655--\r\n"
    )
    return [
        # Valid but tortuous: must be accepted.
        ("compact forms", ok.replace("Via:", "v:").replace("Call-ID:", "i:").replace("From:", "f:")
            .replace("To:", "t:").replace("Content-Length:", "l:"), 200),
        ("folded header", ok.replace("Max-Forwards: 70", "Max-Forwards:\r\n  70"), 200),
        ("case and spaces", ok.replace("CSeq: 1 OPTIONS", "cseq  :   1    OPTIONS").replace("Via: SIP/2.0/UDP", "VIA : SIP / 2.0 / UDP"), 200),
        ("unknown header", ok.replace("Max-Forwards", "X-Weird: ;;,,;;\r\nMax-Forwards"), 200),
        ("escaped quote display name", ok.replace("From: <sip:t@127.0.0.1>", 'From: "J \\"Q\\" R" <sip:t@127.0.0.1>'), 200),
        ("no Max-Forwards", ok.replace("Max-Forwards: 70\r\n", ""), 200),
        # RFC 4475 3.1.1 valid messages (adapted to reach a final answer
        # without a call): 200 for OPTIONS, 501 for an unknown method, 405
        # for a known one rtcgw does not take.
        ("3.1.1.2 intmeth: token method, unusual Request-URI",
            ruri(request(weird_method), f"sip:{weird_user}:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com")
            .replace("To: <sip:demo@127.0.0.1>", f'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7F" <sip:{weird_user}@example.com>')
            .replace("Max-Forwards: 70", "Max-Forwards: 255\r\nextensionHeader-!.%*+_`'~: \ufeff\u5927\u505c\u96fb"),
            501),
        ("3.1.1.3 esc01: escapes in URIs", ruri(request("OPTIONS"), "sip:sips%3Auser%40example.com@example.net")
            .replace("To: <sip:demo@127.0.0.1>", "To: sip:%75se%72@example.com")
            .replace("Contact: <sip:t@127.0.0.1:9>", "Contact:\r\n  <sip:cal%6Cer@127.0.0.1:9;%6C%72;n%61me=v%61lue%25%34%31>"),
            200),
        ("3.1.1.4 escnull: %00 in URIs", request("REGISTER").replace("To: <sip:demo@127.0.0.1>", "To: sip:null-%00-null@example.com")
            .replace("Contact: <sip:t@127.0.0.1:9>", "Contact: <sip:%00@127.0.0.1:9>\r\nContact: <sip:%00%00@127.0.0.1:9>"),
            405),
        ("3.1.1.6 lwsdisp: no LWS before <", request("OPTIONS").replace("From: <sip:", "From: caller<sip:"), 200),
        ("3.1.1.7 longreq: long values, 34 Vias", request("OPTIONS")
            .replace("To: <sip:demo@127.0.0.1>", f'To: "I have a user name of {"extreme" * 10} proportion"<sip:demo@127.0.0.1:6000;'
                     f'unknownparam1=very{"long" * 20}value;longparam{"name" * 25}=shortvalue;very{"long" * 25}ParameterNameWithNoValue>')
            .replace(";tag=ft1", f";tag=12{'982' * 50}424;unknownheaderparam{'name' * 20}=unknowheaderparam{'value' * 15}")
            .replace("Max-Forwards: 70\r\n", f"Max-Forwards: 70\r\n{long_vias}Unknown-{'Long' * 20}-Name: unknown-{'long' * 20}-value\r\n"),
            200),
        ("3.1.1.9 semiuri: ; in the user part", ruri(request("OPTIONS"), "sip:user;par=u%40example.net@example.com")
            .replace("Max-Forwards", "Accept: application/sdp, application/pkcs7-mime,\r\n        multipart/mixed, multipart/signed,\r\n"
                     "        message/sip, message/sipfrag\r\nMax-Forwards"),
            200),
        ("3.1.1.10 transports: unknown Via transports", request("OPTIONS").replace(
            "Max-Forwards", "".join(f"Via: SIP/2.0/{t} t{i}.example.com;branch=z9hG4bKt{i}\r\n"
                                    for i, t in enumerate(["SCTP", "TLS", "UNKNOWN", "TCP"])) + "Max-Forwards"),
            200),
        ("3.1.1.11 mpart01: binary multipart body", request("MESSAGE", multipart, ctype="multipart/mixed;boundary=7a9cbec02ceef655"), 405),
        ("3.1.1.12 unreason: stray response, any reason phrase", "SIP/2.0 200 = 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKunreason\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\n"
            "Call-ID: unreason\r\nCSeq: 35 INVITE\r\nContent-Length: 0\r\n\r\n", None),
        ("3.1.1.13 noreason: stray response, empty reason phrase", "SIP/2.0 100 \r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKnoreason\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\n"
            "Call-ID: noreason\r\nCSeq: 35 INVITE\r\nContent-Length: 0\r\n\r\n", None),
        ("other Request-URI schemes are not malformed", ruri(request("OPTIONS"), "tel:+1-201-555-0123"), 200),
        # Invalid but answerable: 400 with the reason.
        ("CSeq method mismatch", ok.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"), 400),
        ("Content-Length too big", ok.replace("Content-Length: 0", "Content-Length: 500"), 400),
        ("bad Max-Forwards", ok.replace("Max-Forwards: 70", "Max-Forwards: seventy"), 400),
        ("negative CSeq", ok.replace("CSeq: 1 OPTIONS", "CSeq: -1 OPTIONS"), 400),
        ("3.1.2.6 quotbal: unterminated quote in To",
            inv.replace("To: <sip:demo@127.0.0.1>", 'To: "Mr. J. User <sip:demo@127.0.0.1>'), 400),
        ("unterminated < in From", ok.replace("From: <sip:t@127.0.0.1>", "From: <sip:t@127.0.0.1"), 400),
        ("unterminated quote in an INVITE's Contact",
            inv.replace("Contact: <sip:t@127.0.0.1:9>", 'Contact: "Joe <sip:t@127.0.0.1:9>'), 400),
        ("an INVITE's Contact without host", inv.replace("Contact: <sip:t@127.0.0.1:9>", "Contact: <sip:t@:9>"), 400),
        ("3.1.2.7 ltgtruri: <> around the Request-URI", ruri(inv, "<sip:demo@127.0.0.1>"), 400),
        ("3.1.2.8 lwsruri: LWS in the Request-URI", ruri(inv, "sip:demo@127.0.0.1; lr"), 400),
        ("3.1.2.9 lwsstart: several SP in the request line",
            inv.replace("INVITE sip:demo@127.0.0.1 SIP/2.0", "INVITE  sip:demo@127.0.0.1  SIP/2.0", 1), 400),
        # RFC 4475 lets an element reject this or ignore the SP: rtcgw rejects.
        ("3.1.2.10 trws: SP after the version", ok.replace("SIP/2.0\r\nVia", "SIP/2.0  \r\nVia", 1), 400),
        ("3.1.2.11 escruri: headers in the Request-URI", ruri(inv, "sip:demo@127.0.0.1?Route=%3Csip:example.com%3E"), 400),
        ("Request-URI without host", ruri(ok, "sip:demo@"), 400),
        ("Request-URI port out of range", ruri(ok, "sip:demo@127.0.0.1:70000"), 400),
        ("Request-URI empty parameter", ruri(ok, "sip:demo@127.0.0.1;;lr"), 400),
        ("not a SIP version", ok.replace("SIP/2.0\r\nVia", "HTTP/1.1\r\nVia", 1), 400),
        # Answerable, with 505 (RFC 3261 section 8.2.2 / 21.5.7).
        ("unknown SIP version", ok.replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia", 1), 505),
        ("3.1.2.16 badvers: SIP/7.0 in Request-Line and Via",
            request("OPTIONS").replace(" SIP/2.0\r\n", " SIP/7.0\r\n", 1).replace("Via: SIP/2.0/", "Via: SIP/7.0/"), 505),
        # Unanswerable: dropped.
        ("no Call-ID", ok.replace("Call-ID:", "X-Call-ID:"), None),
        ("no Via", ok.replace("Via:", "X-Via:"), None),
        ("garbage", "\x00\x01\x02 not sip at all\r\n\r\n", None),
        ("binary", bytes(range(256)) * 4, None),
        ("only CRLF", "\r\n\r\n", None),
        ("response without transaction", "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n"
            "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n", None),
        ("huge header", ok.replace("Max-Forwards", "X-Big: " + "a" * 60000 + "\r\nMax-Forwards"), 200),
    ]


def test_rfc4475_style_messages_never_crash_or_wedge(gateway_factory):
    gw = gateway_factory()
    u = Udp(gw)
    for name, msg, want in torture():
        if want is None:
            u.silent(msg)
        else:
            status, resp = u.final(msg)
            assert status == want, (name, resp[:200])
            if want == 400:
                assert resp.split("\r\n")[0].startswith("SIP/2.0 400 Bad Request ("), (name, resp[:120])
            if want == 505:
                assert resp.split("\r\n")[0].startswith("SIP/2.0 505 Version Not Supported ("), (name, resp[:120])
    # Over TCP too, with two messages in one segment and one split in two.
    s = socket.create_connection(("127.0.0.1", gw.sip_port), timeout=5)
    a, b = request("OPTIONS").encode(), request("NEWMETHOD").encode()
    s.sendall(a + b[:30])
    time.sleep(0.2)
    s.sendall(b[30:])
    got = b""
    while got.count(b"SIP/2.0 ") < 2:
        got += s.recv(65535)
    assert b"SIP/2.0 200 OK" in got and b"SIP/2.0 501 " in got
    # A stream that is not SIP is closed, and the server goes on.
    bad = socket.create_connection(("127.0.0.1", gw.sip_port), timeout=5)
    bad.sendall(b"X" * 70000)
    time.sleep(0.3)
    assert Udp(gw).final(request("OPTIONS"))[0] == 200
    assert gw.proc.poll() is None
    time.sleep(1.2)
    assert gw.metric("rtcgw_sip_rejected_total", reason="malformed") >= 5
    assert gw.metric("rtcgw_sip_rejected_total", reason="unparseable") >= 4


def test_access_control_refuses_other_sources(gateway_factory):
    gw = gateway_factory(sip_extra='allowed_sources = ["192.0.2.0/24"]')
    status, _ = Udp(gw).final(request("OPTIONS"))
    assert status == 403
    time.sleep(1.2)
    assert gw.metric("rtcgw_sip_rejected_total", reason="forbidden_source") == 1


def sipp_stats(path):
    """The last row of a SIPp -trace_stat CSV, as a dict."""
    import csv

    rows = list(csv.reader(open(path), delimiter=";"))
    return dict(zip(rows[0], rows[-1]))


def test_load_100_calls_per_second_for_60_seconds(gateway_factory, tmp_path):
    gw = gateway_factory(log_filter="warn")
    stats = tmp_path / "load.csv"
    rc, out = sipp(
        gw, "uac_load.xml", calls=6000, timeout_s=120,
        extra=["-r", "100", "-d", "200", "-trace_stat", "-stf", str(stats), "-fd", "5", "-max_socket", "2000"],
    )
    s = sipp_stats(stats)
    assert rc == 0, out
    assert int(s["SuccessfulCall(C)"]) == 6000, s
    assert int(s["FailedCall(C)"]) == 0, s
    assert float(s["CallRate(C)"]) >= 95, s
    # Every call was torn down: nothing left behind.
    time.sleep(1.5)
    assert gw.metric("rtcgw_calls_active") == 0
    assert gw.metric("rtcgw_calls_ended_total") == 6000


def test_sigterm_drains_then_byes_what_is_left(gateway_factory):
    import signal

    gw = gateway_factory(media_extra="drain_timeout_s = 3\n")
    u = Udp(gw)
    contact = f"<sip:t@127.0.0.1:{u.s.getsockname()[1]}>"
    status, ok = u.final(request("INVITE", OFFER, call_id="drain-1").replace("<sip:t@127.0.0.1:9>", contact))
    assert status == 200
    to = re.search(r"^To: (.*)$", ok, re.M).group(1).strip()
    u.send(request("ACK", call_id="drain-1").replace("To: <sip:demo@127.0.0.1>\r\n", f"To: {to}\r\n"))
    gw.proc.send_signal(signal.SIGTERM)
    time.sleep(1.5)
    # Draining: a dispatcher's OPTIONS probe and new INVITEs get 503.
    assert u.final(request("OPTIONS"))[0] == 503
    status, resp = u.final(request("INVITE", OFFER))
    assert status == 503 and re.search(r"^Retry-After:", resp, re.M)
    assert gw.proc.poll() is None, "the call in progress keeps the gateway up"
    # At the drain timeout, the call left is ended with a BYE.
    u.s.settimeout(6)
    while True:
        data = u.s.recv(65535).decode()
        if data.startswith("BYE "):
            break
    assert "drain-1" in data
    assert gw.proc.wait(timeout=10) == 0


def test_max_calls_gives_503_with_retry_after(gateway_factory):
    gw = gateway_factory(media_extra="max_calls = 1\ndrain_timeout_s = 1\n")
    u = Udp(gw)
    status, ok = u.final(request("INVITE", OFFER, call_id="cap-1"))
    assert status == 200
    to = re.search(r"^To: (.*)$", ok, re.M).group(1).strip()
    u.send(request("ACK", call_id="cap-1").replace("To: <sip:demo@127.0.0.1>\r\n", f"To: {to}\r\n"))
    branch = "z9hG4bKcapacity2"
    status, resp = u.final(request("INVITE", OFFER, call_id="cap-2", branch=branch))
    assert status == 503 and "at capacity" in resp.splitlines()[0], resp.splitlines()[0]
    assert re.search(r"^Retry-After: \d+", resp, re.M)
    tag = re.search(r"^To: .*;tag=([^;\s]+)", resp, re.M).group(1)
    u.send(request("ACK", call_id="cap-2", branch=branch, to_tag=f";tag={tag}"))
    # The HTTP API refuses the same way.
    status, headers, body = aiortc_peer.http("POST", gw.url + "/v1/calls", OFFER.encode(), "application/sdp")
    assert status == 503 and "retry-after" in headers and "capacity" in body
