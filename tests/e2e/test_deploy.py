"""Packaging as an operator meets it: the systemd unit (systemd-analyze
verify; sd_notify readiness and stopping from the real binary), the
container image's Dockerfile (its rules checked: no container daemon on
these machines), the Grafana dashboard (every query names metrics rtcgw
has), configuration from the environment."""

import json
import os
import re
import signal
import socket
import subprocess

from conftest import ROOT, free_port

BINARY = os.environ.get("RTCGW_BIN", str(ROOT / "target/release/rtcgw"))
DEPLOY = ROOT / "deploy"


def test_systemd_unit_verifies(tmp_path):
    unit = (DEPLOY / "rtcgw.service").read_text()
    assert "Type=notify" in unit and "KillSignal=SIGTERM" in unit
    # The unit as installed, with the binary where this checkout has it.
    local = tmp_path / "rtcgw.service"
    local.write_text(unit.replace("/usr/local/bin/rtcgw", BINARY))
    r = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60)
    problems = [l for l in (r.stdout + r.stderr).splitlines()
                if "rtcgw.service" in l]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr
    # TimeoutStopSec covers the default drain.
    stop = int(re.search(r"^TimeoutStopSec=(\d+)", unit, re.M).group(1))
    assert stop > 30 + 5


def test_sd_notify_ready_then_stopping(tmp_path):
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(20)
    cfg = tmp_path / "rtcgw.toml"
    cfg.write_text(f'[http]\nlisten = "127.0.0.1:{free_port()}"\n[sip]\nlisten = "127.0.0.1:{free_port()}"\n'
                   f'[demo]\nrecord_dir = "{tmp_path}/rec"\n')
    env = dict(os.environ, NOTIFY_SOCKET=str(sock_path), NO_COLOR="1")
    log = tmp_path / "rtcgw.log"
    p = subprocess.Popen([BINARY, "--config", str(cfg)], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        try:
            ready = sock.recv(256)
        except TimeoutError:
            raise AssertionError("no READY=1:\n" + log.read_text()[-3000:]) from None
        assert ready == b"READY=1"
        p.send_signal(signal.SIGTERM)
        assert sock.recv(256) == b"STOPPING=1"
        assert p.wait(timeout=10) == 0
    finally:
        p.kill()
        sock.close()


def test_dockerfile_rules():
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [l for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    froms = [l.split()[1] for l in lines if l.startswith("FROM ")]
    assert len(froms) == 2, "multi-stage: build, then a slim runtime"
    assert all(":" in f and not f.endswith(":latest") for f in froms), froms
    assert all("bookworm" in f for f in froms), "the same Debian as libwebrtc's package"
    users = [l.split()[1] for l in lines if l.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "runs as a non-root user"
    assert any(l.startswith("HEALTHCHECK ") for l in lines) and "/healthz" in text
    assert "--locked" in text, "the build uses Cargo.lock"
    for l in lines:
        if l.startswith("COPY ") and "--from=" not in l:
            for src in l.split()[1:-1]:
                assert src == "." or (ROOT / src).exists(), src
    # Every file the build stage copies in before `COPY . .` exists, and
    # what it runs is in the repository.
    assert (ROOT / "scripts" / "fetch-libwebrtc").exists()


def test_grafana_dashboard_queries_name_real_metrics():
    dash = json.loads((DEPLOY / "grafana" / "rtcgw.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    registered = set()
    for path in list((ROOT / "src").rglob("*.rs")) + list((ROOT / "crates").rglob("*.rs")):
        registered |= set(re.findall(r'"(rtcgw_[a-z_]+)"', path.read_text()))
    counters = {"rtcgw_calls", "rtcgw_calls_refused", "rtcgw_calls_ended", "rtcgw_packets_received",
                "rtcgw_packets_lost", "rtcgw_jitter_buffer_emitted_samples", "rtcgw_received_samples",
                "rtcgw_concealed_samples", "rtcgw_concealment_events", "rtcgw_jitter_buffer_delay_seconds",
                "rtcgw_sip_requests", "rtcgw_sip_responses", "rtcgw_sip_rejected", "rtcgw_ng_requests",
                "rtcgw_ng_dropped", "rtcgw_rtp_dropped", "rtcgw_stats_export_dropped", "rtcgw_http_denied",
                "rtcgw_media_frames", "rtcgw_media_late_frames", "rtcgw_audio_clock_stalls",
                "rtcgw_dtmf_digits", "rtcgw_stats_polls"}
    for e in exprs:
        for name in re.findall(r"\b(rtcgw_[a-z_]+)", e):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            if base.endswith("_total"):
                base = base[: -len("_total")]
                assert base in counters, f"{name}: _total on a metric that is not a counter"
            assert base in registered, f"{name} in the dashboard is not a metric rtcgw has: {e}"


def test_configuration_from_the_environment(tmp_path):
    env = dict(os.environ, RTCGW_CONFIG=str(tmp_path / "absent.toml"))
    r = subprocess.run([BINARY, "--check-config"], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr  # no file mounted: the embedded default
    cfg = tmp_path / "open.toml"
    cfg.write_text('[http]\nlisten = "0.0.0.0:0"\n')
    env = dict(os.environ, RTCGW_CONFIG=str(cfg))
    r = subprocess.run([BINARY, "--check-config"], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "toll fraud" in r.stderr, r.stderr
    env["RTCGW_HTTP_TOKENS"] = "from-a-secret-0123456789"
    r = subprocess.run([BINARY, "--check-config"], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    env["RTCGW_HTTP_TOKENS"] = "short"
    r = subprocess.run([BINARY, "--check-config"], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "http.tokens" in r.stderr, r.stderr
