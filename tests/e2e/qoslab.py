"""The QoS lab (issue 7): recorded speech through a bridged call, with seeded
network impairment, scored with PESQ (ITU-T P.862), for rtcgw and for
rtpengine side by side.

One call carries speech both ways at once:

    aiortc (WebRTC, Opus) --[relay W]--> gateway --[relay L]--> RTP peer (PCMU or G.722)
         utterance A  ------------------------------------------>  "W->L"
         "L->W"  <------------------------------------------  utterance B

The impairment of a cell is applied where the gateway receives: relay W on
what aiortc sends to the gateway, relay L on what the RTP peer sends to the
gateway (each with its own seed), so each direction tests the gateway's
receive path (rtcgw: libwebrtc's NetEQ; rtpengine: its transcoder). What the
gateway sends on is not impaired.

The far ends play what arrives like a phone with a fixed jitter buffer
(`FAR_END_BUFFER_MS`; a packet after its play time makes it start over,
leaving a gap), and also "ideally" (by RTP timestamp, lateness forgiven).
PESQ NB compares that with the 8 kHz speech sent. With `--wideband` the RTP
peer speaks G.722 and the speech is the 16 kHz recordings, scored with PESQ
WB (P.862.2) at 16 kHz. The one-way
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
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from impair import ImpairRelay, Impairment, rewrite_candidates  # noqa: E402
from ports import free_port, media_range  # noqa: E402
from ng_client import NgClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SOUNDS = Path("/usr/share/asterisk/sounds/en")
# Utterances of at least 8 s joined from Debian's asterisk-core-sounds-en-wav
# (8 kHz) or, wideband, the same prompts from asterisk-core-sounds-en-g722.
UTTERANCE_W2L = ["vm-intro", "conf-onlyperson"]
UTTERANCE_L2W = ["queue-periodic-announce", "agent-loginok"]
FAR_END_BUFFER_MS = 60.0
WARMUP_S = 1.5  # after ICE/DTLS, before the speech starts
TAIL_S = 1.0


@dataclass(frozen=True)
class Band:
    """What the legacy end speaks and how the lab scores it: the speech's
    sample rate (also PESQ's), the RTP codec, and PESQ's mode. Both codecs
    have an 8000 Hz RTP clock (RFC 3551 keeps G.722's at 8000 although it
    samples at 16 kHz), so a 20 ms packet always advances the timestamp 160."""

    name: str  # PESQ mode: "nb" (P.862) or "wb" (P.862.2)
    rate: int
    codec: str  # the SDP encoding name
    pt: int

    @property
    def samples_per_packet(self):
        return self.rate // 50


NB = Band("nb", 8000, "PCMU", 0)
WB = Band("wb", 16000, "G722", 9)
RTP_CLOCK = 8000


# ---------------------------------------------------------------- speech

def read_prompt(name, rate=8000):
    if rate == 16000:
        # Raw G.722 at 64 kbit/s (no header), decoded as a phone would.
        import G722

        raw = (SOUNDS / f"{name}.g722").read_bytes()
        return np.asarray(G722.G722(16000, 64000).decode(raw), np.int16)
    with wave.open(str(SOUNDS / f"{name}.wav")) as w:
        assert w.getframerate() == 8000 and w.getsampwidth() == 2 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), np.int16)


def utterance(names, gap_s=0.3, min_s=8.0, rate=8000):
    parts = []
    for n in names:
        parts += [read_prompt(n, rate), np.zeros(int(gap_s * rate), np.int16)]
    x = np.concatenate(parts[:-1])
    assert len(x) >= min_s * rate, f"utterance {names} is only {len(x) / rate:.1f} s"
    return x


def upsample(x, k):
    from scipy.signal import resample_poly

    return np.clip(resample_poly(x.astype(np.float64), k, 1), -32768, 32767).astype(np.int16)


def downsample(x, k):
    from scipy.signal import resample_poly

    return resample_poly(x.astype(np.float64), 1, k)


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


class PayloadCodec:
    """One direction's codec state for the RTP peer: PCMU is stateless,
    G.722 (ADPCM) keeps its predictor across packets, so each direction
    needs its own encoder or decoder, fed in order."""

    def __init__(self, band):
        self.band = band
        if band.codec == "G722":
            import G722

            self.g722 = G722.G722(16000, 64000)

    def encode(self, pcm):
        if self.band.codec == "G722":
            return bytes(self.g722.encode(pcm.astype(np.int16)))
        return ulaw_encode(pcm)

    def decode(self, payload):
        if self.band.codec == "G722":
            return np.asarray(self.g722.decode(bytes(payload)), np.int16)
        return ulaw_decode(payload)


def rtp_packet(pt, seq, ts, ssrc, payload, marker=False):
    import struct

    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


# ---------------------------------------------------------------- peers

class SpeechTrack:
    """An aiortc audio track: silence until `go()`, then the utterance (8 or
    16 kHz, sent at 48 kHz), then silence. Paced against absolute deadlines;
    records when the first speech sample was handed to the encoder."""

    def __new__(cls, speech, rate=8000):
        from aiortc.mediastreams import AudioStreamTrack
        import av

        class _Track(AudioStreamTrack):
            def __init__(self):
                super().__init__()
                self.speech = upsample(speech, 48000 // rate)
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

    import aiortc_peer

    loop = asyncio.get_running_loop()
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        frames.append((loop.time(), int(frame.pts), frame.sample_rate, aiortc_peer.mono(frame)))


class RtpPeer:
    """The legacy end: plain RTP with PCMU (or G.722) on one socket, in a
    thread. Sends silence, then (after `go()`) the utterance, 20 ms packets
    against absolute deadlines; records every packet it receives with its
    arrival time. Bounded by `max_seconds`."""

    def __init__(self, speech, max_seconds=60.0, band=NB):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.005)
        self.addr = self.sock.getsockname()
        self.speech = speech
        self.band = band
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
        n = self.band.samples_per_packet
        enc = PayloadCodec(self.band)
        while not self._stop.is_set() and time.monotonic() - start < self.max_seconds:
            due = start + i * 0.02
            if self._go and k is None:
                k = 0
                self.speech_t0 = due
            pcm = np.zeros(n, np.int16)
            if k is not None and k * n < len(self.speech):
                chunk = self.speech[k * n:(k + 1) * n]
                pcm[:len(chunk)] = chunk
                k += 1
            # Silence goes through the encoder too: G.722's state stays continuous.
            payload = enc.encode(pcm)
            try:
                self.sock.sendto(rtp_packet(self.band.pt, i, i * 160, 0x51A7, payload, marker=i == 0), self.dest)
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


def play_out(units, rate, buffer_ms=FAR_END_BUFFER_MS):
    """units: [(arrival, timestamp in samples, samples)]. Returns (ideal,
    phone, resyncs): the far end's playout by timestamp alone, and like a
    phone with a fixed jitter buffer: each unit plays `buffer_ms` after the
    first one would have, by its timestamp; a unit that arrives after its
    play time makes the buffer start over `buffer_ms` from then (a gap, and
    the call's delay grows), counted in `resyncs`. Units older than what
    was already played are dropped."""
    if not units:
        return np.zeros(0), np.zeros(0), 0
    ts0 = min(u[1] for u in units)
    end = max(u[1] - ts0 + len(u[2]) for u in units)
    ideal = np.zeros(end)
    for arr, ts, x in units:
        ideal[ts - ts0:ts - ts0 + len(x)] = x
    first = min(u[0] for u in units)
    offset = min(units)[0] - (min(units)[1] - ts0) / rate
    b = buffer_ms / 1000.0
    phone = np.zeros(int((max(u[0] for u in units) - first + 2 * b) * rate) + end)
    resyncs, played_ts = 0, -1
    for arr, ts, x in sorted(units, key=lambda u: u[0]):
        rel = ts - ts0
        if rel < played_ts:
            continue  # too late: its time has been played already
        if arr > offset + b + rel / rate:
            offset = arr - rel / rate
            resyncs += 1
        i = int(round((offset + b + rel / rate - first) * rate))
        if 0 <= i < len(phone):
            phone[i:i + len(x)] = x[:len(phone) - i]
        played_ts = rel
    return ideal, phone, resyncs


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


def pesq_score(ref, deg, band=NB):
    """PESQ MOS-LQO at the band's rate: P.862 ("nb", 8 kHz) or P.862.2
    ("wb", 16 kHz)."""
    from pesq import pesq

    if len(deg) < len(ref) // 2 or np.abs(deg).max() < 10:
        return 1.0  # nothing arrived: worst score rather than an exception
    deg, _ = align(ref, deg)
    try:
        return float(pesq(band.rate, ref.astype(np.float64), deg.astype(np.float64), band.name))
    except Exception:  # pesq.NoUtterancesError and friends: unscorable
        return 1.0


def score(ref, speech_t0, units, rate, band=NB):
    """PESQ (fixed-buffer far end, ideal far end), delays, late share.
    `ref` is at the band's rate, `units` at `rate` (the band's, or aiortc's
    48 kHz, which is brought down to the band's for PESQ)."""
    ideal, fixed, resyncs = play_out(units, rate)
    assert rate % band.rate == 0, (rate, band)
    k = rate // band.rate
    dec = (lambda x: downsample(x, k)) if k > 1 else (lambda x: x)
    mos_fixed = pesq_score(ref, dec(fixed), band)
    mos_ideal = pesq_score(ref, dec(ideal), band)
    seconds = len(ref) / band.rate + 1.0
    arrived = arrival_signal(units, rate, speech_t0, seconds) if speech_t0 else np.zeros(0)
    ref = ref if k == 1 else upsample(ref, k)
    d = delays_ms(ref, arrived, rate) if len(arrived) else []
    return dict(mos=mos_fixed, mos_ideal=mos_ideal, resyncs=resyncs,
                delay_p50=float(np.percentile(d, 50)) if d else None,
                delay_p95=float(np.percentile(d, 95)) if d else None, delay_windows=len(d))


BENCH_BIN = Path(os.environ.get("RTCGW_BENCH_BIN", str(ROOT / "target/release/rtcgw-bench")))


def adaptive_far_end(ref, speech_t0, received, band=NB):
    """What a phone with an adaptive jitter buffer would play: libwebrtc's
    NetEq run on the W->L packets' recorded arrivals (`rtcgw-bench
    neteq-play`, virtual time). Returns PESQ of that and the mouth-to-ear
    delay (speech as the sender handed it over -> as the phone plays it),
    or {} without the bench binary."""
    pk = [r for r in received if r[3] == band.pt]
    if not pk or not speech_t0 or not BENCH_BIN.exists():
        return {}
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / "in.txt", Path(d) / "out.raw"
        src.write_text("".join(f"{p[0]:.6f} {p[1]} {p[2]} {p[3]} {bytes(p[4]).hex()}\n" for p in pk))
        r = subprocess.run([str(BENCH_BIN), "neteq-play", "--codec", band.codec, "--input", str(src),
                            "--output", str(out)], capture_output=True, timeout=60)
        if r.returncode != 0:
            return {}
        played = np.frombuffer(out.read_bytes(), np.int16).astype(np.float64)
    rate = 48000
    first = min(p[0] for p in pk)
    seconds = len(ref) / band.rate + 1.0
    laid = np.zeros(int(seconds * rate))
    # The phone starts playing at the first arrival, usually before the
    # speech starts: lay what it plays on the sender's clock.
    i = int(round((first - speech_t0) * rate))
    src = played[max(0, -i):]
    at = max(0, i)
    n = max(0, min(len(src), len(laid) - at))
    laid[at:at + n] = src[:n]
    d = delays_ms(upsample(ref, rate // band.rate), laid, rate)
    return dict(mos_adaptive=pesq_score(ref, downsample(played, rate // band.rate), band),
                m2e_p50=float(np.percentile(d, 50)) if d else None,
                m2e_p95=float(np.percentile(d, 95)) if d else None)


def units_from_rtp(received, band=NB):
    """(arrival, timestamp in samples at the band's rate, samples) per
    packet of the band's payload type. G.722 is decoded in sequence order
    with one decoder, as its state needs (a duplicate is decoded once)."""
    pk = [r for r in received if r[3] == band.pt]
    seqs = unwrap([p[1] for p in pk], 1 << 16)
    ts = unwrap([p[2] for p in pk], 1 << 32)
    dec, seen, out = PayloadCodec(band), set(), []
    for seq, p, t in sorted(zip(seqs, pk, ts), key=lambda x: x[0]):
        if seq in seen:
            continue
        seen.add(seq)
        out.append((p[0], t * band.rate // RTP_CLOCK, dec.decode(p[4]).astype(np.float64)))
    return sorted(out, key=lambda u: u[0])


def units_from_frames(frames):
    return [(arr, pts, mono.astype(np.float64)) for arr, pts, _, mono in frames]


# ---------------------------------------------------------------- rtcgw

def http_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read().decode())


class SipFront:
    """Calls set up by SIP: a WebRTC caller INVITEs `sip_port`; the plain
    RTP callee on `uas` answers with the RTP peer (behind its relay)."""

    def _bind_uas(self):
        self.uas = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.uas.bind(("127.0.0.1", 0))
        self.uas.settimeout(0.2)
        self.calls = 0

    async def setup(self, offer, legacy_relay, rtp_peer):
        """INVITE with `offer`; answers the INVITE that reaches the callee
        with the RTP peer behind `legacy_relay`. Returns the WebRTC answer."""
        from test_bridge import SipCaller, sip_response

        self.calls += 1
        call_id = f"qos-{os.getpid()}-{self.calls}"
        caller = SipCaller(self)
        caller.call_id = call_id
        loop = asyncio.get_running_loop()
        uas_done = loop.run_in_executor(None, self._answer_invite, legacy_relay, rtp_peer, sip_response)
        caller.send(caller.req("INVITE", 1, offer, branch=f"z9hG4bK{call_id}").replace("bridge-1", call_id))
        status, ok = await loop.run_in_executor(None, caller.final)
        await uas_done
        if status != 200:
            raise RuntimeError(f"{self.name} answered {status}: {ok[:300]}")
        caller.to_tag = re.search(r"^To: .*?(;tag=[^;\s]+)", ok, re.M).group(1)
        caller.send(caller.req("ACK", 1).replace("bridge-1", call_id))
        return ok.split("\r\n\r\n", 1)[1], caller

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
            sdp = legacy_sdp(relay.b_port, self.band)
            self.uas.sendto(sip_response(req, 200, "OK", "qos", self.uas.getsockname()[1], sdp).encode(), addr)
            return
        raise RuntimeError("the legacy callee got no INVITE")

    async def teardown(self, c):
        from test_bridge import sip_response

        def bye_uas():  # the BYE reaches the legacy callee (from rtcgw, or through the proxy)
            deadline = time.time() + 5
            while time.time() < deadline:
                try:
                    data, addr = self.uas.recvfrom(65535)
                except socket.timeout:
                    continue
                req = data.decode(errors="replace")
                if req.startswith("BYE"):
                    self.uas.sendto(sip_response(req, 200, "OK", "qos", self.uas.getsockname()[1]).encode(), addr)
                    return

        loop = asyncio.get_running_loop()
        callee = loop.run_in_executor(None, bye_uas)
        c.send(c.req("BYE", 2).replace("bridge-1", c.call_id))
        await loop.run_in_executor(None, c.final)
        await callee


class Rtcgw(SipFront):
    """The release gateway with a config variant, its legacy leg offering
    only the band's codec: in bridge mode (the SIP caller INVITEs it), or
    with `ng` as the media relay of Kamailio (see `Kamailio`)."""

    name = "rtcgw"

    def __init__(self, workdir, extra_toml="", binary=None, band=NB, ng=False):
        self.band = band
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.http_port, self.sip_port, self.ng_port = free_port(), free_port(), free_port()
        self._bind_uas()
        port_min, port_max = media_range(slot=os.getpid())
        cfg = self.workdir / "rtcgw.toml"
        cfg.write_text(
            f'[log]\nfilter = "warn"\n[http]\nlisten = "127.0.0.1:{self.http_port}"\n'
            f'[sip]\nlisten = "127.0.0.1:{self.sip_port}"\n'
            + (f'[ng]\nenabled = true\nlisten = "127.0.0.1:{self.ng_port}"\n' if ng else "")
            # The lab's peers share the cores: no admission by headroom.
            + ('[media]\nadmit_max_late_pct = 0\nadmit_max_cpu_pct = 0\n' if "[media]" not in extra_toml else "")
            + f'[route]\nmode = "bridge"\ntarget = "sip:qos@127.0.0.1:{self.uas.getsockname()[1]}"\n'
            f'[demo]\nrecord_dir = "{self.workdir}/rec"\n'
            f'[legacy]\nport_min = {port_min}\nport_max = {port_max}\ncodecs = ["{band.codec}"]\n'
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

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.uas.close()
        self.log.close()

    def stats(self):
        try:
            calls = http_json(self.url + "/v1/calls")
            calls = calls.get("calls", calls) if isinstance(calls, dict) else calls
            cid = calls[-1]["id"]
            return http_json(self.url + f"/v1/calls/{cid}/stats")
        except Exception as e:  # stats are a bonus; the audio is the measurement
            return {"error": str(e)}


def legacy_sdp(port, band):
    """The RTP peer's SDP: the band's codec only."""
    return (f"v=0\r\no=qos 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP {band.pt}\r\na=rtpmap:{band.pt} {band.codec}/{RTP_CLOCK}\r\n"
            "a=ptime:20\r\n")


def _sections(toml):
    """{name: body} of a small TOML snippet, so the lab can merge its own
    [legacy] keys with a variant's."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^\[([\w.]+)\]\n(.*?)(?=^\[|\Z)", toml, re.M | re.S)}


def _section(toml, name):
    return _sections(toml).get(name, "")


def concealment(stats):
    """(W->L, L->W) concealed share of samples in rtcgw's two receive paths,
    from the typed stats record (docs/stats.md): the WebRTC leg's inbound is
    what goes on to the legacy side, the legacy leg's inbound the reverse."""
    w2l = l2w = None
    for leg in (stats or {}).get("legs", []) if isinstance(stats, dict) else []:
        inbound = leg.get("inbound") or {}
        if inbound.get("totalSamplesReceived"):
            share = inbound.get("concealedSamples", 0) / inbound["totalSamplesReceived"]
            if leg.get("leg") == "webrtc":
                w2l = share
            elif leg.get("leg") == "legacy":
                l2w = share
    if w2l is not None or l2w is not None:
        return w2l, l2w

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

class Rtpengine:
    """Debian's rtpengine-daemon in userspace (no kernel table), driven with
    the ng protocol: WebRTC (ICE, DTLS-SRTP, Opus) <-> RTP/AVP PCMU (or
    G.722), transcoding."""

    name = "rtpengine"

    def __init__(self, workdir, extra_args=(), band=NB):
        self.band = band
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ng_port = free_port()
        port_min, port_max = media_range(slot=os.getpid() + 1)
        self.log = (self.workdir / "rtpengine.log").open("w")
        self.proc = subprocess.Popen(
            ["rtpengine", "--config-file=none", "--table=-1", "--interface=127.0.0.1",
             f"--listen-ng=127.0.0.1:{self.ng_port}", f"--port-min={port_min}", f"--port-max={port_max + 1}",
             "--foreground", "--log-stderr", "--log-level=5", "--num-threads=2", *extra_args],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.ng = NgClient(self.ng_port)
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

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.ng.close()
        self.log.close()

    async def setup(self, offer, legacy_relay, rtp_peer):
        self.calls += 1
        call_id = f"qos-{os.getpid()}-{self.calls}"
        r = self.ng({"command": "offer", "call-id": call_id, "from-tag": "webrtc", "sdp": offer,
                     "ICE": "remove", "DTLS": "off", "transport-protocol": "RTP/AVP", "rtcp-mux": ["demux"],
                     "codec": {"transcode": [self.band.codec], "mask": ["opus"]}, "replace": ["origin", "session-connection"]})
        if r.get("result") != b"ok":
            raise RuntimeError(f"rtpengine offer: {r}")
        plain = r["sdp"].decode()
        port = int(re.search(r"^m=audio (\d+)", plain, re.M).group(1))
        legacy_relay.set_peers(a=rtp_peer.addr, b=("127.0.0.1", port))
        rtp_peer.start(legacy_relay.a_addr)
        answer = legacy_sdp(legacy_relay.b_port, self.band)
        r = self.ng({"command": "answer", "call-id": call_id, "from-tag": "webrtc", "to-tag": "legacy",
                     "sdp": answer, "ICE": "force", "transport-protocol": "UDP/TLS/RTP/SAVPF", "rtcp-mux": ["offer"],
                     "replace": ["origin", "session-connection"]})
        if r.get("result") != b"ok":
            raise RuntimeError(f"rtpengine answer: {r}")
        (self.workdir / "last-offer-plain.sdp").write_text(plain)
        (self.workdir / "last-answer-webrtc.sdp").write_text(r["sdp"].decode())
        return r["sdp"].decode(), call_id

    def stats(self):
        return {}

    async def teardown(self, call_id):
        self.ng({"command": "delete", "call-id": call_id, "from-tag": "webrtc"})


class Kamailio(SipFront):
    """A media relay (rtpengine, or rtcgw with ng on) behind Debian's stock
    Kamailio with kamailio/kamailio-ng.cfg: the same SIP proxy, the same
    rtpengine module and flags for both, only rtpengine_sock differs. Calls
    are set up by SIP through it, as in production."""

    def __init__(self, relay, workdir):
        import kamailio_proc

        self.relay, self.band, self.name = relay, relay.band, relay.name
        self.proc = relay.proc  # the relay's CPU is what capacity measures
        self._bind_uas()
        self.sip_port = free_port()
        self.log = (Path(workdir) / "kamailio.log").open("w")
        try:
            self.kam = kamailio_proc.start(self.sip_port, self.uas.getsockname()[1], relay.ng_port, stdout=self.log)
        except Exception:
            relay.close()
            raise

    def stats(self):
        return self.relay.stats()

    def close(self):
        import kamailio_proc

        kamailio_proc.stop(self.kam)
        self.log.close()
        self.uas.close()
        self.relay.close()


def make_gateway(system, workdir, variant_args, band, front):
    """`system` with a settings variant, called directly or through
    Kamailio (`front`: "kamailio" or "direct")."""
    via = front == "kamailio"
    relay = Rtcgw(workdir, variant_args, band=band, ng=via) if system == "rtcgw" \
        else Rtpengine(workdir, variant_args, band=band)
    return Kamailio(relay, workdir) if via else relay


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
    # netem's default: each packet its own delay, so jitter also reorders.
    Cell("jitter 40 ms reordering", Impairment(delay_ms=40, jitter_ms=40, jitter_reorders=True), "jitter-reorder", 40),
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


async def run_call(gw, imp, seed, speech_w2l, speech_l2w, timeout_s=60, fec=False, lock=None, scored=True,
                   connected=None, until=None):
    """One bridged call through `gw` with `imp` on both of its receive legs.
    Returns the scores for both directions (or, unscored, how much arrived).
    `lock` serialises call setup when calls run concurrently; `connected`
    (a list) gets an entry once the call is up; `until` (an Event) holds the
    call until set, instead of for the speech. The speech and the RTP peer's
    codec are in the gateway's band (`gw.band`)."""
    import contextlib

    from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

    sender_fec(fec)
    web = ImpairRelay(a_to_b=imp, seed=f"{seed}/webrtc", max_seconds=timeout_s)
    leg = ImpairRelay(a_to_b=imp, seed=f"{seed}/legacy", max_seconds=timeout_s)
    band = gw.band
    peer = RtpPeer(speech_l2w, max_seconds=timeout_s, band=band)
    pc = RTCPeerConnection()
    track = SpeechTrack(speech_w2l, band.rate)
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
        async with lock or contextlib.nullcontext():
            answer, handle = await gw.setup(rewrite_candidates(offer, web.b_port), leg, peer)
        b_port = int(re.search(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host", answer, re.I).group(1))
        web.set_peers(a=("127.0.0.1", a_port), b=("127.0.0.1", b_port))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=rewrite_candidates(answer, web.a_port), type="answer"))
        deadline = time.monotonic() + 10
        while pc.connectionState != "connected":
            if time.monotonic() > deadline:
                raise RuntimeError(f"WebRTC leg did not connect ({gw.name}): {pc.connectionState}")
            await asyncio.sleep(0.05)
        if connected is not None:
            connected.append(gw.name)
        await asyncio.sleep(WARMUP_S)
        track.go()
        peer.go()
        if until is not None:
            await asyncio.wait_for(until.wait(), timeout_s)
        else:
            await asyncio.sleep(max(len(speech_w2l), len(speech_l2w)) / band.rate + TAIL_S + 0.1)
        stats = gw.stats() if scored else {}
        await gw.teardown(handle)
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
        np.save(f"/tmp/qos-debug-{gw.name}.npy", np.array([(p[0], p[2]) for p in peer.received]))
    if not scored:
        return dict(rtp_received=len(peer.received), frames_received=len(frames))
    w2l = score(speech_w2l, track.speech_t0, units_from_rtp(peer.received, band), band.rate, band)
    w2l.update(adaptive_far_end(speech_w2l, track.speech_t0, peer.received, band))
    l2w = score(speech_l2w, peer.speech_t0, units_from_frames(frames), frames[0][2] if frames else 48000, band)
    cw, cl = concealment(stats)
    w2l["concealed"], l2w["concealed"] = cw, cl
    return dict(w2l=w2l, l2w=l2w, relays=dict(webrtc=web.counters, legacy=leg.counters), stats=stats)


# ---------------------------------------------------------------- RED (Chromium)

# Opus with and without RED (RFC 2198 redundancy) needs a sender that can do
# RED: aiortc cannot, headless Chromium can. Its speech comes from WebAudio
# (a buffer played into a MediaStreamDestination: no capture processing);
# setCodecPreferences puts audio/red first (libwebrtc sends RED only when it
# leads the negotiated list; rtcgw's answer keeps the offer's order) or
# offers Opus alone.
RED_CELLS = ["loss 5%", "loss 10%", "loss 20%", "burst loss 5% (mean burst 4)"]

BROWSER_SPEECH_JS = """(async () => {
  const pcm = Uint8Array.from(atob(%(b64)s), c => c.charCodeAt(0));
  const s16 = new Int16Array(pcm.buffer);
  const ctx = new AudioContext();
  const buf = ctx.createBuffer(1, s16.length, %(rate)d);
  buf.copyToChannel(Float32Array.from(s16, v => v / 32768), 0);
  const dst = ctx.createMediaStreamDestination();
  window.playSpeech = () => {
    const src = ctx.createBufferSource();
    src.buffer = buf;
    src.connect(dst);
    src.start();
    return 'playing';
  };
  const pc = new RTCPeerConnection();
  window.pc = pc;
  // What rtcgw sends, as Chromium plays it out (its NetEQ, its Opus decoder
  // with in-band FEC), captured from the remote track while `recording`.
  window.recorded = [];
  window.recording = false;
  pc.ontrack = e => {
    const el = new Audio();
    el.muted = true;
    el.srcObject = new MediaStream([e.track]);
    el.play().catch(() => {});
    const src = ctx.createMediaStreamSource(new MediaStream([e.track]));
    const proc = ctx.createScriptProcessor(4096, 1, 1);
    proc.onaudioprocess = ev => {
      if (window.recording) window.recorded.push(Float32Array.from(ev.inputBuffer.getChannelData(0)));
    };
    src.connect(proc);
    proc.connect(ctx.destination);
    window.procs = (window.procs || []).concat([proc]);
  };
  // The previous call's capture stops with its call.
  window.stopRecording = () => { for (const p of window.procs || []) p.disconnect(); window.procs = []; };
  window.takeRecording = () => {
    window.recording = false;
    const n = window.recorded.reduce((a, c) => a + c.length, 0);
    const s16 = new Int16Array(n);
    let i = 0;
    for (const c of window.recorded) for (const v of c) s16[i++] = Math.max(-32768, Math.min(32767, v * 32768));
    const bytes = new Uint8Array(s16.buffer);
    let bin = '';
    for (let k = 0; k < bytes.length; k += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(k, k + 0x8000));
    return JSON.stringify({rate: ctx.sampleRate, b64: btoa(bin)});
  };
  const tr = pc.addTransceiver(dst.stream.getAudioTracks()[0], {direction: 'sendrecv', streams: [dst.stream]});
  const codecs = RTCRtpSender.getCapabilities('audio').codecs;
  const pick = t => codecs.filter(c => c.mimeType.toLowerCase() === t);
  tr.setCodecPreferences(%(red)s ? [...pick('audio/red'), ...pick('audio/opus')] : pick('audio/opus'));"""

async def run_browser_call(gw, browser, imp, seed, speech, red, timeout_s=60, direction="w2l"):
    """One bridged call with headless Chromium as the WebRTC peer. "w2l":
    Chromium speaks, `imp` between it and rtcgw, the PCMU peer's arrivals
    scored; returns also the codec Chromium sent with. "l2w": the PCMU peer
    speaks, `imp` between rtcgw and Chromium, what Chromium plays out
    scored (its decoder uses the in-band FEC that rtcgw sends)."""
    import base64

    from browser import OFFER_AND_GATHER_JS, answer_js

    browser_speaks = direction == "w2l"
    web = ImpairRelay(a_to_b=imp if browser_speaks else Impairment(), b_to_a=Impairment() if browser_speaks else imp,
                      seed=f"{seed}/webrtc", max_seconds=timeout_s)
    leg = ImpairRelay(a_to_b=Impairment(), seed=f"{seed}/legacy", max_seconds=timeout_s)
    band = gw.band
    quiet = np.zeros(band.rate, np.int16)
    peer = RtpPeer(quiet if browser_speaks else speech, max_seconds=timeout_s, band=band)
    sent_speech = speech if browser_speaks else quiet
    web.start()
    leg.start()
    try:
        b64 = base64.b64encode(sent_speech.astype("<i2").tobytes()).decode()
        offer = browser.eval(BROWSER_SPEECH_JS % dict(b64=json.dumps(b64), rate=band.rate,
                                                      red="true" if red else "false") + OFFER_AND_GATHER_JS)
        # Chromium gathers on the host's own IPv4 address (loopback only
        # when it has no other): the relay sends to it there, on this host.
        hosts = re.findall(r"a=candidate:\S+ 1 udp \d+ (\d+\.\d+\.\d+\.\d+) (\d+) typ host", offer, re.I)
        a_addr = min(hosts, key=lambda h: h[0] != "127.0.0.1")
        answer, handle = await gw.setup(rewrite_candidates(offer, web.b_port), leg, peer)
        b_port = int(re.search(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host", answer, re.I).group(1))
        web.set_peers(a=(a_addr[0], int(a_addr[1])), b=("127.0.0.1", b_port))
        state = browser.eval(answer_js(rewrite_candidates(answer, web.a_port)))
        if state != "connected":
            raise RuntimeError(f"Chromium's connection: {state}")
        await asyncio.sleep(WARMUP_S)
        if browser_speaks:
            browser.eval("playSpeech()")
        else:
            browser.eval("window.recording = true")
            peer.go()
        await asyncio.sleep(len(speech) / band.rate + TAIL_S + 0.1)
        played = None if browser_speaks else json.loads(browser.eval("takeRecording()"))
        stats = gw.stats()
        await gw.teardown(handle)
    finally:
        try:
            browser.eval("window.stopRecording && stopRecording(), window.pc && pc.close()")
        except Exception:
            pass
        peer.stop()
        web.close()
        leg.close()
    if not browser_speaks:
        from math import gcd

        from scipy.signal import resample_poly

        x = np.frombuffer(base64.b64decode(played["b64"]), "<i2").astype(np.float64)
        rate = int(played["rate"])  # the AudioContext's: 44.1 or 48 kHz
        g = gcd(rate, band.rate)
        l2w = dict(mos=pesq_score(speech, resample_poly(x, band.rate // g, rate // g), band), seconds=len(x) / rate,
                   peak=float(np.abs(x).max(initial=0)))
        if os.environ.get("QOSLAB_DEBUG"):
            np.save(f"/tmp/qos-debug-browser-{seed}.npy", x)
        return dict(w2l={}, l2w=l2w, relays=dict(webrtc=web.counters), stats=stats)
    w2l = score(speech, None, units_from_rtp(peer.received, band), band.rate, band)
    w2l["concealed"] = speech_concealment(stats)
    # What Chromium sent, by the RTP payload types the relay saw (its own
    # getStats names the primary codec, Opus, either way).
    names = {int(pt): name for pt, name in re.findall(r"^a=rtpmap:(\d+) ([\w-]+)/", answer, re.M)}
    pts = web.dirs["a_to_b"].payload_types
    sent = {names.get(pt, str(pt)): n for pt, n in pts.items()}
    sent_with = max(sent, key=sent.get) if sent else None
    return dict(w2l=w2l, l2w={}, sent_with=sent_with, sent_packets=sent, relays=dict(webrtc=web.counters),
                stats=stats)


def speech_concealment(stats):
    """Concealed share of the WebRTC leg's NetEQ output, not counting
    silent concealment: Chromium sends few packets while its WebAudio track
    is silent (before the speech), which NetEQ counts as concealed."""
    for leg in (stats or {}).get("legs", []) if isinstance(stats, dict) else []:
        inbound = leg.get("inbound") or {}
        if leg.get("leg") == "webrtc" and inbound.get("totalSamplesReceived"):
            return (inbound.get("concealedSamples", 0) - inbound.get("silentConcealedSamples", 0)) \
                / inbound["totalSamplesReceived"]
    return None


def red_lab(seeds, out, cells=None):
    """Opus FEC and RED on and off with headless Chromium as the WebRTC
    peer, same seeds: W->L Chromium sending Opus alone or RED; L->W rtcgw
    sending with its in-band FEC on (the default) or off
    (`webrtc.opus.fec = false`), Chromium playing it out."""
    from browser import Chromium

    cells = [cell(n) for n in (cells or RED_CELLS)]
    sw, sl = utterance(UTTERANCE_W2L), utterance(UTTERANCE_L2W)
    kinds = {"Chromium, Opus": ("on", "w2l", False), "Chromium, Opus + RED": ("on", "w2l", True),
             "rtcgw FEC on": ("on", "l2w", False), "rtcgw FEC off": ("off", "l2w", False)}
    plan = [(c, s, k) for c in cells for s in seeds for k in kinds]
    results = []
    gws = {"on": Rtcgw(out / "rtcgw"), "off": Rtcgw(out / "rtcgw-fec-off", "[webrtc.opus]\nfec = false\n")}
    browser = Chromium(out / "chromium")
    try:
        for i, (c, seed, variant) in enumerate(plan):
            fec, direction, red = kinds[variant]
            progress(i, len(plan), f"{variant} | {c.name} | seed {seed}")
            try:
                r = asyncio.run(run_browser_call(gws[fec], browser, c.imp, seed, sw if direction == "w2l" else sl,
                                                 red, direction=direction))
            except Exception as e:
                r = dict(error=str(e))
            r.update(system="rtcgw", variant=variant, cell=c.name, group=c.group, x=c.x, seed=seed)
            results.append(r)
            got = r.get(direction, {})
            progress(i + 1, len(plan), f"{variant} | {c.name} | {direction} MOS {fmt(got.get('mos'))}"
                     + (f" sent {r.get('sent_with')}" if direction == "w2l" else "")
                     + (f" ERROR {r['error'][:40]}" if "error" in r else ""))
    finally:
        browser.close()
        for g in gws.values():
            g.close()
    return results


# ---------------------------------------------------------------- capacity

def cpu_seconds(pid="self"):
    """User + system CPU of a process (all its threads)."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


async def capacity(gw, n, window_s=8.0):
    """`n` concurrent bridged calls (speech both ways, no impairment) through
    `gw`; the gateway's CPU over `window_s` once all are up."""
    sw, sl = utterance(UTTERANCE_W2L), utterance(UTTERANCE_L2W)
    sw, sl = np.tile(sw, 3), np.tile(sl, 3)  # longer than any window
    from concurrent.futures import ThreadPoolExecutor

    # SIP transactions wait in threads: enough of them for every call at once.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=4 * n + 8))
    lock, connected, until = asyncio.Lock(), [], asyncio.Event()
    tasks = [asyncio.ensure_future(run_call(gw, Impairment(), i, sw, sl, timeout_s=120, lock=lock, scored=False,
                                            connected=connected, until=until)) for i in range(n)]
    deadline = time.monotonic() + 90
    while len(connected) < n and time.monotonic() < deadline and not any(t.done() for t in tasks):
        await asyncio.sleep(0.2)
    await asyncio.sleep(WARMUP_S + 1.0)
    g0, l0, t0 = cpu_seconds(gw.proc.pid), cpu_seconds(), time.monotonic()
    await asyncio.sleep(window_s)
    g1, l1, t1 = cpu_seconds(gw.proc.pid), cpu_seconds(), time.monotonic()
    until.set()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    ok = [d for d in done if isinstance(d, dict)]
    expected = 50 * (t1 - t0)  # at least the window's worth of 20 ms packets/frames
    with_audio = sum(1 for d in ok if d["rtp_received"] > expected and d["frames_received"] > expected)
    errors = [str(d)[:200] for d in done if not isinstance(d, dict)]
    return dict(calls=n, connected=len(connected), with_audio=with_audio, errors=errors,
                gateway_cpu=100 * (g1 - g0) / (t1 - t0), lab_cpu=100 * (l1 - l0) / (t1 - t0))


# ---------------------------------------------------------------- the lab

RTCGW_VARIANTS = {
    "default": "",
    "NetEQ max 20 packets": "[webrtc]\njitter_buffer_max_packets = 20\n[legacy]\njitter_buffer_max_packets = 20\n",
    "fast accelerate": "[webrtc]\njitter_buffer_fast_accelerate = true\n[legacy]\njitter_buffer_fast_accelerate = true\n",
    "min delay 100 ms": "[webrtc]\njitter_buffer_min_delay_ms = 100\n[legacy]\njitter_buffer_min_delay_ms = 100\n",
    # What Opus codes toward the browser: matched to the legacy codec's band
    # (the default) or always fullband.
    "fullband Opus": "[webrtc.opus]\nmatch_bandwidth = false\n",
}
KNOB_CELLS = ["clean", "jitter 80 ms", "loss 5% + jitter 40 ms"]
# rtpengine's own jitter buffer (off by default; it applies when transcoding).
RTPENGINE_VARIANTS = {"default": (), "jitter buffer 10": ("--jitter-buffer=10",)}
RTPENGINE_KNOB_CELLS = ["jitter 80 ms", "loss 5%", "loss 5% + jitter 40 ms"]
# `--wideband` (G.722 legacy peer, PESQ WB) runs these unless --cells says otherwise.
WIDEBAND_CELLS = ["clean", "loss 5%", "jitter 40 ms", "loss 5% + jitter 40 ms"]


def progress(i, n, text):
    bar = "#" * int(20 * i / max(n, 1))
    print(f"\r[{bar:<20}] {i:>3}/{n} {text[:90]:<90}", end="" if i < n else "\n", file=sys.stderr, flush=True)


def fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def main(argv=None):
    global WARMUP_S
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", default="all", help="comma-separated cell names, 'all' or 'none'")
    p.add_argument("--seeds", default="1", help="comma-separated seeds (each cell runs once per seed)")
    p.add_argument("--no-rtpengine", action="store_true")
    p.add_argument("--no-knobs", action="store_true", help="only the default settings of each gateway")
    p.add_argument("--no-defaults", action="store_true", help="only the settings variants (knobs)")
    p.add_argument("--variants", default="all",
                   help="comma-separated rtcgw settings variants to run as knobs (default all)")
    p.add_argument("--systems", default="rtcgw,rtpengine")
    p.add_argument("--capacity", default="10,20", help="concurrent-call counts for the CPU comparison ('' for none)")
    p.add_argument("--wideband", action="store_true",
                   help="the legacy peer speaks G.722 and the speech is 16 kHz, scored with PESQ WB; "
                        "cells default to " + ", ".join(WIDEBAND_CELLS).replace("%", "%%")
                        + "; no knobs, no capacity")
    p.add_argument("--red", action="store_true",
                   help="Opus RED and FEC on and off through rtcgw with headless Chromium as the WebRTC peer "
                        "(aiortc cannot send RED nor decode FEC): W->L Chromium sending Opus or RED, L->W rtcgw "
                        "sending with FEC on or off; cells default to " + ", ".join(RED_CELLS).replace("%", "%%")
                        + "; no rtpengine, no knobs, no capacity")
    p.add_argument("--front", choices=["kamailio", "direct"], default="kamailio",
                   help="how calls reach the gateways: through Debian's Kamailio with kamailio/kamailio-ng.cfg "
                        "and its rtpengine module, the same config for both, only rtpengine_sock differing "
                        "(default), or directly (rtcgw by SIP in bridge mode, rtpengine by ng from the lab); "
                        "--wideband is always direct (the Kamailio config transcodes to PCMU)")
    p.add_argument("--warmup", type=float, default=WARMUP_S,
                   help="seconds between the connection and the speech (default %(default)s); longer lets "
                        "NetEQ settle from its start-up delay before anything is measured")
    p.add_argument("--out", help="results folder (default target/qos-lab, target/qos-lab-wb with --wideband, "
                                 "target/qos-lab-red with --red)")
    p.add_argument("--report", action="store_true",
                   help="after the run, write the tables into BENCHMARKS.md and the plots into docs/qos/")
    p.add_argument("--report-only", metavar="RESULTS_JSON[,RESULTS_JSON...]",
                   help="only write the report from earlier runs (several are merged)")
    a = p.parse_args(argv)
    WARMUP_S = a.warmup
    if a.report_only:
        print(report(a.report_only))
        return []
    import aiortc_peer

    aiortc_peer.loopback_only()
    band = WB if a.wideband else NB
    out = Path(a.out or ROOT / ("target/qos-lab-wb" if a.wideband else "target/qos-lab-red" if a.red
                                else "target/qos-lab"))
    out.mkdir(parents=True, exist_ok=True)
    if a.red:
        t_start = time.time()
        seeds = [s.strip() for s in a.seeds.split(",")]
        results = red_lab(seeds, out, None if a.cells == "all" else [n.strip() for n in a.cells.split(",")])
        meta = dict(date=time.strftime("%Y-%m-%d"), seconds=round(time.time() - t_start), cores=os.cpu_count(),
                    command="scripts/qos-lab " + shlex.join(argv if argv is not None else sys.argv[1:]),
                    rtpengine=None, band="nb", red=True)
        (out / "results.json").write_text(json.dumps(dict(meta=meta, results=results, capacity=[]),
                                                     indent=1, default=str))
        print(f"results: {out / 'results.json'} ({meta['seconds']} s)", file=sys.stderr)
        if a.report:
            print(report(out / "results.json"))
        return results
    if a.cells == "all":
        cells = [cell(n) for n in WIDEBAND_CELLS] if a.wideband else MATRIX
    else:
        cells = [] if a.cells == "none" else [cell(n.strip()) for n in a.cells.split(",")]
    if a.wideband:
        # The settings variants and the capacity runs are narrowband questions.
        # (--variants picks rtcgw variants to run in wideband too).
        a.no_knobs, a.capacity, a.front = a.no_knobs or a.variants == "all", "", "direct"
    seeds = [s.strip() for s in a.seeds.split(",")]
    sw, sl = utterance(UTTERANCE_W2L, rate=band.rate), utterance(UTTERANCE_L2W, rate=band.rate)
    systems = [x for x in a.systems.split(",") if x and not (x == "rtpengine" and a.no_rtpengine)]
    plan = [] if a.no_defaults else [(sy, "default", c, s) for sy in systems for c in cells for s in seeds]
    if not a.no_knobs:
        for sy, variants, knob_cells in (("rtcgw", RTCGW_VARIANTS, KNOB_CELLS),
                                         ("rtpengine", RTPENGINE_VARIANTS, RTPENGINE_KNOB_CELLS)):
            if sy in systems:
                wanted = variants if a.variants == "all" or sy != "rtcgw" \
                    else [v.strip() for v in a.variants.split(",")]
                plan += [(sy, v, cell(c), s) for v in variants if v != "default" and v in wanted
                         for c in knob_cells if cell(c) in cells for s in seeds]
    results, gws, capacity_rows = [], {}, []
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
                variants = RTCGW_VARIANTS if system == "rtcgw" else RTPENGINE_VARIANTS
                gws[key] = make_gateway(system, wd, variants[variant], band, a.front)
            try:
                r = asyncio.run(run_call(gws[key], c.imp, seed, sw, sl, fec=c.fec))
                r.update(system=system, variant=variant, cell=c.name, group=c.group, x=c.x, seed=seed)
            except Exception as e:
                r = dict(system=system, variant=variant, cell=c.name, group=c.group, x=c.x, seed=seed, error=str(e))
            results.append(r)
            w = r.get("w2l", {})
            progress(i + 1, len(plan), f"{system} {variant} | {c.name} | W->L MOS {fmt(w.get('mos'))}"
                     + (f" ERROR {r['error'][:40]}" if "error" in r else ""))
        for g in gws.values():
            g.close()
        gws.clear()
        capacity_rows = []
        counts = [int(x) for x in a.capacity.split(",") if x.strip()]
        for system in systems:
            for n in counts:
                progress(0, 1, f"capacity: {system}, {n} concurrent calls")
                wd = out / f"{system}-capacity"
                gw = make_gateway(system, wd, RTCGW_VARIANTS["default"] if system == "rtcgw"
                                  else RTPENGINE_VARIANTS["default"], band, a.front)
                gws[(system, "capacity")] = gw
                try:
                    row = asyncio.run(capacity(gw, n))
                except Exception as e:
                    row = dict(calls=n, error=str(e))
                finally:
                    gw.close()
                    gws.clear()
                row["system"] = system
                capacity_rows.append(row)
                progress(1, 1, f"capacity: {system}, {n} calls: gateway {fmt(row.get('gateway_cpu'), '.1f')}% "
                         f"of a core, {row.get('with_audio')}/{n} with audio")
    finally:
        for g in gws.values():
            g.close()
    meta = dict(date=time.strftime("%Y-%m-%d"), seconds=round(time.time() - t_start), cores=os.cpu_count(),
                command="scripts/qos-lab " + shlex.join(argv if argv is not None else sys.argv[1:]),
                rtpengine=_rtpengine_version(), band=band.name, front=a.front,
                kamailio=_kamailio_version() if a.front == "kamailio" else None)
    (out / "results.json").write_text(json.dumps(dict(meta=meta, results=results, capacity=capacity_rows),
                                                 indent=1, default=str))
    print(f"results: {out / 'results.json'} ({meta['seconds']} s)", file=sys.stderr)
    if a.report:
        print(report(out / "results.json"))
    return results


# ---------------------------------------------------------------- report

def _agg(results):
    """Mean over seeds per (system, variant, cell)."""
    groups = {}
    for r in results:
        groups.setdefault((r["system"], r["variant"], r["cell"]), []).append(r)
    out = {}
    for k, rs in groups.items():
        ok = [r for r in rs if "error" not in r]
        row = dict(n=len(ok), errors=len(rs) - len(ok), group=rs[0]["group"], x=rs[0]["x"])
        for d in ("w2l", "l2w"):
            for m in ("mos", "mos_ideal", "resyncs", "delay_p50", "delay_p95", "concealed",
                      "mos_adaptive", "m2e_p50"):
                v = [r[d][m] for r in ok if r[d].get(m) is not None]
                row[f"{d}_{m}"] = float(np.mean(v)) if v else None
                row[f"{d}_{m}_range"] = (min(v), max(v)) if len(v) > 1 else None
        out[k] = row
    return out


def report(results_paths, bench_md=ROOT / "BENCHMARKS.md", plots=ROOT / "docs/qos"):
    """Writes the narrowband runs' tables (<!-- bench:qos -->) and plots,
    and the wideband runs' table (<!-- bench:qos-wb -->), from results.json
    files; each section only when such runs are given."""
    runs = [json.loads(Path(p).read_text()) for p in str(results_paths).split(",")]
    red = [d for d in runs if d["meta"].get("red")]
    wb = [d for d in runs if d["meta"].get("band") == "wb"]
    nb = [d for d in runs if d["meta"].get("band", "nb") == "nb" and not d["meta"].get("red")]
    return "\n".join(([_report_wb(wb, bench_md)] if wb else []) + ([_report_nb(nb, bench_md, plots)] if nb else [])
                     + ([_report_red(red, bench_md)] if red else []))


def _report_red(runs, bench_md):
    data, meta = _merged(runs)
    agg = _agg(data["results"])
    seeds = sorted({r["seed"] for r in data["results"]})
    lines = _command_line(meta)
    lines += ["Headless Chromium (Debian's `chromium`) -> impairment -> rtcgw -> PCMU peer, the same speech and "
              f"seeds ({', '.join(seeds)}) with Opus alone and with RED first in Chromium's codec preferences. "
              "PESQ NB MOS-LQO of what the far end plays (the phone-like fixed 60 ms buffer), concealed share of "
              "rtcgw's NetEQ output on the WebRTC leg (not counting silent concealment: Chromium sends little "
              "while its track is silent before the speech), and what Chromium sent (the RTP payload type most of "
              "its packets carried at the relay). "
              "Chromium's Opus also turns in-band FEC on by itself once RTCP reports loss, in both columns.", "",
              "| cell | Opus: MOS | Opus + RED: MOS | RED - Opus | Opus: concealed | Opus + RED: concealed "
              "| sent with (RED run) |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for c in RED_CELLS:
        a, b = agg.get(("rtcgw", "Chromium, Opus", c)), agg.get(("rtcgw", "Chromium, Opus + RED", c))
        if not a or not b:
            continue
        sent = sorted({r.get("sent_with") or "?" for r in data["results"]
                       if r["cell"] == c and r["variant"].endswith("RED") and "error" not in r})
        d = None if a["w2l_mos"] is None or b["w2l_mos"] is None else b["w2l_mos"] - a["w2l_mos"]
        pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
        lines.append(f"| {c} | {fmt(a['w2l_mos'])} | {fmt(b['w2l_mos'])} | {fmt(d, '+.2f')} "
                     f"| {pct(a['w2l_concealed'])} | {pct(b['w2l_concealed'])} | {', '.join(sent)} |")
    rows = [(c, agg.get(("rtcgw", "rtcgw FEC on", c)), agg.get(("rtcgw", "rtcgw FEC off", c))) for c in RED_CELLS]
    if any(on and off for _, on, off in rows):
        def per_packet(variant, c):
            rs = [r["relays"]["webrtc"]["b_to_a"] for r in data["results"]
                  if r["variant"] == variant and r["cell"] == c and "error" not in r]
            return sum(x["bytes"] for x in rs) / max(1, sum(x["packets"] for x in rs))

        lines += ["", "L->W, rtcgw's own Opus encoder with in-band FEC on (the default) and off "
                  "(`webrtc.opus.fec = false`): PCMU peer -> rtcgw -> impairment -> Chromium, PESQ NB of what "
                  "Chromium plays out (captured from its remote track with WebAudio), and the bytes per packet "
                  "rtcgw sent (SRTP, at the relay):", "",
                  "| cell | FEC on: MOS | FEC off: MOS | on - off | bytes/packet on | bytes/packet off |",
                  "|---|---:|---:|---:|---:|---:|"]
        for c, on, off in rows:
            if on and off:
                d = None if on["l2w_mos"] is None or off["l2w_mos"] is None else on["l2w_mos"] - off["l2w_mos"]
                lines.append(f"| {c} | {fmt(on['l2w_mos'])} | {fmt(off['l2w_mos'])} | {fmt(d, '+.2f')} "
                             f"| {per_packet('rtcgw FEC on', c):.0f} | {per_packet('rtcgw FEC off', c):.0f} |")
    lines += _failed(data["results"])
    text = "\n".join(lines) + "\n"
    _replace_section(bench_md, "qos-red", text)
    return text


def _merged(runs):
    data = dict(results=[r for d in runs for r in d["results"]], capacity=[r for d in runs for r in d.get("capacity", [])])
    meta = dict(runs[0]["meta"], seconds=sum(d["meta"]["seconds"] for d in runs),
                command="; ".join(f"`{d['meta']['command']}`" for d in runs))
    return data, meta


def _command_line(meta):
    lines = [f"Command: {meta['command']} on {meta['cores']} cores, {meta['date']} "
             f"({meta['seconds'] // 60} min; {meta.get('rtpengine') or 'rtpengine not run'}).", ""]
    if meta.get("front") == "kamailio":
        lines += [f"Both relays behind the same SIP proxy: {meta.get('kamailio') or 'Kamailio'} with "
                  "`kamailio/kamailio-ng.cfg` (its rtpengine module, the same flags), only `rtpengine_sock` "
                  "pointing at rtpengine or at rtcgw's `[ng] listen`; calls set up by SIP through it.", ""]
    elif meta.get("front") == "direct":
        lines += ["Calls set up directly: rtcgw by SIP in bridge mode, rtpengine by ng from the lab.", ""]
    return lines


def _score_tables(agg, cells):
    """The per-cell table (phone-like far end, delays, concealment) and the
    ideal-far-end/resyncs table, for the default settings. MOS over several
    seeds: the mean, and the lowest-highest in brackets."""
    R = lambda s, c, v="default": agg.get((s, v, c))  # noqa: E731

    def mos(row, key):
        r = row.get(key + "_range")
        return fmt(row.get(key)) + (f" ({r[0]:.2f}-{r[1]:.2f})" if r else "")

    lines = ["| cell | seeds | W->L rtcgw | W->L rtpengine | L->W rtcgw | L->W rtpengine "
             "| W->L delay rtcgw | W->L delay rtpengine | L->W delay rtcgw | L->W delay rtpengine "
             "| rtcgw concealed W->L |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in cells:
        a, b = R("rtcgw", c) or {}, R("rtpengine", c) or {}
        if not a and not b:
            continue
        pc = a.get("w2l_concealed")
        lines.append(f"| {c} | {a.get('n', b.get('n'))} | {mos(a, 'w2l_mos')} | {mos(b, 'w2l_mos')} | {mos(a, 'l2w_mos')} "
                     f"| {mos(b, 'l2w_mos')} | {fmt(a.get('w2l_delay_p50'), '.0f')} "
                     f"| {fmt(b.get('w2l_delay_p50'), '.0f')} | {fmt(a.get('l2w_delay_p50'), '.0f')} "
                     f"| {fmt(b.get('l2w_delay_p50'), '.0f')} | {fmt(None if pc is None else 100 * pc, '.1f')}% |")
    lines += ["", "The same calls scored with an ideal far end (plays by RTP timestamp, never late), and "
              "how often the phone-like far end had to start its buffer over (a packet after its play time):", "",
              "| cell | W->L rtcgw ideal | W->L rtpengine ideal | L->W rtcgw ideal | L->W rtpengine ideal "
              "| resyncs W->L rtcgw | resyncs W->L rtpengine | resyncs L->W rtcgw | resyncs L->W rtpengine |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    pct = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    for c in cells:
        a, b = R("rtcgw", c) or {}, R("rtpengine", c) or {}
        if not a and not b:
            continue
        lines.append(f"| {c} | {fmt(a.get('w2l_mos_ideal'))} | {fmt(b.get('w2l_mos_ideal'))} "
                     f"| {fmt(a.get('l2w_mos_ideal'))} | {fmt(b.get('l2w_mos_ideal'))} | {pct(a.get('w2l_resyncs'))} "
                     f"| {pct(b.get('w2l_resyncs'))} | {pct(a.get('l2w_resyncs'))} | {pct(b.get('l2w_resyncs'))} |")
    rows = [c for c in cells if (R("rtcgw", c) or {}).get("w2l_m2e_p50") is not None
            or (R("rtpengine", c) or {}).get("w2l_m2e_p50") is not None]
    if rows:
        lines += ["", "W->L with a far end whose jitter buffer adapts, as a softphone's does: libwebrtc's NetEq "
                  "run on the packets' recorded arrivals (`rtcgw-bench neteq-play`). Mouth-to-ear delay p50: "
                  "from the sender handing the speech over to the phone playing it (the sender's own "
                  "capture and encoding, the same for both, excluded). rtpengine passes the network's "
                  "jitter on to the phone's buffer; rtcgw absorbs it first.", "",
                  "| cell | MOS rtcgw | MOS rtpengine | mouth-to-ear rtcgw ms | mouth-to-ear rtpengine ms "
                  "| rtcgw - rtpengine ms |", "|---|---:|---:|---:|---:|---:|"]
        for c in rows:
            a, b = R("rtcgw", c) or {}, R("rtpengine", c) or {}
            x, y = a.get("w2l_m2e_p50"), b.get("w2l_m2e_p50")
            lines.append(f"| {c} | {mos(a, 'w2l_mos_adaptive')} | {mos(b, 'w2l_mos_adaptive')} | {fmt(x, '.0f')} "
                         f"| {fmt(y, '.0f')} | {fmt(None if x is None or y is None else x - y, '+.0f')} |")
    return lines


def _failed(results):
    errs = [r for r in results if "error" in r]
    return ["", "Calls that failed: " + "; ".join(f"{r['system']} {r['variant']} {r['cell']}: {r['error'][:120]}"
                                                 for r in errs)] if errs else []


def _report_wb(runs, bench_md):
    data, meta = _merged(runs)
    lines = _command_line(meta)
    lines += ["PESQ WB MOS-LQO (P.862.2, 16 kHz) of what the far end plays (the same phone-like fixed 60 ms "
              "jitter buffer), one-way delay p50 (ms), concealed share of rtcgw's NetEQ output on the WebRTC "
              "receive leg. W->L: aiortc (Opus, 16 kHz speech sent at 48 kHz) -> gateway -> G.722 peer; "
              "L->W: G.722 peer -> gateway -> aiortc (Opus, scored after resampling 48 -> 16 kHz). "
              "WB scores are not comparable with the NB scores above (a different model and scale).", ""]
    lines += _score_tables(_agg(data["results"]), [c.name for c in MATRIX]) + _failed(data["results"])
    text = "\n".join(lines) + "\n"
    _replace_section(bench_md, "qos-wb", text)
    return text


def _report_nb(runs, bench_md, plots):
    data, meta = _merged(runs)
    agg = _agg(data["results"])
    cells = [c.name for c in MATRIX]
    lines = _command_line(meta)
    lines += ["PESQ NB MOS-LQO of what the far end plays (a phone-like fixed 60 ms jitter buffer that "
              "starts over when a packet comes after its play time; over several seeds the mean, the "
              "lowest-highest in brackets), one-way delay p50 "
              "(ms, speech as sent -> as it arrived at the far end), concealed share of rtcgw's NetEQ "
              "output on the WebRTC receive leg. W->L: aiortc (Opus) -> gateway -> PCMU peer; "
              "L->W: PCMU peer -> gateway -> aiortc. Each impairment is on the gateway's receive side "
              "of that direction.", ""]
    lines += _score_tables(agg, cells)
    # Settings variants are compared with the default on the same seeds only.
    knob_seeds = {r["seed"] for r in data["results"] if r["variant"] != "default"}
    agg_k = _agg([r for r in data["results"] if r["seed"] in knob_seeds])
    R = lambda s, c, v="default": agg_k.get((s, v, c))  # noqa: E731
    rk = [(v, c) for v in RTPENGINE_VARIANTS for c in RTPENGINE_KNOB_CELLS if R("rtpengine", c, v)]
    if any(v != "default" for v, _ in rk):
        lines += ["", "rtpengine with its own jitter buffer (`--jitter-buffer=10`), same seeds:", "",
                  "| setting | cell | W->L MOS | L->W MOS | W->L delay p50 | L->W delay p50 |",
                  "|---|---|---:|---:|---:|---:|"]
        for v, c in rk:
            b = R("rtpengine", c, v)
            lines.append(f"| {v} | {c} | {fmt(b['w2l_mos'])} | {fmt(b['l2w_mos'])} | {fmt(b['w2l_delay_p50'], '.0f')} "
                         f"| {fmt(b['l2w_delay_p50'], '.0f')} |")
    knobs = [(v, c) for v in RTCGW_VARIANTS for c in KNOB_CELLS if R("rtcgw", c, v)]
    if any(v != "default" for v, _ in knobs):
        lines += ["", "rtcgw's NetEQ settings (both legs' `jitter_buffer_*` keys), same seeds:", "",
                  "| setting | cell | W->L MOS | L->W MOS | W->L delay p50 | L->W delay p50 | concealed W->L |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for v, c in knobs:
            a = R("rtcgw", c, v)
            pc = a.get("w2l_concealed")
            lines.append(f"| {v} | {c} | {fmt(a['w2l_mos'])} | {fmt(a['l2w_mos'])} | {fmt(a['w2l_delay_p50'], '.0f')} "
                         f"| {fmt(a['l2w_delay_p50'], '.0f')} | {fmt(None if pc is None else 100 * pc, '.1f')}% |")
    cap = data.get("capacity") or []
    if cap:
        lines += ["", "Capacity: concurrent bridged calls (Opus/DTLS-SRTP <-> PCMU, speech both ways, no "
                  "impairment), the gateway's CPU over 8 s once all calls are up. The load (aiortc peers, "
                  "RTP peers, relays: one Python process) runs on the same 2 cores, so neither gateway "
                  "could be driven to its limit; the ceiling is extrapolated as 2 cores / CPU per call. "
                  "Where fewer calls than set up had audio both ways, the load generator (one Python "
                  "process, near 100% of a core) could not keep up: those rows do not measure the gateway.", "",
                  "| gateway | calls | up | with audio both ways | gateway CPU % of a core | per call | "
                  "extrapolated calls on 2 cores | load generator CPU % |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in cap:
            if "error" in r:
                lines.append(f"| {r['system']} | {r['calls']} | error: {r['error'][:100]} | | | | | |")
                continue
            per = r["gateway_cpu"] / r["calls"]
            lines.append(f"| {r['system']} | {r['calls']} | {r['connected']} | {r['with_audio']} "
                         f"| {r['gateway_cpu']:.1f} | {per:.2f} | {200 / per:.0f} | {r['lab_cpu']:.0f} |")
    lines += _failed(data["results"])
    R = lambda s, c, v="default": agg.get((s, v, c))  # noqa: E731
    goal_c = "loss 5% + jitter 40 ms"
    a, b, clean = R("rtcgw", goal_c) or {}, R("rtpengine", goal_c) or {}, R("rtcgw", "clean") or {}
    bc = R("rtpengine", "clean") or {}
    lines += ["", "Against the issue's goals (figures, not asserts):", "",
              f"* W->L, 5% loss + 40 ms jitter: rtcgw {fmt(a.get('w2l_mos'))} (goal >= 3.6), "
              f"rtpengine {fmt(b.get('w2l_mos'))} (goal: rtcgw at least 0.3 above)."
              f" With sender FEC: rtcgw {fmt((R('rtcgw', goal_c + ' + sender FEC') or {}).get('w2l_mos'))}, "
              f"rtpengine {fmt((R('rtpengine', goal_c + ' + sender FEC') or {}).get('w2l_mos'))}.",
              f"* One-way delay on a clean network, W->L p50: rtcgw {fmt(clean.get('w2l_delay_p50'), '.0f')} ms "
              f"(goal <= 40), rtpengine {fmt(bc.get('w2l_delay_p50'), '.0f')} ms; L->W: rtcgw "
              f"{fmt(clean.get('l2w_delay_p50'), '.0f')} ms, rtpengine {fmt(bc.get('l2w_delay_p50'), '.0f')} ms "
              "(both include aiortc's own receive buffer)."]
    text = "\n".join(lines) + "\n"
    _replace_section(bench_md, "qos", text)
    _plots(agg, Path(plots))
    return text


def _replace_section(path, name, text):
    path = Path(path)
    md = path.read_text()
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    if begin in md:
        md = md[:md.index(begin) + len(begin)] + "\n" + text + md[md.index(end):]
    else:
        md += f"\n{begin}\n{text}{end}\n"
    path.write_text(md)


def _plots(agg, outdir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outdir.mkdir(parents=True, exist_ok=True)
    styles = {("rtcgw", "w2l"): ("tab:blue", "-", "rtcgw W->L"), ("rtcgw", "l2w"): ("tab:blue", "--", "rtcgw L->W"),
              ("rtpengine", "w2l"): ("tab:red", "-", "rtpengine W->L"),
              ("rtpengine", "l2w"): ("tab:red", "--", "rtpengine L->W")}
    for group, xlabel, fname in (("loss", "random loss (%)", "mos_vs_loss.png"),
                                 ("jitter", "jitter (ms, uniform +-, in order)", "mos_vs_jitter.png")):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for (system, d), (color, ls, label) in styles.items():
            pts = sorted((row["x"], row[f"{d}_mos"]) for (s, v, c), row in agg.items()
                         if s == system and v == "default" and row["group"] in (group, "clean")
                         and row[f"{d}_mos"] is not None)
            if pts:
                ax.plot(*zip(*pts), ls, color=color, marker="o", label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("PESQ NB MOS-LQO")
        ax.set_ylim(1, 4.5)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(outdir / fname)
        plt.close(fig)
    cells = [c.name for c in MATRIX if ("rtcgw", "default", c.name) in agg]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    width = 0.2
    for i, ((system, d), (color, ls, label)) in enumerate(styles.items()):
        ys = [(agg.get((system, "default", c)) or {}).get(f"{d}_delay_p50") or 0 for c in cells]
        ax.bar(np.arange(len(cells)) + (i - 1.5) * width, ys, width, color=color,
               alpha=1.0 if d == "w2l" else 0.5, label=label)
    ax.set_xticks(np.arange(len(cells)))
    ax.set_xticklabels(cells, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("one-way delay p50 (ms)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(outdir / "latency.png")
    plt.close(fig)


def _rtpengine_version():
    try:
        return subprocess.run(["rtpengine", "--version"], capture_output=True, text=True).stdout.strip() \
            or subprocess.run(["rtpengine", "--version"], capture_output=True, text=True).stderr.strip()
    except OSError:
        return None


def _kamailio_version():
    try:
        out = subprocess.run(["kamailio", "-v"], capture_output=True, text=True).stdout
        # "version: kamailio 5.6.3 (x86_64/linux)"
        return out.splitlines()[0].split(":", 1)[-1].strip() if out else None
    except OSError:
        return None


if __name__ == "__main__":
    main()
