"""SIP over TLS (sip.tls_*) against Kamailio's TLS module and a Python TLS
client; IPv6 through Kamailio. Certificates come from a CA the test makes
with openssl.

- A WebRTC caller through Kamailio to a SIPp callee with every hop between
  Kamailio and rtcgw over TLS, certificates checked both ways (kamailio.cfg
  -A WITH_TLS, kamailio/tls.cfg).
- Mutual TLS on rtcgw's listener; certificates reloaded on SIGHUP (a bad
  file leaves the one in use); connections already up go on.
- A plain RTP caller on IPv6 through Kamailio (-A WITH_IPV6) to rtcgw on
  [::1]."""

import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

import aiortc_peer
import kamailio_proc
import test_bridge
from conftest import free_port
from legacy_peer import plain_call
from test_demo import webrtc_offer

ROOT = Path(__file__).resolve().parents[2]


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class Pki:
    """A CA and certificates it signed, as PEM files in `dir`."""

    def __init__(self, dir):
        self.dir = Path(dir)
        self.dir.mkdir(exist_ok=True)
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=rtcgw test CA", cwd=self.dir)
        self.ca = self.dir / "ca.crt"

    def issue(self, name, cn, sans="IP:127.0.0.1,IP:::1"):
        """Certificate and key for `cn`: (crt path, key path)."""
        ext = self.dir / f"{name}.ext"
        ext.write_text(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                       "extendedKeyUsage=serverAuth,clientAuth\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=self.dir)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=self.dir)
        return self.dir / f"{name}.crt", self.dir / f"{name}.key"


def tls_sip(gw_tls_port, pki, cert=None):
    """A TLS connection to rtcgw's listener, with our client certificate
    `cert` (crt, key) or none."""
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    raw = socket.create_connection(("127.0.0.1", gw_tls_port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def options(conn, n):
    """An OPTIONS over `conn`; the response."""
    lport = conn.getsockname()[1]
    conn.sendall((f"OPTIONS sip:rtcgw@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{lport};branch=z9hG4bKtls{n}\r\n"
                  f"From: <sip:py@127.0.0.1>;tag=t{n}\r\nTo: <sip:rtcgw@127.0.0.1>\r\nCall-ID: tls{n}@py\r\n"
                  f"CSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode())
    return conn.recv(65535).decode()


def subject_cn(conn):
    return dict(x[0] for x in conn.getpeercert()["subject"])["commonName"]


def tls_gateway(gateway_factory, pki, extra="", sip_extra=""):
    crt, key = pki.issue("rtcgw", "rtcgw")
    port = free_port()
    gw = gateway_factory(extra, sip_extra=(
        f'tls_listen = ["127.0.0.1:{port}"]\ntls_cert = "{crt}"\ntls_key = "{key}"\n'
        f'tls_ca = "{pki.ca}"\ntls_client_ca = "{pki.ca}"\n{sip_extra}'))
    gw.tls_port = port
    return gw


def test_a_call_through_kamailio_with_tls_on_both_hops(gateway_factory, tmp_path):
    pki = Pki(tmp_path / "pki")
    kam_crt, kam_key = pki.issue("kamailio", "kamailio")
    tls_cfg = tmp_path / "tls.cfg"
    tls_cfg.write_text((ROOT / "kamailio" / "tls.cfg").read_text()
                       .replace("/etc/kamailio/tls/kamailio.crt", str(kam_crt))
                       .replace("/etc/kamailio/tls/kamailio.key", str(kam_key))
                       .replace("/etc/kamailio/tls/ca.crt", str(pki.ca)))
    kam_port, kam_tls, dest_port = free_port(), free_port(), free_port()
    gw = tls_gateway(gateway_factory, pki, f'[route]\nmode = "bridge"\ntarget = "sip:{{user}}@127.0.0.1:{dest_port}"\n',
                     f'next_hop = "sips:127.0.0.1:{kam_tls}"\n')
    kam = kamailio_proc.start_example(
        subprocess.PIPE, kam_port, gw.sip_port, dest_port, free_port(),
        ["WITH_TLS", f"KAM_TLS_PORT={kam_tls}", f"RTCGW_TLS_PORT={gw.tls_port}", f'TLS_CONFIG="{tls_cfg}"'])
    try:
        statuses = test_bridge.echo_call_via(kam_port, dest_port)
    finally:
        kam_log = kamailio_proc.stop(kam)
    print(kam_log[-4000:])
    assert 180 in statuses, statuses
    # Kamailio relayed the caller's INVITE to rtcgw over TLS, and rtcgw's
    # own INVITE reached it over TLS (its certificate checked: tls.cfg
    # requires one).
    assert re.search(r"INVITE from 127\.0\.0\.1:\d+ \(udp\) -> rtcgw at sip:127\.0\.0\.1:%d;transport=tls"
                     % gw.tls_port, kam_log), kam_log[-3000:]
    assert "INVITE from rtcgw (tls) -> destination" in kam_log, kam_log[-3000:]
    log = gw.log()
    assert re.search(r"SIP listening transport=Tls addr=127\.0\.0\.1:\d+", log), log[-2000:]
    assert "handshake failed" not in log and "connect failed" not in log, log[-3000:]
    time.sleep(0.5)
    assert gw.metric("rtcgw_calls_active") == 0


def test_mutual_tls_and_certificates_reloaded_on_sighup(gateway_factory, tmp_path):
    pki = Pki(tmp_path / "pki")
    gw = tls_gateway(gateway_factory, pki)
    client = pki.issue("client", "softswitch")
    # No client certificate: refused in the handshake (tls_client_ca).
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        c = tls_sip(gw.tls_port, pki)
        options(c, 1)
    deadline = time.time() + 5
    while "SIP TLS handshake failed" not in gw.log() and time.time() < deadline:
        time.sleep(0.1)
    assert "SIP TLS handshake failed" in gw.log()
    assert gw.metric("rtcgw_sip_tls_failures_total", direction="in", reason="handshake") == 1
    first = tls_sip(gw.tls_port, pki, client)
    assert subject_cn(first) == "rtcgw"
    resp = options(first, 2)
    assert resp.startswith("SIP/2.0 200") and "Via: SIP/2.0/TLS 127.0.0.1:" in resp, resp[:300]
    # A new certificate in the same files, then SIGHUP: new connections get
    # it, the one already up goes on.
    pki.issue("rtcgw", "rtcgw renewed")
    gw.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "TLS certificates and CAs reloaded" not in gw.log() and time.time() < deadline:
        time.sleep(0.1)
    second = tls_sip(gw.tls_port, pki, client)
    assert subject_cn(second) == "rtcgw renewed"
    assert options(second, 3).startswith("SIP/2.0 200")
    assert options(first, 4).startswith("SIP/2.0 200")
    # A broken key: logged, and the renewed certificate stays in use.
    (pki.dir / "rtcgw.key").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    gw.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "TLS reload failed" not in gw.log() and time.time() < deadline:
        time.sleep(0.1)
    assert re.search(r"TLS reload failed, the certificates in use stay: sip.tls_key .*rtcgw.key", gw.log()), \
        gw.log()[-2000:]
    third = tls_sip(gw.tls_port, pki, client)
    assert subject_cn(third) == "rtcgw renewed"
    for c in (first, second, third):
        c.close()
    assert gw.proc.poll() is None


def test_an_ipv6_caller_through_kamailio(gateway_factory):
    port6 = free_port()
    gw = gateway_factory(sip_extra=f'also_listen = ["[::1]:{port6}"]\n',
                         media_extra='addresses = ["127.0.0.1", "::1"]\n')
    kam_port = free_port()
    kam = kamailio_proc.start_example(subprocess.PIPE, kam_port, gw.sip_port, free_port(), free_port(),
                                      ["WITH_IPV6", f"RTCGW_PORT6={port6}"])
    try:
        ok, got, bye = plain_call(("::1", kam_port), host="::1")
    finally:
        kam_log = kamailio_proc.stop(kam)
        print(kam_log[-4000:])
    assert ok.startswith("SIP/2.0 200"), ok[:300]
    assert "c=IN IP6 ::1\r\n" in ok, ok
    assert re.search(r"^Record-Route: <sip:\[::1\]:%d;" % kam_port, ok, re.M), ok
    assert len(got) > 50 and bye, "RTP over IPv6 both ways, the BYE answered"
    assert re.search(r"INVITE from ::1:\d+ \(udp\) -> rtcgw at sip:\[::1\]:%d" % port6, kam_log), kam_log[-3000:]
    time.sleep(0.5)
    assert gw.metric("rtcgw_calls_active") == 0


def test_a_server_certificate_from_another_ca_fails_the_call_at_once(gateway_factory, tmp_path):
    """rtcgw checks the next hop's certificate (sip.tls_ca): a server whose
    certificate another CA signed is refused in the handshake, and the call
    fails at once (RFC 3261 section 8.1.3.1: as a 503), not after Timer B."""
    ours, theirs = Pki(tmp_path / "ours"), Pki(tmp_path / "theirs")
    crt, key = theirs.issue("server", "impostor")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(crt), str(key))
    attempts = []

    def serve():
        server.settimeout(30)
        try:
            conn, _ = server.accept()
            attempts.append(1)
            try:
                ctx.wrap_socket(conn, server_side=True).close()
            except (ssl.SSLError, OSError):
                pass
        except OSError:
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    gw = tls_gateway(gateway_factory, ours, '[route]\nmode = "bridge"\ntarget = "sip:{user}@127.0.0.1:5099"\n',
                     f'next_hop = "sips:127.0.0.1:{port}"\n')
    sdp = webrtc_offer()
    started = time.monotonic()
    status, _, body = aiortc_peer.http("POST", gw.url + "/v1/calls?to=alice", sdp.encode(), "application/sdp")
    took = time.monotonic() - started
    t.join(5)
    server.close()
    assert attempts, "rtcgw connected"
    assert status == 503 and took < 5, (status, took, body)
    log = gw.log()
    assert re.search(r"SIP connect failed: invalid peer certificate", log), log[-2000:]
    assert gw.metric("rtcgw_sip_tls_failures_total", direction="out", reason="handshake") == 1
