"""Debian's stock Kamailio for the tests: kamailio/kamailio-ng.cfg (a usual
rtpengine config whose rtpengine_sock is an -A override: the SIP proxy in
front of a media relay that speaks ng, rtpengine or rtcgw alike) and the
example kamailio/kamailio.cfg (rtcgw as a SIP B2BUA behind it, browsers on
its WebSocket)."""

import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "kamailio" / "kamailio-ng.cfg"
EXAMPLE = ROOT / "kamailio" / "kamailio.cfg"


def start_example(out, kam_port, rtcgw_port, dest_port, ws_port, defines=()):
    """The example config on loopback, its output to `out` (a file or
    subprocess.PIPE); returns once it relays an OPTIONS (to rtcgw, which
    answers 200) and accepts WebSocket connections on `ws_port`.
    `defines`: further -A defines ("WITH_TLS", "KAM_TLS_PORT=5071"...)."""
    extra = [a for d in defines for a in ("-A", d)]
    p = subprocess.Popen(
        ["kamailio", "-f", str(EXAMPLE), "-DD", "-E", "-n", "1",
         "-A", f"KAM_PORT={kam_port}", "-A", f"RTCGW_PORT={rtcgw_port}", "-A", f"DEST_PORT={dest_port}",
         "-A", f"WS_PORT={ws_port}", *extra, "-w", "/tmp", "-P", f"/tmp/kamailio-{kam_port}.pid"],
        stdout=out, stderr=subprocess.STDOUT, text=True)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.3)
    deadline = time.time() + 10
    try:
        while time.time() < deadline and p.poll() is None:
            s.sendto((f"OPTIONS sip:probe@127.0.0.1:{kam_port} SIP/2.0\r\n"
                      f"Via: SIP/2.0/UDP 127.0.0.1:{s.getsockname()[1]};branch=z9hG4bKprobe{time.monotonic_ns()}\r\n"
                      f"From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:probe@127.0.0.1>\r\n"
                      f"Call-ID: probe-{time.monotonic_ns()}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                      f"Content-Length: 0\r\n\r\n").encode(), ("127.0.0.1", kam_port))
            try:
                if not s.recv(65535).startswith(b"SIP/2.0 200"):
                    continue
                socket.create_connection(("127.0.0.1", ws_port), timeout=1).close()
                return p
            except OSError:
                time.sleep(0.1)
    finally:
        s.close()
    out_text = stop(p)
    raise AssertionError("kamailio did not start:\n" + out_text[-3000:])


def start(kam_port, dest_port, ng_port, stdout=subprocess.PIPE):
    """Kamailio on 127.0.0.1:`kam_port`, relaying every call to `dest_port`
    and its SDP to the relay on ng port `ng_port`; returns once it listens
    (it pings the relay as it starts)."""
    p = subprocess.Popen(
        ["kamailio", "-f", str(CONFIG), "-DD", "-E", "-n", "1",
         "-A", f"KAM_PORT={kam_port}", "-A", f"DEST_PORT={dest_port}",
         "-A", f'NG_SOCK="udp:127.0.0.1:{ng_port}"',
         "-w", "/tmp", "-P", f"/tmp/kamailio-ng-{kam_port}.pid"],
        stdout=stdout, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 10
    while time.time() < deadline:
        if p.poll() is not None:
            break
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", kam_port))
        except OSError:
            return p
        finally:
            s.close()
        time.sleep(0.1)
    p.kill()
    out = p.stdout.read() if stdout == subprocess.PIPE and p.stdout else ""
    raise RuntimeError("kamailio did not start: " + out[-3000:])


def stop(p):
    """Stops it; its output, when piped."""
    p.terminate()
    try:
        out, _ = p.communicate(timeout=5)
        return out or ""
    except subprocess.TimeoutExpired:
        p.kill()
        return ""
