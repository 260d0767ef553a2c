"""Fixtures for real-peer tests: the rtcgw binary started on loopback with a
config written for the test, and audio analysis helpers."""

import os
import subprocess
import time
import urllib.request
import wave
from pathlib import Path

import numpy as np
import pytest

import aiortc_peer
from ports import free_port, media_range

ROOT = Path(__file__).resolve().parents[2]


class Gateway:
    def __init__(self, proc, url, record_dir, log_path):
        self.proc = proc
        self.url = url
        self.record_dir = record_dir
        self.log_path = log_path

    def metric(self, name, **labels):
        """A counter's value from /metrics (0 when absent)."""
        req = urllib.request.Request(self.url + "/metrics")
        if getattr(self, "token", None):  # http.tokens set by the test
            req.add_header("Authorization", f"Bearer {self.token}")
        text = urllib.request.urlopen(req, timeout=5).read().decode()
        want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0

    def log(self):
        return self.log_path.read_text(errors="replace")

    def threads(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        raise AssertionError("no Threads line")

    def recording(self, location):
        return self.record_dir / (location.rsplit("/", 1)[1] + ".wav")


@pytest.fixture
def gateway_factory(tmp_path):
    started = []

    def start(extra_toml="", log_filter="info", sip_extra="", http_extra="", media_extra="", legacy_extra="",
              preexec=None):
        port = free_port()
        sip_port = free_port()
        legacy_min, legacy_max = media_range(slot=os.getpid() + len(started))
        record_dir = tmp_path / "recordings"
        cfg = tmp_path / "rtcgw.toml"
        cfg.write_text(
            f'[log]\nfilter = "{log_filter}"\n'
            f'[http]\nlisten = "127.0.0.1:{port}"\n{http_extra}\n'
            f'[sip]\nlisten = "127.0.0.1:{sip_port}"\n{sip_extra}\n'
            # A test's OPTIONS look like a dispatcher's probes: do not wait
            # long for one at SIGTERM.
            f'[media]\ndrain_linger_s = 2\n{media_extra}\n'
            # The suite's gateways share two cores with their peers (SIPp,
            # Chromium, aiortc): admission by headroom would refuse calls
            # whenever a peer hogs the CPU. Its own test turns it on.
            + ("" if "admit_max" in media_extra else "admit_max_late_pct = 0\nadmit_max_cpu_pct = 0\n")
            # Each gateway its own RTP range, so that gateways never compete.
            + f'[legacy]\nport_min = {legacy_min}\nport_max = {legacy_max}\n{legacy_extra}\n'
            f'[demo]\nrecord_dir = "{record_dir}"\nrecord_min_free_mb = 16\n' + extra_toml
        )
        log_path = tmp_path / "rtcgw.log"
        binary = os.environ.get("RTCGW_BIN", str(ROOT / "target/release/rtcgw"))
        env = dict(os.environ, NO_COLOR="1")
        env.pop("RUST_LOG", None)
        proc = subprocess.Popen(
            [binary, "--config", str(cfg)],
            stdout=log_path.open("w"),
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=preexec,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError("rtcgw did not start:\n" + log_path.read_text())
                time.sleep(0.1)
        gw = Gateway(proc, url, record_dir, log_path)
        gw.sip_port = sip_port
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.proc.terminate()
        try:
            gw.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            gw.proc.kill()
            raise AssertionError("rtcgw did not stop on SIGTERM")


@pytest.fixture(autouse=True, scope="session")
def _loopback_ice():
    aiortc_peer.loopback_only()


def dirty_kb():
    """The kernel's dirty page cache not yet written back, in kB."""
    with open("/proc/meminfo") as f:
        return next((int(line.split()[1]) for line in f if line.startswith("Dirty:")), 0)


@pytest.fixture(autouse=True, scope="session")
def _written_back():
    """The suite starts right after a release build and fuzzing: their
    gigabytes of dirty pages being written back stall the writes of the
    tests' own recordings (and with them the media tasks that make them).
    Wait for the writeback before the first test."""
    before = dirty_kb()
    os.sync()
    print(f"dirty page cache at start: {before} kB, written back")


def read_wav(path):
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float64)
    return rate, x


def band_power(rate, x, freq, width=8.0):
    """Power of x in [freq - width, freq + width] Hz."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1.0 / rate)
    return float(spec[(f >= freq - width) & (f <= freq + width)].sum())


def assert_no_crosstalk(rate, x, own, others, bound_db):
    """Another caller's tone leaking into x would stand as a narrow peak at
    its frequency. Codec noise and NetEQ time stretching instead spread the
    own tone into a broad skirt: with aiortc's Opus under 20-call load, up
    to -32 dB at +-33 Hz around a 1267 Hz tone in 16 Hz of band, no
    leak involved. So a leak is the power within +-2 Hz of another tone,
    relative to the own tone; it fails when above bound_db *and* 6 dB above
    the skirt measured beside it (+-12..28 Hz). Checked by mixing a tone
    into a real recording: -35 dB is caught even under the worst skirt."""
    ref = band_power(rate, x, own, 2.0)
    for other in others:
        if other == own:
            continue
        peak = band_power(rate, x, other, 2.0) / ref
        floor = np.mean([band_power(rate, x, other + d, 2.0) for d in (-28, -20, -12, 12, 20, 28)]) / ref
        peak_db, floor_db = 10 * np.log10(peak), 10 * np.log10(floor)
        assert peak_db < max(bound_db, floor_db + 6.0), (
            f"{other:g} Hz in the {own:g} Hz call at {peak_db:.1f} dB (skirt {floor_db:.1f} dB)")


def dominant_frequency(rate, x):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    spec[0] = 0
    return float(np.fft.rfftfreq(len(x), 1.0 / rate)[int(np.argmax(spec))])


def steady(rate, x, skip_s=0.5):
    """Drops the start (connection set-up, NetEQ warm-up)."""
    return x[int(rate * skip_s):]


@pytest.fixture
def kamailio_factory():
    """Debian's Kamailio with kamailio/kamailio.cfg: start(its port, rtcgw's
    SIP port, where requests from rtcgw go)."""
    import kamailio_proc

    started = []

    def start(kam_port, rtcgw_port, dest_port):
        p = kamailio_proc.start_example(subprocess.PIPE, kam_port, rtcgw_port, dest_port, free_port())
        started.append(p)
        return p

    yield start
    for p in started:
        print("---- kamailio ----\n" + kamailio_proc.stop(p)[-6000:])
