"""Call statistics with real peers: a bridged call (aiortc -> rtcgw -> SIPp
echoing RTP) exports JSON lines that validate against docs/stats.schema.json,
its counters grow between polls and an end-of-call record follows the BYE;
with seeded 5% loss on the WebRTC leg (impair.py between aiortc and rtcgw)
loss and concealment move and the MOS estimate drops, in the JSON and in
/metrics, which a real Prometheus text parser reads."""

import asyncio
import json
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request

import jsonschema
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, free_port
from impair import Impairment, ImpairRelay, rewrite_candidates
from test_bridge import bridged_call, sipp_echo_uas

SCHEMA = json.loads((ROOT / "docs/stats.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def host_port(sdp):
    """The port of the SDP's UDP host candidate on loopback."""
    return int(re.search(r"a=candidate:\S+ \d+ udp \d+ 127\.0\.0\.1 (\d+) typ host", sdp, re.I).group(1))


def metrics(gw):
    """/metrics through prometheus_client's parser: {(name, labels): value}."""
    text = urllib.request.urlopen(gw.url + "/metrics", timeout=5).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def bridged(gateway_factory, tmp_path, name, loss=None, mid_call=None):
    """One 6 s bridged call with stats every 500 ms exported to a file.
    Returns (gateway, export path, records, relay counters)."""
    export = tmp_path / f"{name}.jsonl"
    callee = free_port()
    gw = gateway_factory(f'[route]\nmode = "bridge"\ntarget = "sip:{{user}}@127.0.0.1:{callee}"\n'
                         f'[stats]\ninterval_ms = 500\nexport = "{export}"\n')
    uas = sipp_echo_uas(callee)
    relay, hooks = None, {}
    if loss is not None:
        # aiortc (A) <-> relay <-> rtcgw's WebRTC candidate (B); only RTP/RTCP
        # from aiortc to rtcgw is dropped, STUN and DTLS pass.
        relay = ImpairRelay(a_to_b=Impairment(loss=loss), seed=6, max_seconds=60)

        def rewrite_offer(sdp):
            relay.start(a=("127.0.0.1", host_port(sdp)))
            return rewrite_candidates(sdp, relay.b_port)

        def rewrite_answer(sdp):
            relay.set_peers(b=("127.0.0.1", host_port(sdp)))
            return rewrite_candidates(sdp, relay.a_port)

        hooks = dict(rewrite_offer=rewrite_offer, rewrite_answer=rewrite_answer)
    timer = threading.Timer(3.0, mid_call, args=(gw, export)) if mid_call else None
    try:
        time.sleep(0.5)
        if timer:
            timer.start()
        _, bye_status, _, _ = asyncio.run(bridged_call(gw, 6.0, **hooks))
        uas.communicate(timeout=30)
    finally:
        uas.kill()
        if relay:
            relay.close()
    assert bye_status == 200
    deadline = time.time() + 5
    while time.time() < deadline and '"record":"callEnd"' not in export.read_text():
        time.sleep(0.1)
    files = sorted(tmp_path.glob(f"{name}.jsonl*"), key=lambda p: p.name != f"{name}.jsonl.old")
    records = [json.loads(l) for p in files for l in p.read_text().splitlines()]
    return gw, export, records, relay.counters["a_to_b"] if relay else None


def rotate_by_sighup(gw, export):
    """What logrotate does: rename the file, SIGHUP the writer."""
    os.rename(export, str(export) + ".old")
    gw.proc.send_signal(signal.SIGHUP)


def leg(rec, kind):
    return next((l for l in rec["legs"] if l["leg"] == kind), None)


def test_bridged_call_exports_valid_growing_stats_and_an_end_record(gateway_factory, tmp_path):
    gw, export, records, _ = bridged(gateway_factory, tmp_path, "clean", mid_call=rotate_by_sighup)
    assert gw.proc.poll() is None, "SIGHUP reopens the export; it does not stop rtcgw"
    assert export.exists() and os.path.exists(str(export) + ".old"), "the export was reopened"
    for r in records:
        VALIDATOR.validate(r)
    stats = [r for r in records if r["record"] == "stats" and r["state"] != "ended"]
    # Polls once audio flows both ways through the bridge.
    both = [r for r in stats if leg(r, "webrtc") and leg(r, "legacy")
            and leg(r, "webrtc")["inbound"]["packetsReceived"] > 0
            and leg(r, "legacy")["inbound"]["packetsReceived"] > 0]
    assert len(both) >= 8, f"about 12 polls in 6 s: {len(stats)} stats, {len(both)} with audio on both legs"
    # Counters grow from poll to poll, on both legs and both ways.
    for prev, cur in zip(both, both[1:]):
        for kind, direction, field in [("webrtc", "inbound", "packetsReceived"),
                                       ("webrtc", "outbound", "packetsSent"),
                                       ("legacy", "inbound", "packetsReceived"),
                                       ("legacy", "outbound", "packetsSent"),
                                       ("legacy", "inbound", "totalSamplesReceived")]:
            a, b = leg(prev, kind)[direction][field], leg(cur, kind)[direction][field]
            assert b > a, f"{kind} {direction} {field}: {a} -> {b}"
    last = both[-1]
    assert leg(last, "webrtc")["codec"] == "opus/48000"
    assert leg(last, "legacy")["codec"] == "PCMU/8000"
    neteq = leg(last, "legacy")["inbound"]["neteq"]
    assert neteq["decoding"]["normal"] > 200, neteq  # the echo played out through NetEq
    q = leg(last, "webrtc")["inbound"]["quality"]
    assert q["mos"] > 4.2 and q["lossPct"] == 0, q

    end = records[-1]
    assert end["record"] == "callEnd", end
    assert (end["disposition"], end["outcome"], end["target"]) == ("BYE", "completed", "bridge")
    assert 5.0 < end["durationS"] < 12.0, end
    kinds = {l["leg"]: l for l in end["legs"]}
    assert set(kinds) == {"webrtc", "legacy"}
    w = kinds["webrtc"]["inbound"]
    assert w["intervals"] >= 8 and w["mos"]["min"] <= w["mos"]["avg"] <= w["mos"]["max"], w

    m = metrics(gw)
    assert m[("rtcgw_calls_total", (("outcome", "completed"),))] == 1
    assert m[("rtcgw_packets_received_total", (("leg", "legacy"),))] > 200
    assert m[("rtcgw_mos_count", (("direction", "inbound"), ("leg", "webrtc")))] >= 8
    assert m[("rtcgw_call_mos_count", (("direction", "inbound"), ("leg", "webrtc")))] == 1


def test_five_percent_loss_on_the_webrtc_leg_moves_loss_concealment_and_mos(gateway_factory, tmp_path):
    clean_gw, _, clean, _ = bridged(gateway_factory, tmp_path, "clean")
    lossy_gw, _, lossy, relay = bridged(gateway_factory, tmp_path, "lossy", loss=0.05)
    assert relay["lost_random"] >= 10 and relay["passthrough"] > 0, relay  # STUN/DTLS went through
    for r in lossy:
        VALIDATOR.validate(r)

    def final(records):
        both = [r for r in records if r["record"] == "stats" and leg(r, "webrtc")]
        return leg(both[-1], "webrtc")["inbound"]

    def end_mos(records):
        end = records[-1]
        assert end["record"] == "callEnd"
        return next(l for l in end["legs"] if l["leg"] == "webrtc")["inbound"]["mos"]["avg"]

    c, l = final(clean), final(lossy)
    print(f"\nclean: lost {c['packetsLost']} concealed {c['concealedSamples']} MOS {end_mos(clean):.3f}; "
          f"5% loss: lost {l['packetsLost']} of {l['packetsReceived'] + l['packetsLost']}, "
          f"concealed {l['concealedSamples']} MOS {end_mos(lossy):.3f}; relay {relay}")
    assert c["packetsLost"] == 0 and l["packetsLost"] >= 5, (c, l)
    assert l["concealedSamples"] > c["concealedSamples"] + 4800, (c, l)  # > 100 ms more
    assert end_mos(lossy) < end_mos(clean) - 0.2, (end_mos(clean), end_mos(lossy))
    # NetEq's own figures on the WebRTC leg (the seed's googDecodingPLC and
    # expand rate): concealment is counted as PLC decoding, expansion shows.
    nc, nl = c["neteq"], l["neteq"]
    assert nl["decoding"]["plc"] + nl["decoding"]["plcCng"] > nc["decoding"]["plc"] + nc["decoding"]["plcCng"], (nc, nl)
    assert nl["decoding"]["normal"] > 0 and nl["preferredBufferSizeMs"] > 0, nl
    assert max(leg(r, "webrtc")["inbound"]["neteq"]["expandRate"]
               for r in lossy if r["record"] == "stats" and leg(r, "webrtc")) > 0, "no expansion seen"

    mc, ml = metrics(clean_gw), metrics(lossy_gw)
    webrtc = (("leg", "webrtc"),)
    assert mc[("rtcgw_packets_lost_total", webrtc)] == 0
    assert ml[("rtcgw_packets_lost_total", webrtc)] >= 5
    assert ml[("rtcgw_concealed_samples_total", webrtc)] > mc[("rtcgw_concealed_samples_total", webrtc)]
    key = (("direction", "inbound"), ("leg", "webrtc"))

    def mean(m, name):
        return m[(name + "_sum", key)] / m[(name + "_count", key)]

    assert mean(ml, "rtcgw_call_mos") < mean(mc, "rtcgw_call_mos") - 0.2
    assert mean(ml, "rtcgw_mos") < mean(mc, "rtcgw_mos")


def test_api_errors_are_json_4xx(gateway_factory):
    gw = gateway_factory()

    def get(path):
        try:
            r = urllib.request.urlopen(gw.url + path, timeout=5)
            return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    for path in ("/v1/calls/nope", "/v1/calls/nope/stats", "/v1/calls/nope/stats?raw=true"):
        status, body = get(path)
        assert status == 404, path
        assert json.loads(body)["error"].startswith("no such call"), body
    status, body = get("/v1/calls/nope/stats?raw=maybe")
    assert status == 400 and "raw=maybe" in json.loads(body)["error"]
    status, body = get("/v1/calls/nope/stats?verbose=1")
    assert status == 400 and "verbose" in json.loads(body)["error"]
    # With no call yet, /metrics still parses and counts nothing.
    m = metrics(gw)
    assert m[("rtcgw_calls_total", (("outcome", "refused"),))] == 0
