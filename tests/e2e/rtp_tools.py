"""G.711, RTP and pcap helpers for the legacy-leg tests (test data built
from real recorded speech, Debian's asterisk-core-sounds-en-wav)."""

import struct
import wave

import numpy as np

SPEECH = "/usr/share/asterisk/sounds/en/demo-congrats.wav"


def read_speech(seconds, path=SPEECH):
    """The first `seconds` of a recorded prompt, 8 kHz int16."""
    with wave.open(path) as w:
        assert w.getframerate() == 8000 and w.getsampwidth() == 2
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    return x[: int(seconds * 8000)]


try:  # Python's own G.711 (present up to 3.12; the test venv is 3.11)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
except ImportError:  # pragma: no cover
    audioop = None


def ulaw_encode(x):
    return np.frombuffer(audioop.lin2ulaw(x.astype(np.int16).tobytes(), 2), np.uint8)


def ulaw_decode(b):
    return np.frombuffer(audioop.ulaw2lin(bytes(b), 2), np.int16)


def alaw_encode(x):
    return np.frombuffer(audioop.lin2alaw(x.astype(np.int16).tobytes(), 2), np.uint8)


def alaw_decode(b):
    return np.frombuffer(audioop.alaw2lin(bytes(b), 2), np.int16)


def rtp(pt, seq, ts, ssrc, payload, marker=False):
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def dtmf_packets(digit_events, start_seq, start_ts, ssrc, pt=101, gap_ms=200, tone_ms=100):
    """RFC 4733 events: for each event, packets every 20 ms with growing
    durations, then three end packets (section 2.5.1.4)."""
    out, seq, ts = [], start_seq, start_ts
    for ev in digit_events:
        steps = tone_ms // 20
        for i in range(1, steps + 1):
            end = i == steps
            for _ in range(3 if end else 1):
                out.append(rtp(pt, seq, ts, ssrc, struct.pack("!BBH", ev, (0x80 if end else 0) | 10, i * 160), marker=(i == 1)))
                seq += 1
        ts += (tone_ms + gap_ms) * 8
    return out, seq, ts


def write_pcap(path, packets, interval_ms=20, src=("10.0.0.1", 4000), dst=("10.0.0.2", 5000)):
    """A pcap of UDP datagrams, one every `interval_ms` (SIPp plays them with
    their recorded timing; only the RTP matters)."""
    def ip(a):
        return bytes(int(p) for p in a.split("."))

    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        t = 0.0
        for p in packets:
            udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(p), 0) + p
            iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, ip(src[0]), ip(dst[0]))
            frame = b"\x00" * 12 + b"\x08\x00" + iph + udp
            f.write(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(frame), len(frame)))
            f.write(frame)
            t += interval_ms / 1000.0


def speech_pcap(path, seconds, codec="PCMU", digits=()):
    """Speech as 20 ms G.711 packets, then RFC 4733 `digits` (event codes)."""
    x = read_speech(seconds)
    enc, pt = (ulaw_encode, 0) if codec == "PCMU" else (alaw_encode, 8)
    ssrc, packets = 0x1234ABCD, []
    n = len(x) // 160
    for i in range(n):
        packets.append(rtp(pt, i, i * 160, ssrc, enc(x[i * 160:(i + 1) * 160]).tobytes(), marker=(i == 0)))
    ev, _, _ = dtmf_packets(digits, n, n * 160, ssrc)
    write_pcap(path, packets + ev)
    return x


def best_correlation(a, b, max_lag):
    """Highest normalised cross-correlation of b against a over lags 0..max_lag."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    best = 0.0
    n = min(len(a), len(b) - max_lag)
    for lag in range(0, max_lag, 8):
        x, y = a[:n], b[lag:lag + n]
        d = np.sqrt((x * x).sum() * (y * y).sum())
        if d > 0:
            best = max(best, float((x * y).sum() / d))
    return best


def windowed_correlation(a, b, max_lag, window=4000, slack=400):
    """Median over `window`-sample pieces of a of their best correlation in
    b: the global lag is found first, then each piece may move by `slack`
    samples, because NetEQ's time stretching (accelerate, preemptive
    expand) legitimately shifts the delay during a call."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    n = len(a)
    best_lag, best = 0, -1.0
    for lag in range(0, max_lag, 8):
        y = b[lag:lag + n]
        if len(y) < n:
            break
        d = np.sqrt((a * a).sum() * (y * y).sum())
        if d > 0 and (a * y).sum() / d > best:
            best, best_lag = (a * y).sum() / d, lag
    scores = []
    for start in range(0, n - window + 1, window):
        x = a[start:start + window]
        piece = 0.0
        for shift in range(-slack, slack + 1, 4):
            lo = best_lag + start + shift
            y = b[lo:lo + window]
            if lo < 0 or len(y) < window:
                continue
            d = np.sqrt((x * x).sum() * (y * y).sum())
            if d > 0:
                piece = max(piece, float((x * y).sum() / d))
        scores.append(piece)
    return float(np.median(scores)) if scores else 0.0
