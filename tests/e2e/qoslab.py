"""The QoS lab (issue 7): recorded speech through a bridged call, with seeded
network impairment, scored with PESQ (ITU-T P.862), for rtcgw and for
rtpengine side by side.

One call carries speech both ways at once:

    aiortc (WebRTC, Opus) --[relay W]--> gateway --[relay L]--> RTP peer (PCMU)
         utterance A  ------------------------------------------>  "W->L"
         "L->W"  <------------------------------------------  utterance B

The impairment of a cell is applied where the gateway receives: relay W on
what aiortc sends to the gateway, relay L on what the RTP peer sends to the
gateway (each with its own seed), so each direction tests the gateway's
receive path (rtcgw: libwebrtc's NetEQ; rtpengine: its transcoder). What the
gateway sends on is not impaired.

The far ends play what arrives like a phone with a fixed jitter buffer
(`FAR_END_BUFFER_MS` after the fastest packet of the first seconds; later
packets are lost), and also "ideally" (by RTP timestamp, any lateness
forgiven). PESQ NB compares that with the 8 kHz speech sent. The one-way
delay is the lag of the best cross-correlation between the speech as sent
(sender's clock) and as it arrived (arrival times), per 1 s window.

`python3 tests/e2e/qoslab.py --help` (scripts/qos-lab runs the full matrix);
tests/e2e/test_qos.py runs two cells as a regression guard.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from impair import ImpairRelay, Impairment, rewrite_candidates  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SOUNDS = Path("/usr/share/asterisk/sounds/en")
# Utterances of at least 8 s joined from Debian's asterisk-core-sounds-en-wav.
UTTERANCE_W2L = ["vm-intro", "conf-onlyperson"]
UTTERANCE_L2W = ["queue-periodic-announce", "agent-loginok"]
FAR_END_BUFFER_MS = 60.0
WARMUP_S = 1.5  # after ICE/DTLS, before the speech starts
TAIL_S = 1.0


# ---------------------------------------------------------------- speech

def read_prompt(name):
    with wave.open(str(SOUNDS / f"{name}.wav")) as w:
        assert w.getframerate() == 8000 and w.getsampwidth() == 2 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), np.int16)


def utterance(names, gap_s=0.3, min_s=8.0):
    parts = []
    for n in names:
        parts += [read_prompt(n), np.zeros(int(gap_s * 8000), np.int16)]
    x = np.concatenate(parts[:-1])
    assert len(x) >= min_s * 8000, f"utterance {names} is only {len(x) / 8000:.1f} s"
    return x


def upsample6(x):
    from scipy.signal import resample_poly

    return np.clip(resample_poly(x.astype(np.float64), 6, 1), -32768, 32767).astype(np.int16)


def downsample6(x):
    from scipy.signal import resample_poly

    return resample_poly(x.astype(np.float64), 1, 6)


# ---------------------------------------------------------------- G.711

try:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
except ImportError:  # pragma: no cover
    audioop = None


def ulaw_encode(x):
    return audioop.lin2ulaw(x.astype(np.int16).tobytes(), 2)


def ulaw_decode(b):
    return np.frombuffer(audioop.ulaw2lin(bytes(b), 2), np.int16)


def rtp_packet(pt, seq, ts, ssrc, payload, marker=False):
    import struct

    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


# ---------------------------------------------------------------- peers

class SpeechTrack:
    """An aiortc audio track: silence until `go()`, then the utterance (8 kHz,
    sent at 48 kHz), then silence. Paced against absolute deadlines; records
    when the first speech sample was handed to the encoder."""

    def __new__(cls, speech8k):
        from aiortc.mediastreams import AudioStreamTrack
        import av

        class _Track(AudioStreamTrack):
            def __init__(self):
                super().__init__()
                self.speech = upsample6(speech8k)
                self.n = 0
                self.start = None
                self.go_at = None  # frame index where the speech starts
                self.speech_t0 = None

            def go(self):
                self.go_at = self.n // 960 + 1

            async def recv(self):
                loop = asyncio.get_running_loop()
                if self.start is None:
                    self.start = loop.time()
                due = self.start + self.n / 48000.0
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                frame_no = self.n // 960
                pcm = np.zeros(960, np.int16)
                if self.go_at is not None and frame_no >= self.go_at:
                    k = (frame_no - self.go_at) * 960
                    if k == 0:
                        self.speech_t0 = due
                    chunk = self.speech[k:k + 960]
                    pcm[:len(chunk)] = chunk
                frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
                frame.sample_rate = 48000
                frame.pts = self.n
                frame.time_base = fractions.Fraction(1, 48000)
                self.n += 960
                return frame

        return _Track()


async def record_frames(track, frames):
    """What aiortc decodes: (arrival time, pts, rate, mono int16) per frame."""
    from aiortc.mediastreams import MediaStreamError

    loop = asyncio.get_running_loop()
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        arr = frame.to_ndarray()
        ch = len(frame.layout.channels)
        mono = arr.reshape(-1, ch).mean(axis=1) if ch > 1 else arr.reshape(-1)
        frames.append((loop.time(), int(frame.pts), frame.sample_rate, mono.astype(np.int16)))


class RtpPeer:
    """The legacy end: plain RTP with PCMU on one socket, in a thread. Sends
    silence, then (after `go()`) the utterance, 20 ms packets against
    absolute deadlines; records every packet it receives with its arrival
    time. Bounded by `max_seconds`."""

    def __init__(self, speech8k, max_seconds=60.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.005)
        self.addr = self.sock.getsockname()
        self.speech = speech8k
        self.dest = None
        self.received = []  # (arrival, seq, ts, pt, payload)
        self.speech_t0 = None
        self.max_seconds = max_seconds
        self._go = None
        self._stop = threading.Event()
        self._thread = None

    def start(self, dest):
        self.dest = dest
        self._thread = threading.Thread(target=self._run, daemon=True, name="rtp-peer")
        self._thread.start()

    def go(self):
        self._go = True

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self.sock.close()

    def _run(self):
        import struct

        start = time.monotonic()
        i, k = 0, None
        silence = b"\xff" * 160
        while not self._stop.is_set() and time.monotonic() - start < self.max_seconds:
            due = start + i * 0.02
            if self._go and k is None:
                k = 0
                self.speech_t0 = due
            if k is not None and k * 160 < len(self.speech):
                chunk = self.speech[k * 160:(k + 1) * 160]
                payload = ulaw_encode(np.pad(chunk, (0, 160 - len(chunk))))
                k += 1
            else:
                payload = silence
            try:
                self.sock.sendto(rtp_packet(0, i, i * 160, 0x51A7, payload, marker=i == 0), self.dest)
            except OSError:
                pass
            i += 1
            while True:
                now = time.monotonic()
                if now >= start + i * 0.02:
                    break
                try:
                    self.sock.settimeout(max(0.0005, start + i * 0.02 - now))
                    data = self.sock.recv(2048)
                except (socket.timeout, BlockingIOError):
                    continue
                except OSError:
                    return
                if len(data) >= 12 and 128 <= data[0] <= 191 and not 72 <= (data[1] & 0x7F) <= 76:
                    seq, ts = struct.unpack("!HI", data[2:8])
                    self.received.append((time.monotonic(), seq, ts, data[1] & 0x7F, data[12:]))


# ---------------------------------------------------------------- far ends

def unwrap(values, modulus):
    out, base, prev = [], 0, None
    for v in values:
        if prev is not None and v - prev < -modulus // 2:
            base += modulus
        elif prev is not None and v - prev > modulus // 2:
            base -= modulus
        out.append(v + base)
        prev = v
    return out


def play_out(units, rate, anchor_s=2.0, buffer_ms=FAR_END_BUFFER_MS):
    """units: [(arrival, timestamp in samples, samples)]. Returns (ideal,
    fixed_buffer, late_share): the far end's playout by timestamp, and with a
    fixed jitter buffer anchored on the fastest unit of the first
    `anchor_s` seconds (units arriving after their play time are dropped)."""
    if not units:
        return np.zeros(0), np.zeros(0), 1.0
    ts0 = min(u[1] for u in units)
    end = max(u[1] - ts0 + len(u[2]) for u in units)
    ideal = np.zeros(end)
    fixed = np.zeros(end)
    first = min(u[0] for u in units)
    offset = min(u[0] - (u[1] - ts0) / rate for u in units if u[0] < first + anchor_s)
    late = 0
    for arr, ts, x in units:
        i = ts - ts0
        ideal[i:i + len(x)] = x
        if arr <= offset + buffer_ms / 1000.0 + i / rate:
            fixed[i:i + len(x)] = x
        else:
            late += 1
    return ideal, fixed, late / len(units)


def arrival_signal(units, rate, t0, seconds):
    """The received audio laid on the sender's clock by arrival time (t0 =
    when the sender handed over the first speech sample)."""
    out = np.zeros(int(seconds * rate))
    for arr, _, x in units:
        i = int(round((arr - t0) * rate))
        if 0 <= i < len(out):
            out[i:i + len(x)] = x[:len(out) - i]
    return out


def delays_ms(ref, received, rate, max_lag_s=0.6, win_s=1.0):
    """Per-window one-way delay: the lag of the best normalised
    cross-correlation of each speech window of `ref` within `received`."""
    from scipy.signal import correlate

    ref = ref.astype(np.float64)
    received = received.astype(np.float64)
    w, max_lag = int(win_s * rate), int(max_lag_s * rate)
    out = []
    for s in range(0, len(ref) - w, w):
        x = ref[s:s + w]
        if np.sqrt(np.mean(x * x)) < 300:
            continue  # a pause: nothing to correlate
        y = received[s:s + w + max_lag]
        if len(y) < w + max_lag:
            break
        c = correlate(y, x, mode="valid", method="fft")
        e = np.sqrt(np.convolve(y * y, np.ones(w), mode="valid")) * np.sqrt((x * x).sum())
        c = c / np.maximum(e, 1e-9)
        lag = int(np.argmax(c))
        if c[lag] > 0.5:
            out.append(1000.0 * lag / rate)
    return out


def align(ref, deg):
    """`deg` cut to start where `ref` does (coarse, by cross-correlation);
    PESQ does the fine alignment itself."""
    from scipy.signal import correlate

    c = correlate(deg.astype(np.float64), ref.astype(np.float64), mode="valid", method="fft") \
        if len(deg) > len(ref) else np.array([0.0])
    lag = int(np.argmax(c))
    return deg[lag:lag + len(ref)], lag


def pesq_nb(ref8k, deg8k):
    from pesq import pesq

    if len(deg8k) < len(ref8k) // 2 or np.abs(deg8k).max() < 10:
        return 1.0  # nothing arrived: worst score rather than an exception
    deg, _ = align(ref8k, deg8k)
    try:
        return float(pesq(8000, ref8k.astype(np.float64), deg.astype(np.float64), "nb"))
    except Exception:  # pesq.NoUtterancesError and friends: unscorable
        return 1.0


def score(ref8k, speech_t0, units, rate):
    """PESQ (fixed-buffer far end, ideal far end), delays, late share."""
    ideal, fixed, late = play_out(units, rate)
    assert rate in (8000, 48000), rate
    dec = (lambda x: downsample6(x)) if rate == 48000 else (lambda x: x)
    mos_fixed = pesq_nb(ref8k, dec(fixed))
    mos_ideal = pesq_nb(ref8k, dec(ideal))
    seconds = len(ref8k) / 8000 + 1.0
    arrived = arrival_signal(units, rate, speech_t0, seconds) if speech_t0 else np.zeros(0)
    ref = ref8k if rate == 8000 else upsample6(ref8k)
    d = delays_ms(ref, arrived, rate) if len(arrived) else []
    return dict(mos=mos_fixed, mos_ideal=mos_ideal, late=late,
                delay_p50=float(np.percentile(d, 50)) if d else None,
                delay_p95=float(np.percentile(d, 95)) if d else None, delay_windows=len(d))


def units_from_rtp(received):
    pk = [r for r in received if r[3] == 0]
    ts = unwrap([p[2] for p in pk], 1 << 32)
    return [(p[0], t, ulaw_decode(p[4]).astype(np.float64)) for p, t in zip(pk, ts)]


def units_from_frames(frames):
    return [(arr, pts, mono.astype(np.float64)) for arr, pts, _, mono in frames]


# ---------------------------------------------------------------- rtcgw

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read().decode())


class Rtcgw:
    """The release gateway in bridge mode with a config variant."""

    name = "rtcgw"

    def __init__(self, workdir, extra_toml="", binary=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.http_port, self.sip_port = free_port(), free_port()
        self.uas = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.uas.bind(("127.0.0.1", 0))
        self.uas.settimeout(0.2)
        base = 30000 + 2000 * (os.getpid() % 16)
        cfg = self.workdir / "rtcgw.toml"
        cfg.write_text(
            f'[log]\nfilter = "warn"\n[http]\nlisten = "127.0.0.1:{self.http_port}"\n'
            f'[sip]\nlisten = "127.0.0.1:{self.sip_port}"\n'
            f'[route]\nmode = "bridge"\ntarget = "sip:qos@127.0.0.1:{self.uas.getsockname()[1]}"\n'
            f'[demo]\nrecord_dir = "{self.workdir}/rec"\n'
            f'[legacy]\nport_min = {base}\nport_max = {base + 1998}\ncodecs = ["PCMU"]\n'
            + _section(extra_toml, "legacy")
            + "".join(f"[{name}]\n{body}" for name, body in _sections(extra_toml).items() if name != "legacy"))
        binary = binary or os.environ.get("RTCGW_BIN", str(ROOT / "target/release/rtcgw"))
        self.log = (self.workdir / "rtcgw.log").open("w")
        self.proc = subprocess.Popen([binary, "--config", str(cfg)], stdout=self.log, stderr=subprocess.STDOUT,
                                     env={k: v for k, v in os.environ.items() if k != "RUST_LOG"})
        self.url = f"http://127.0.0.1:{self.http_port}"
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1).read()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("rtcgw did not start: " + (self.workdir / "rtcgw.log").read_text()[-2000:])
                time.sleep(0.1)
        self.calls = 0

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.uas.close()
        self.log.close()

    async def setup(self, offer, legacy_relay, rtp_peer):
        """INVITE with `offer`; answers rtcgw's outbound INVITE with the RTP
        peer behind `legacy_relay`. Returns the WebRTC answer."""
        from test_bridge import SipCaller, sip_response

        self.calls += 1
        call_id = f"qos-{os.getpid()}-{self.calls}"
        caller = SipCaller(self)
        caller.call_id = call_id
        self._caller = caller
        loop = asyncio.get_running_loop()
        uas_done = loop.run_in_executor(None, self._answer_invite, legacy_relay, rtp_peer, sip_response)
        caller.send(caller.req("INVITE", 1, offer, branch=f"z9hG4bK{call_id}").replace("bridge-1", call_id))
        status, ok = await loop.run_in_executor(None, caller.final)
        await uas_done
        if status != 200:
            raise RuntimeError(f"rtcgw answered {status}: {ok[:300]}")
        caller.to_tag = re.search(r"^To: .*?(;tag=[^;\s]+)", ok, re.M).group(1)
        caller.send(caller.req("ACK", 1).replace("bridge-1", call_id))
        return ok.split("\r\n\r\n", 1)[1]

    def _answer_invite(self, relay, peer, sip_response):
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                data, addr = self.uas.recvfrom(65535)
            except socket.timeout:
                continue
            req = data.decode(errors="replace")
            if not req.startswith("INVITE"):
                continue
            offer = req.split("\r\n\r\n", 1)[1]
            port = int(re.search(r"^m=audio (\d+)", offer, re.M).group(1))
            relay.set_peers(a=peer.addr, b=("127.0.0.1", port))
            peer.start(relay.a_addr)
            sdp = (f"v=0\r\no=qos 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                   f"m=audio {relay.b_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n")
            self.uas.sendto(sip_response(req, 200, "OK", "qos", self.uas.getsockname()[1], sdp).encode(), addr)
            return
        raise RuntimeError("rtcgw did not INVITE the legacy callee")

    def stats(self):
        try:
            calls = http_json(self.url + "/v1/calls")
            calls = calls.get("calls", calls) if isinstance(calls, dict) else calls
            cid = calls[-1]["id"]
            return http_json(self.url + f"/v1/calls/{cid}/stats")
        except Exception as e:  # stats are a bonus; the audio is the measurement
            return {"error": str(e)}

    async def teardown(self):
        loop = asyncio.get_running_loop()
        c = self._caller
        c.send(c.req("BYE", 2).replace("bridge-1", c.call_id))
        await loop.run_in_executor(None, c.final)

        def bye_uas():  # rtcgw BYEs the legacy callee
            deadline = time.time() + 5
            from test_bridge import sip_response

            while time.time() < deadline:
                try:
                    data, addr = self.uas.recvfrom(65535)
                except socket.timeout:
                    continue
                req = data.decode(errors="replace")
                if req.startswith("BYE"):
                    self.uas.sendto(sip_response(req, 200, "OK", "qos", self.uas.getsockname()[1]).encode(), addr)
                    return

        await loop.run_in_executor(None, bye_uas)


def _sections(toml):
    """{name: body} of a small TOML snippet, so the lab can merge its own
    [legacy] keys with a variant's."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^\[([\w.]+)\]\n(.*?)(?=^\[|\Z)", toml, re.M | re.S)}


