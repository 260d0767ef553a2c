"""Scale-out behind Kamailio's dispatcher (kamailio/kamailio-dispatcher.cfg):
two rtcgw instances, OPTIONS keep-alives every second, SIPp calling at
10 calls/s through the dispatcher. SIGTERM one instance: new calls move to
the other while its calls finish, none fails. kill -9 one: only the calls
it carried are lost; the probe marks it down and new calls go on."""

import re
import signal
import subprocess
import threading
import time

import kamailio_proc
from conftest import ROOT, free_port

SIPP_DIR = ROOT / "tests" / "sipp"
CONFIG = ROOT / "kamailio" / "kamailio-dispatcher.cfg"



def start_dispatcher(tmp_path, gws):
    kam_port = free_port()
    listing = tmp_path / "dispatcher.list"
    listing.write_text("".join(f"1 sip:127.0.0.1:{gw.sip_port}\n" for gw in gws))
    log = (tmp_path / "kamailio.log").open("w")
    p = subprocess.Popen(
        ["kamailio", "-f", str(CONFIG), "-DD", "-E", "-n", "1", "-A", f"KAM_PORT={kam_port}",
         "-A", f'DS_LIST="{listing}"', "-A", "DS_PING_S=1", "-w", "/tmp", "-P", f"/tmp/kamailio-ds-{kam_port}.pid"],
        stdout=log, stderr=subprocess.STDOUT)
    # Ready once both instances answered a probe (their OPTIONS counters).
    deadline = time.time() + 15
    while not all(gw.metric("rtcgw_sip_requests_total", method="OPTIONS", direction="in") > 0 for gw in gws):
        if p.poll() is not None or time.time() > deadline:
            kamailio_proc.stop(p)
            raise AssertionError("dispatcher did not start:\n" + (tmp_path / "kamailio.log").read_text()[-3000:])
        time.sleep(0.2)
    return p, kam_port


def sipp_calls(kam_port, calls, rate, duration_ms, stats):
    errors = stats.with_suffix(".errors")
    return subprocess.Popen(
        ["sipp", f"127.0.0.1:{kam_port}", "-sf", str(SIPP_DIR / "uac_load.xml"), "-m", str(calls), "-r", str(rate),
         "-d", str(duration_ms), "-i", "127.0.0.1", "-p", str(free_port()), "-timeout", "90s", "-nostdin",
         "-recv_timeout", "10000", "-trace_stat", "-stf", str(stats), "-fd", "1",
         "-trace_err", "-error_file", str(errors)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def final_counts(stats):
    rows = [r.split(";") for r in stats.read_text().splitlines() if r]
    last = dict(zip(rows[0], rows[-1]))
    return int(last["SuccessfulCall(C)"]), int(last["FailedCall(C)"])


def invites(gw):
    return gw.metric("rtcgw_sip_requests_total", method="INVITE", direction="in")


def under_load(gateway_factory, tmp_path):
    """Two instances behind the dispatcher, SIPp calling at 10 calls/s (80
    calls of 2 s) for 3 s already: the instances, Kamailio, SIPp and its
    stats file."""
    # (conftest: drain_linger_s = 2, so that the teardown, when the
    # dispatcher has stopped probing, stays short.)
    a = gateway_factory(log_filter="info")
    b = gateway_factory(log_filter="info")
    kam, kam_port = start_dispatcher(tmp_path, [a, b])
    stats = tmp_path / "calls.csv"
    uac = sipp_calls(kam_port, calls=80, rate=10, duration_ms=2000, stats=stats)
    time.sleep(3.0)
    return a, b, kam, uac, stats


def test_sigterm_on_one_of_two_instances_loses_no_call(gateway_factory, tmp_path):
    a, b, kam, uac, stats = under_load(gateway_factory, tmp_path)
    try:
        a_before = invites(a)
        assert a_before > 0 and invites(b) > 0, "round robin over both"
        t_term = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        gone = []
        waiter = threading.Thread(target=lambda: gone.append((a.proc.wait(), time.monotonic() - t_term)))
        waiter.start()
        out, err = uac.communicate(timeout=120)
        ok, failed = final_counts(stats)
        errors = stats.with_suffix(".errors")
        assert (ok, failed) == (80, 0), (ok, failed, errors.read_text()[-3000:] if errors.exists() else err[-2000:])
        # The drained instance finished its calls and went; it said 503 to
        # the probe before it did (its log), and exited cleanly.
        waiter.join(30)
        rc, gone_after = gone[0]
        assert rc == 0
        print(f"SIGTERM: {ok} calls ok, {failed} failed; the drained instance was gone after {gone_after:.1f} s")
        assert gone_after < 10, gone_after
        log = a.log()
        assert "draining" in log
        assert "503" in (tmp_path / "kamailio.log").read_text() or "down" in (tmp_path / "kamailio.log").read_text()
        assert invites(b) + a_before >= 80
    finally:
        kamailio_proc.stop(kam)


def test_kill_9_on_one_of_two_instances_loses_only_its_calls(gateway_factory, tmp_path):
    a, b, kam, uac, stats = under_load(gateway_factory, tmp_path)
    try:
        in_progress_on_a = a.metric("rtcgw_calls_active")
        a.proc.kill()
        a.proc.wait(timeout=10)
        out, err = uac.communicate(timeout=120)
        ok, failed = final_counts(stats)
        print(f"kill -9 with {in_progress_on_a:.0f} calls on the killed instance: {ok} calls ok, {failed} failed")
        # Lost: the calls A carried (their BYEs go unanswered) and at most a
        # call or two racing the kill; every later call went to B.
        assert ok + failed == 80, (ok, failed)
        assert failed <= in_progress_on_a + 3, (failed, in_progress_on_a, out[-1500:])
        assert ok >= 80 - in_progress_on_a - 3
        log = (tmp_path / "kamailio.log").read_text()
        assert re.search(r"rtcgw instance .* down", log), log[-3000:]
    finally:
        kamailio_proc.stop(kam)
