"""The abuse benchmark (issue 15): floods, slow clients and garbage against a
release binary on loopback, as an attacker or a careless peer would, with
what the gateway answered and what it cost: CPU, memory, descriptors,
threads, log volume and disk, at idle before, right after each scenario and
at idle after. Every loop is bounded and stops by itself.

    abuse.py BINARY [BINARY...]   (scripts/bench-abuse builds them)

Prints a Markdown report (one column per binary) on stdout."""

import json
import os
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import rtp_tools  # noqa: E402
from legacy_peer import plain_call  # noqa: E402

OFFER = (ROOT / "tests" / "data" / "aiortc_offer.sdp").read_text().replace("\n", "\r\n").replace("\r\r\n", "\r\n")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Gateway:
    def __init__(self, binary, work, nofile=None):
        self.work = work
        self.http, self.sip = free_port(), free_port()
        self.record_dir = work / "recordings"
        self.log_path = work / "rtcgw.log"
        cfg = work / "rtcgw.toml"
        cfg.write_text(f'[http]\nlisten = "127.0.0.1:{self.http}"\n[sip]\nlisten = "127.0.0.1:{self.sip}"\n'
                       f'[media]\nmax_calls = 100\n[demo]\nrecord_dir = "{self.record_dir}"\n')
        pre = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) if nofile else None
        self.proc = subprocess.Popen([binary, "--config", str(cfg)], stdout=self.log_path.open("w"),
                                     stderr=subprocess.STDOUT, preexec_fn=pre, env=dict(os.environ, NO_COLOR="1"))
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz", timeout=1).read()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("rtcgw did not start: " + self.log_path.read_text()[-2000:])
                time.sleep(0.1)

    def alive(self):
        return self.proc.poll() is None

    def snapshot(self):
        pid = self.proc.pid
        if not self.alive():
            return {"alive": False}
        st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
        disk = sum(f.stat().st_size for f in self.record_dir.glob("*") if f.is_file()) if self.record_dir.exists() else 0
        return {
            "alive": True,
            "cpu_s": (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK"),
            "rss_mib": int(status["VmRSS"].split()[0]) / 1024,
            "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": int(status["Threads"]),
            "log_bytes": self.log_path.stat().st_size,
            "disk_bytes": disk,
        }

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.returncode


def sip_req(method, n, host_port, transport="UDP", body="", extra="", call_id=None):
    h, p = host_port
    ct = "Content-Type: application/sdp\r\n" if body else ""
    return (f"{method} sip:demo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} {h}:{p};branch=z9hG4bKab{n}x{random.randrange(1 << 30)}\r\n"
            f"{extra}From: <sip:abuse@127.0.0.1>;tag=ab{n}\r\nTo: <sip:demo@127.0.0.1>\r\n"
            f"Call-ID: {call_id or f'abuse-{n}-{random.randrange(1 << 30)}'}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:abuse@{h}:{p}>\r\n{ct}Content-Length: {len(body.encode())}\r\n\r\n{body}").encode()


def status_of(data):
    m = re.match(rb"SIP/2\.0 (\d{3})", data)
    return int(m.group(1)) if m else None


def invite_flood(gw, n=3000, rate=1000):
    """n INVITEs (WebRTC offers, never ACKed, each sent once: no
    retransmission) at `rate` a second from one socket, with OPTIONS every
    100 ms from another: final answers by status and the OPTIONS' round
    trips. Responses are read as they come."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    me = s.getsockname()
    finals = {}
    rtts = []
    stop = threading.Event()

    def probe():
        o = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        o.bind(("127.0.0.1", 0))
        o.settimeout(2)
        i = 0
        while not stop.is_set():
            t = time.monotonic()
            o.sendto(sip_req("OPTIONS", 900000 + i, o.getsockname()), ("127.0.0.1", gw.sip))
            try:
                o.recv(65535)
                rtts.append((time.monotonic() - t) * 1000)
            except OSError:
                rtts.append(2000.0)
            i += 1
            time.sleep(0.1)
        o.close()

    def read():
        s.settimeout(0.5)
        deadline = time.monotonic() + 30 + n / rate
        while time.monotonic() < deadline and len(finals) < n:
            try:
                data = s.recv(65535)
            except OSError:
                continue
            st = status_of(data)
            cid = re.search(rb"Call-ID: (\S+)", data)
            if st and st >= 200 and cid:
                finals[cid.group(1)] = st

    th = threading.Thread(target=probe, daemon=True)
    th.start()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    t0 = time.monotonic()
    for i in range(n):
        s.sendto(sip_req("INVITE", i, me, body=OFFER, call_id=f"flood-{i}"), ("127.0.0.1", gw.sip))
        ahead = t0 + (i + 1) / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    reader.join()
    stop.set()
    th.join()
    s.close()
    by = {}
    for st in finals.values():
        by[st] = by.get(st, 0) + 1
    rtts.sort()
    return {"INVITEs at 1000/s": n, "answered": len(finals), "by status": by,
            "OPTIONS p50/max ms": f"{rtts[len(rtts) // 2]:.1f} / {rtts[-1]:.1f}" if rtts else "-"}


def tcp_pipeline(gw, n=1000, runs=3):
    """n pipelined OPTIONS on one TCP connection, read only after all were
    sent: how many answered, per run."""
    out = []
    for r in range(runs):
        c = socket.create_connection(("127.0.0.1", gw.sip), timeout=5)
        me = c.getsockname()
        c.sendall(b"".join(sip_req("OPTIONS", r * 100000 + i, me, "TCP") for i in range(n)))
        time.sleep(1.0)
        got, buf = 0, b""
        deadline = time.monotonic() + 20
        c.settimeout(2)
        while got < n and time.monotonic() < deadline:
            try:
                d = c.recv(1 << 20)
            except OSError:
                break
            if not d:
                break
            buf += d
            got = buf.count(b"SIP/2.0 ")
        c.close()
        out.append(got)
    return {"answered of 1000 (3 runs)": " / ".join(map(str, out))}


def http_slow(gw, n=300):
    """n silent HTTP connections (how many the gateway closed within 15 s),
    and a POST declaring 1 GB."""
    conns = []
    for _ in range(n):
        try:
            conns.append(socket.create_connection(("127.0.0.1", gw.http), timeout=5))
        except OSError:
            break
    deadline = time.monotonic() + 15
    closed = set()
    while time.monotonic() < deadline and len(closed) < len(conns):
        for i, c in enumerate(conns):
            if i in closed:
                continue
            c.setblocking(False)
            try:
                if c.recv(1024) == b"":
                    closed.add(i)
            except BlockingIOError:
                pass
            except OSError:
                closed.add(i)
        time.sleep(0.2)
    for c in conns:
        c.close()
    s = socket.create_connection(("127.0.0.1", gw.http), timeout=10)
    t = time.monotonic()
    s.sendall(b"POST /v1/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\nContent-Length: 1000000000\r\n\r\nv=0\r\n")
    try:
        first = s.recv(100).split(b"\r\n", 1)[0].decode(errors="replace")
    except OSError:
        first = "no answer in 10 s"
    took = time.monotonic() - t
    s.close()
    return {"silent connections closed in 15 s": f"{len(closed)} of {len(conns)}",
            "POST declaring 1 GB": f"{first} after {took:.1f} s"}


def garbage(gw):
    """1 MB of random bytes on SIP TCP; 10k random UDP datagrams; an INVITE
    with 1000 Via headers; one with 1000 m-lines."""
    rnd = random.Random(7)
    c = socket.create_connection(("127.0.0.1", gw.sip), timeout=5)
    try:
        c.sendall(bytes(rnd.getrandbits(8) for _ in range(1 << 20)))
        c.settimeout(5)
        tcp = "closed" if c.recv(100) == b"" else "answered"
    except OSError as e:
        tcp = f"closed ({e.__class__.__name__})"
    c.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    for _ in range(10000):
        u.sendto(bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 400))), ("127.0.0.1", gw.sip))
    me = u.getsockname()
    vias = "".join(f"Via: SIP/2.0/UDP 127.0.0.1:{me[1]};branch=z9hG4bKv{i}\r\n" for i in range(1000))
    u.settimeout(3)
    u.sendto(sip_req("INVITE", 1, me, body=OFFER, extra=vias), ("127.0.0.1", gw.sip))
    via_status = "none"
    try:
        while True:
            via_status = status_of(u.recv(65535))
            if via_status and via_status >= 200:
                break
    except OSError:
        pass
    mlines = OFFER + "".join(f"m=audio {4000 + 2 * i} RTP/AVP 0\r\nc=IN IP4 127.0.0.1\r\n" for i in range(1000))
    u.sendto(sip_req("INVITE", 2, me, body=mlines), ("127.0.0.1", gw.sip))
    answers = []
    try:
        while True:
            st = status_of(u.recv(65535))
            answers.append(st)
            if st and st >= 200:
                break
    except OSError:
        pass
    u.close()
    return {"1 MB garbage on TCP": tcp, "INVITE with 1000 Via": via_status,
            "INVITE with 1000 m-lines": answers[-1] if answers else "none"}


def rtp_abuse(gw):
    """A plain RTP call while a stranger sends a steady stream to its port
    right after the answer and 10k bad RTP packets a second arrive: what the
    caller heard, what the stranger got."""
    stolen = []

    def attack(port):
        def run():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.2", 0))
            s.settimeout(0.0)
            rnd = random.Random(3)
            end = time.monotonic() + 2.0
            i = 0
            while time.monotonic() < end:
                s.sendto(rtp_tools.rtp(0, 5000 + i, i * 160, 0xBAD, bytes(160)), ("127.0.0.1", port))
                for _ in range(100):  # ~10k/s garbage
                    s.sendto(bytes(rnd.getrandbits(8) for _ in range(40)), ("127.0.0.1", port))
                try:
                    while True:
                        stolen.append(s.recv(2048))
                except OSError:
                    pass
                i += 1
                time.sleep(0.01)
            s.close()
        threading.Thread(target=run, daemon=True).start()

    ok, got, bye = plain_call(("127.0.0.1", gw.sip), seconds=3.0, on_answer=attack)
    return {"caller heard (packets)": len(got), "stranger got (packets)": len(stolen), "BYE": "200" if bye else "failed"}


def fd_exhaustion(binary, work):
    """A gateway whose descriptors (hard limit 256) idle HTTP clients use
    up, then three SIP TCP connects: its CPU and log growth over 5 s."""
    gw = Gateway(binary, work, nofile=256)
    held = []
    for _ in range(400):
        try:
            held.append(socket.create_connection(("127.0.0.1", gw.http), timeout=2))
        except OSError:
            break
    time.sleep(1)
    extra = []
    for _ in range(3):
        try:
            extra.append(socket.create_connection(("127.0.0.1", gw.sip), timeout=2))
        except OSError:
            pass
    a = gw.snapshot()
    time.sleep(5)
    b = gw.snapshot()
    for s in held + extra:
        s.close()
    time.sleep(1)
    c = socket.create_connection(("127.0.0.1", gw.sip), timeout=5)
    c.sendall(sip_req("OPTIONS", 1, c.getsockname(), "TCP"))
    c.settimeout(5)
    try:
        recovered = status_of(c.recv(65535))
    except OSError:
        recovered = "none"
    c.close()
    out = {"CPU while out of descriptors": f"{(b['cpu_s'] - a['cpu_s']) / 5:.0%} of a core",
           "log growth in 5 s": f"{(b['log_bytes'] - a['log_bytes']) / 1024:.0f} kB",
           "OPTIONS after they are back": recovered, "alive": gw.alive()}
    gw.stop()
    return out


def run(binary):
    work = Path(tempfile.mkdtemp(prefix="rtcgw-abuse-"))
    (work / "main").mkdir()
    gw = Gateway(binary, work / "main")
    time.sleep(2)
    snaps = {"idle before": gw.snapshot()}
    results = {}
    for name, f in [("INVITE flood (UDP)", invite_flood), ("pipelined OPTIONS (TCP)", tcp_pipeline),
                    ("slow HTTP clients", http_slow), ("garbage", garbage), ("RTP abuse", rtp_abuse)]:
        results[name] = f(gw)
        snaps[f"after {name}"] = gw.snapshot()
    # The same flood twice more: memory that comes back to the same level
    # is the allocator's high-water mark, memory that keeps rising is growth.
    for k in (2, 3):
        invite_flood(gw)
        snaps[f"after INVITE flood #{k}"] = gw.snapshot()
    time.sleep(40)  # unanswered INVITEs' 2xx give up (64*T1), idle connections close
    snaps["idle after (40 s)"] = gw.snapshot()
    rc = gw.stop()
    (work / "fd").mkdir()
    results["descriptors used up"] = fd_exhaustion(binary, work / "fd")
    results["exit"] = {"status on SIGTERM": rc}
    shutil.rmtree(work, ignore_errors=True)
    return results, snaps


def main():
    binaries = sys.argv[1:]
    reports = [run(b) for b in binaries]
    names = [Path(b).parent.name if len(binaries) > 1 else "rtcgw" for b in binaries]
    print("| scenario | what | " + " | ".join(names) + " |")
    print("| --- | --- |" + " --- |" * len(names))
    for scen in reports[0][0]:
        for key in reports[0][0][scen]:
            vals = [json.dumps(r[0].get(scen, {}).get(key, "-")).strip('"') for r in reports]
            print(f"| {scen} | {key} | " + " | ".join(vals) + " |")
    print()
    print("| moment | " + " | ".join(f"{n}: CPU s, RSS MiB, fds, threads, log kB, disk MB" for n in names) + " |")
    print("| --- |" + " --- |" * len(names))
    for moment in reports[0][1]:
        cells = []
        for r in reports:
            s = r[1].get(moment, {})
            if not s.get("alive"):
                cells.append("dead")
                continue
            cells.append(f"{s['cpu_s']:.1f}, {s['rss_mib']:.0f}, {s['fds']}, {s['threads']}, "
                         f"{s['log_bytes'] / 1024:.0f}, {s['disk_bytes'] / 1e6:.1f}")
        print(f"| {moment} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