def _section(toml, name):
    return _sections(toml).get(name, "")


def concealment(stats):
    """(W->L, L->W) concealed share of samples in rtcgw's two receive paths."""
    w2l = l2w = None

    def walk(v):
        if isinstance(v, dict):
            yield v
            for x in v.values():
                yield from walk(x)
        elif isinstance(v, list):
            for x in v:
                yield from walk(x)

    for d in walk(stats):
        d = dict(d, **d["members"]) if isinstance(d.get("members"), dict) else d
        if d.get("type") == "inbound-rtp" and d.get("totalSamplesReceived"):
            w2l = d.get("concealedSamples", 0) / d["totalSamplesReceived"]
        if "expandRate" in d and d.get("totalSamplesReceived"):
            l2w = d.get("concealedSamples", 0) / d["totalSamplesReceived"]
    return w2l, l2w


# ---------------------------------------------------------------- rtpengine

def bencode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    if isinstance(v, dict):
        return b"d" + b"".join(bencode(k) + bencode(v[k]) for k in sorted(v)) + b"e"
    raise TypeError(type(v))


def bdecode(b, i=0):
    c = b[i:i + 1]
    if c == b"i":
        j = b.index(b"e", i)
        return int(b[i + 1:j]), j + 1
    if c == b"l":
        out, i = [], i + 1
        while b[i:i + 1] != b"e":
            v, i = bdecode(b, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        out, i = {}, i + 1
        while b[i:i + 1] != b"e":
            k, i = bdecode(b, i)
            v, i = bdecode(b, i)
            out[k.decode()] = v
        return out, i + 1
    j = b.index(b":", i)
    n = int(b[i:j])
    return b[j + 1:j + 1 + n], j + 1 + n


class Rtpengine:
    """Debian's rtpengine-daemon in userspace (no kernel table), driven with
    the ng protocol: WebRTC (ICE, DTLS-SRTP, Opus) <-> RTP/AVP PCMU,
    transcoding."""

    name = "rtpengine"

    def __init__(self, workdir, extra_args=()):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ng_port = free_port()
        base = 42000 + 2000 * (os.getpid() % 8)
        self.log = (self.workdir / "rtpengine.log").open("w")
        self.proc = subprocess.Popen(
            ["rtpengine", "--config-file=none", "--table=-1", "--interface=127.0.0.1",
             f"--listen-ng=127.0.0.1:{self.ng_port}", f"--port-min={base}", f"--port-max={base + 1999}",
             "--foreground", "--log-stderr", "--log-level=5", "--num-threads=2", *extra_args],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(2)
        self.calls = 0
        deadline = time.time() + 10
        while True:
            try:
                if self.ng({"command": "ping"}).get("result") == b"pong":
                    break
            except (socket.timeout, ConnectionRefusedError):
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("rtpengine did not start: " + (self.workdir / "rtpengine.log").read_text()[-2000:])
            time.sleep(0.2)

    def ng(self, msg):
        cookie = f"{os.getpid()}_{time.monotonic_ns()}"
        self.sock.sendto(cookie.encode() + b" " + bencode(msg), ("127.0.0.1", self.ng_port))
        while True:
            data = self.sock.recv(65535)
            c, _, body = data.partition(b" ")
            if c.decode() == cookie:
                return bdecode(body)[0]

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.sock.close()
        self.log.close()

    async def setup(self, offer, legacy_relay, rtp_peer):
        self.calls += 1
        self.call_id = f"qos-{os.getpid()}-{self.calls}"
        r = self.ng({"command": "offer", "call-id": self.call_id, "from-tag": "webrtc", "sdp": offer,
                     "ICE": "remove", "DTLS": "off", "transport-protocol": "RTP/AVP", "rtcp-mux": ["demux"],
                     "codec": {"transcode": ["PCMU"], "mask": ["opus"]}, "replace": ["origin", "session-connection"]})
        if r.get("result") != b"ok":
            raise RuntimeError(f"rtpengine offer: {r}")
        plain = r["sdp"].decode()
        port = int(re.search(r"^m=audio (\d+)", plain, re.M).group(1))
        legacy_relay.set_peers(a=rtp_peer.addr, b=("127.0.0.1", port))
        rtp_peer.start(legacy_relay.a_addr)
        answer = (f"v=0\r\no=qos 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                  f"m=audio {legacy_relay.b_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n")
        r = self.ng({"command": "answer", "call-id": self.call_id, "from-tag": "webrtc", "to-tag": "legacy",
                     "sdp": answer, "ICE": "force", "transport-protocol": "UDP/TLS/RTP/SAVPF", "rtcp-mux": ["offer"],
                     "replace": ["origin", "session-connection"]})
        if r.get("result") != b"ok":
            raise RuntimeError(f"rtpengine answer: {r}")
        (self.workdir / "last-offer-plain.sdp").write_text(plain)
        (self.workdir / "last-answer-webrtc.sdp").write_text(r["sdp"].decode())
        return r["sdp"].decode()

    def stats(self):
        return {}

    async def teardown(self):
        self.ng({"command": "delete", "call-id": self.call_id, "from-tag": "webrtc"})


# ---------------------------------------------------------------- a cell

@dataclass
class Cell:
    name: str
    imp: Impairment
    group: str = ""  # "loss", "jitter", ... for the plots
    x: float = 0.0  # the plot's x value
    # The WebRTC sender (aiortc) encodes with Opus in-band FEC, as browsers
    # do; aiortc's own default is without.
    fec: bool = False


MATRIX = [
    Cell("clean", Impairment(), "clean", 0),
    Cell("jitter 20 ms", Impairment(delay_ms=20, jitter_ms=20), "jitter", 20),
    Cell("jitter 40 ms", Impairment(delay_ms=40, jitter_ms=40), "jitter", 40),
    Cell("jitter 80 ms", Impairment(delay_ms=80, jitter_ms=80), "jitter", 80),
    Cell("loss 1%", Impairment(loss=0.01), "loss", 1),
    Cell("loss 5%", Impairment(loss=0.05), "loss", 5),
    Cell("loss 10%", Impairment(loss=0.10), "loss", 10),
    Cell("loss 20%", Impairment(loss=0.20), "loss", 20),
    Cell("burst loss 5% (mean burst 4)", Impairment.burst(0.05, 4.0), "burst", 5),
    Cell("loss 5% + jitter 40 ms", Impairment(delay_ms=40, jitter_ms=40, loss=0.05), "combo", 5),
    Cell("loss 10% + sender FEC", Impairment(loss=0.10), "fec", 10, fec=True),
    Cell("loss 5% + jitter 40 ms + sender FEC", Impairment(delay_ms=40, jitter_ms=40, loss=0.05), "fec", 5, fec=True),
]


def sender_fec(on, loss_percent=10):
    """aiortc's Opus encoder (ffmpeg's libopus) with or without in-band FEC.
    libopus only spends bits on FEC when told to expect loss."""
    from aiortc.codecs import opus

    if not hasattr(opus.OpusEncoder, "_qos_init"):
        opus.OpusEncoder._qos_init = opus.OpusEncoder.__init__
    if not on:
        opus.OpusEncoder.__init__ = opus.OpusEncoder._qos_init
        return

    def init(self, *a, **k):
        opus.OpusEncoder._qos_init(self, *a, **k)
        self.codec.options = dict(self.codec.options or {}, fec="1", packet_loss=str(loss_percent))

    opus.OpusEncoder.__init__ = init


def cell(name):
    return next(c for c in MATRIX if c.name == name)


async def run_call(gw, imp, seed, speech_w2l, speech_l2w, timeout_s=60, fec=False):
    """One bridged call through `gw` with `imp` on both of its receive legs.
    Returns the scores for both directions."""
    from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

    sender_fec(fec)
    web = ImpairRelay(a_to_b=imp, seed=f"{seed}/webrtc", max_seconds=timeout_s)
    leg = ImpairRelay(a_to_b=imp, seed=f"{seed}/legacy", max_seconds=timeout_s)
    peer = RtpPeer(speech_l2w, max_seconds=timeout_s)
    pc = RTCPeerConnection()
    track = SpeechTrack(speech_w2l)
    # Opus only, as a browser would use: both gateways must transcode.
    tr = pc.addTransceiver(track, "sendrecv")
    tr.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("audio").codecs
                            if c.mimeType.lower() == "audio/opus"])
    frames, tasks = [], []
    pc.on("track", lambda t: tasks.append(asyncio.ensure_future(record_frames(t, frames))))
    web.start()
    leg.start()
    try:
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        a_port = int(re.search(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host", offer, re.I).group(1))
        answer = await gw.setup(rewrite_candidates(offer, web.b_port), leg, peer)
        b_port = int(re.search(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host", answer, re.I).group(1))
        web.set_peers(a=("127.0.0.1", a_port), b=("127.0.0.1", b_port))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=rewrite_candidates(answer, web.a_port), type="answer"))
        deadline = time.monotonic() + 10
        while pc.connectionState != "connected":
            if time.monotonic() > deadline:
                raise RuntimeError(f"WebRTC leg did not connect ({gw.name}): {pc.connectionState}")
            await asyncio.sleep(0.05)
        await asyncio.sleep(WARMUP_S)
        track.go()
        peer.go()
        await asyncio.sleep(max(len(speech_w2l), len(speech_l2w)) / 8000 + TAIL_S + 0.1)
        stats = gw.stats()
        await gw.teardown()
    finally:
        await pc.close()
        for t in tasks:
            t.cancel()
        peer.stop()
        web.close()
        leg.close()
    if os.environ.get("QOSLAB_DEBUG"):
        print(f"\nframes {len(frames)} max {max((np.abs(f[3]).max() for f in frames), default=0)} "
              f"pts {[f[1] for f in frames[:5]]} rtp {len(peer.received)}", file=sys.stderr)
    w2l = score(speech_w2l, track.speech_t0, units_from_rtp(peer.received), 8000)
    l2w = score(speech_l2w, peer.speech_t0, units_from_frames(frames), frames[0][2] if frames else 48000)
    cw, cl = concealment(stats)
    w2l["concealed"], l2w["concealed"] = cw, cl
    return dict(w2l=w2l, l2w=l2w, relays=dict(webrtc=web.counters, legacy=leg.counters), stats=stats)


# ---------------------------------------------------------------- the lab

RTCGW_VARIANTS = {
    "default": "",
    "NetEQ max 20 packets": "[webrtc]\njitter_buffer_max_packets = 20\n[legacy]\njitter_buffer_max_packets = 20\n",
    "fast accelerate": "[webrtc]\njitter_buffer_fast_accelerate = true\n[legacy]\njitter_buffer_fast_accelerate = true\n",
    "min delay 100 ms": "[webrtc]\njitter_buffer_min_delay_ms = 100\n[legacy]\njitter_buffer_min_delay_ms = 100\n",
}
KNOB_CELLS = ["clean", "jitter 80 ms", "loss 5% + jitter 40 ms"]


def progress(i, n, text):
    bar = "#" * int(20 * i / max(n, 1))
    print(f"\r[{bar:<20}] {i:>3}/{n} {text[:90]:<90}", end="" if i < n else "\n", file=sys.stderr, flush=True)


def fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", default="all", help="comma-separated cell names, or 'all'")
    p.add_argument("--seeds", default="1", help="comma-separated seeds (each cell runs once per seed)")
    p.add_argument("--no-rtpengine", action="store_true")
    p.add_argument("--no-knobs", action="store_true")
    p.add_argument("--out", default=str(ROOT / "target/qos-lab"))
    a = p.parse_args(argv)
    import aiortc_peer

    aiortc_peer.loopback_only()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cells = MATRIX if a.cells == "all" else [cell(n.strip()) for n in a.cells.split(",")]
    seeds = [s.strip() for s in a.seeds.split(",")]
    sw, sl = utterance(UTTERANCE_W2L), utterance(UTTERANCE_L2W)
    plan = [("rtcgw", "default", c, s) for c in cells for s in seeds]
    if not a.no_rtpengine:
        plan += [("rtpengine", "default", c, s) for c in cells for s in seeds]
    if not a.no_knobs:
        plan += [("rtcgw", v, cell(c), s) for v in RTCGW_VARIANTS if v != "default"
                 for c in KNOB_CELLS if cell(c) in cells or a.cells == "all" for s in seeds]
    results, gws = [], {}
    t_start = time.time()
    try:
        for i, (system, variant, c, seed) in enumerate(plan):
            progress(i, len(plan), f"{system} {variant} | {c.name} | seed {seed}")
            key = (system, variant)
            if key not in gws:
                for g in gws.values():
                    g.close()
                gws.clear()
                wd = out / f"{system}-{variant}".replace(" ", "_").replace("%", "pc")
                gws[key] = Rtcgw(wd, RTCGW_VARIANTS[variant]) if system == "rtcgw" else Rtpengine(wd)
            try:
                r = asyncio.run(run_call(gws[key], c.imp, seed, sw, sl, fec=c.fec))
                r.update(system=system, variant=variant, cell=c.name, group=c.group, x=c.x, seed=seed)
            except Exception as e:
                r = dict(system=system, variant=variant, cell=c.name, group=c.group, x=c.x, seed=seed, error=str(e))
            results.append(r)
            w = r.get("w2l", {})
            progress(i + 1, len(plan), f"{system} {variant} | {c.name} | W->L MOS {fmt(w.get('mos'))}"
                     + (f" ERROR {r['error'][:40]}" if "error" in r else ""))
    finally:
        for g in gws.values():
            g.close()
    meta = dict(date=time.strftime("%Y-%m-%d"), seconds=round(time.time() - t_start), cores=os.cpu_count(),
                command="scripts/qos-lab " + " ".join(argv if argv is not None else sys.argv[1:]),
                rtpengine=_rtpengine_version())
    (out / "results.json").write_text(json.dumps(dict(meta=meta, results=results), indent=1, default=str))
    print(f"results: {out / 'results.json'} ({meta['seconds']} s)", file=sys.stderr)
    return results


def _rtpengine_version():
    try:
        return subprocess.run(["rtpengine", "--version"], capture_output=True, text=True).stdout.strip() \
            or subprocess.run(["rtpengine", "--version"], capture_output=True, text=True).stderr.strip()
    except OSError:
        return None


if __name__ == "__main__":
    main()
