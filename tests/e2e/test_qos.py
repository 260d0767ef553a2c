"""Regression guard for the QoS lab (issue 7): two of its cells through a
bridged call, recorded speech both ways, PESQ-scored, with conservative
bounds well below what scripts/qos-lab measures (see BENCHMARKS.md), so
that only a real regression fails: audio that stops arriving, a NetEQ that
no longer conceals loss, or the standing frame backlog that once added
~140 ms WebRTC -> legacy."""

import asyncio

import qoslab


def test_speech_through_a_bridged_call_clean_and_with_5pc_loss_and_40ms_jitter(tmp_path):
    gw = qoslab.Rtcgw(tmp_path / "rtcgw")
    sw, sl = qoslab.utterance(qoslab.UTTERANCE_W2L), qoslab.utterance(qoslab.UTTERANCE_L2W)
    try:
        clean = asyncio.run(qoslab.run_call(gw, qoslab.cell("clean").imp, 1, sw, sl))
        bad = asyncio.run(qoslab.run_call(gw, qoslab.cell("loss 5% + jitter 40 ms").imp, 1, sw, sl))
    finally:
        gw.close()
    # What a failure needs to say: the phone-like and the ideal far end,
    # its buffer restarts, and what the relays carried.
    summary = {k: {d: {m: r[d].get(m) for m in ("mos", "mos_ideal", "resyncs", "delay_p50", "concealed")}
                   for d in ("w2l", "l2w")} | {"relays": r.get("relays")}
               for k, r in (("clean", clean), ("bad", bad))}
    # Measured by the lab: about 4.0 (W->L) and 4.2 (L->W) clean, 68 ms p50.
    assert clean["w2l"]["mos"] > 3.3 and clean["l2w"]["mos"] > 3.3, summary
    assert clean["w2l"]["delay_p50"] is not None and clean["w2l"]["delay_p50"] < 120, summary
    # The impairment was applied (about 5% of the RTP towards rtcgw dropped) ...
    lost = bad["relays"]["webrtc"]["a_to_b"]["lost_random"] / bad["relays"]["webrtc"]["a_to_b"]["packets"]
    assert 0.02 < lost < 0.09, bad["relays"]
    # ... and NetEQ concealed it: about 3.0 and 3.0-3.4 measured.
    assert bad["w2l"]["mos"] > 2.3 and bad["l2w"]["mos"] > 2.3, summary
    assert bad["w2l"]["concealed"] is not None and bad["w2l"]["concealed"] > 0.01, summary


def test_wideband_speech_through_a_bridged_call_with_a_g722_peer(tmp_path):
    """The Opus <-> G.722 legacy leg carries 16 kHz speech both ways: G.722
    offered and answered (PT 9), clocked at 8000 on the wire and 16 kHz in
    the codec. About 18 s."""
    gw = qoslab.Rtcgw(tmp_path / "rtcgw-wb", band=qoslab.WB)
    sw = qoslab.utterance(qoslab.UTTERANCE_W2L, rate=qoslab.WB.rate)
    sl = qoslab.utterance(qoslab.UTTERANCE_L2W, rate=qoslab.WB.rate)
    try:
        clean = asyncio.run(qoslab.run_call(gw, qoslab.cell("clean").imp, 1, sw, sl))
    finally:
        gw.close()
    summary = {d: {m: clean[d][m] for m in ("mos", "delay_p50")} for d in ("w2l", "l2w")}
    # Measured by the lab (scripts/qos-lab --wideband): PESQ WB 4.49 W->L and
    # 4.44-4.47 L->W, 68-72 ms W->L p50. Speech low-passed at 4 kHz still
    # scores about 4.0 in PESQ WB, so this bound does not tell narrowband
    # from wideband: it catches G.722 that is broken or missing.
    assert clean["w2l"]["mos"] > 3.8 and clean["l2w"]["mos"] > 3.8, summary
    assert clean["w2l"]["delay_p50"] is not None and clean["w2l"]["delay_p50"] < 120, summary


def test_chromium_sends_red_and_rtcgw_decodes_it_under_loss(tmp_path):
    """Opus with RED (RFC 2198) from headless Chromium, RED first in its
    codec preferences: rtcgw's answer keeps red first, so Chromium sends
    RED, and rtcgw's NetEQ takes the redundant copies apart. At 10% loss
    the call through RED must not sound worse than Opus alone beyond noise,
    and every RTP packet Chromium sent must have been RED. About 30 s."""
    from browser import Chromium

    gw = qoslab.Rtcgw(tmp_path / "rtcgw-red")
    browser = Chromium(tmp_path / "chromium")
    sw = qoslab.utterance(qoslab.UTTERANCE_W2L)
    imp = qoslab.cell("loss 10%").imp
    try:
        opus = asyncio.run(qoslab.run_browser_call(gw, browser, imp, 1, sw, red=False))
        red = asyncio.run(qoslab.run_browser_call(gw, browser, imp, 1, sw, red=True))
    finally:
        browser.close()
        gw.close()
    summary = {k: (r["sent_packets"], r["w2l"]["mos"], r["w2l"]["concealed"]) for k, r in (("opus", opus), ("red", red))}
    assert list(opus["sent_packets"]) == ["opus"] and list(red["sent_packets"]) == ["red"], summary
    # Measured by the lab (3 seeds): about 2.8 Opus alone, 3.2 with RED.
    assert red["w2l"]["mos"] > 2.5 and opus["w2l"]["mos"] > 2.2, summary
    assert red["w2l"]["mos"] > opus["w2l"]["mos"] - 0.2, summary
