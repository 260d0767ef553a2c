"""Debian's stock Kamailio with kamailio/kamailio-ng.cfg (a usual rtpengine
config whose rtpengine_sock is an -A override): the SIP proxy in front of a
media relay that speaks ng, rtpengine or rtcgw alike."""

import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "kamailio" / "kamailio-ng.cfg"


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
