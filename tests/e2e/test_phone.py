"""The newcomer's web phone, as a newcomer uses it: headless Chromium (fake
microphone playing recorded speech) opens the gateway's `/`, presses Call,
hears the demo announcement, and the live charts fill with numbers; then
Hang up. The test takes the screenshot the README shows
(RTCGW_UPDATE_DOCS=1 writes it to docs/web-phone.png)."""

import base64
import json
import os
import shutil
import time
import wave

import numpy as np

import browser
import rtp_tools
from conftest import ROOT

SPEECH = rtp_tools.SPEECH


def test_web_phone_calls_the_demo_and_charts_the_call(gateway_factory, tmp_path):
    # The embedded default, but for the announcement (the [demo] section
    # is the last one the fixture writes).
    gw = gateway_factory(f'play_file = "{SPEECH}"\n')
    mic = browser.fake_microphone(SPEECH, tmp_path / "mic.wav")
    c = browser.Chromium(tmp_path / "chromium", extra_flags=browser.fake_microphone_flags(mic) + ["--window-size=1000,900"])
    try:
        c.cdp("Page.enable")
        c.open(gw.url + "/", "document.readyState === 'complete' && !!document.getElementById('call')")
        assert c.eval("document.body.dataset.mode") == "demo"
        c.eval("document.getElementById('call').click(); true")
        status = c.wait_for("document.getElementById('status').textContent.startsWith('in call') "
                             "&& document.getElementById('status').textContent")
        # A few polls of the live stats (every 2 s).
        c.wait_for("window.rtcgwPhone.polls >= 5", timeout=25)
        series = c.eval("JSON.stringify(window.rtcgwPhone.series)")
        series = json.loads(series)
        for chart in ("jb", "mos", "loss", "conceal"):
            assert series.get(chart, {}).get("webrtc in"), (chart, series)
        assert all(1.0 <= v <= 4.5 for v in series["mos"]["webrtc in"]), series["mos"]
        legend = c.eval("document.getElementById('legend-mos').textContent")
        assert "webrtc in" in legend and any(ch.isdigit() for ch in legend), legend
        # The demo's speech arrives and plays: the browser's own counters.
        stats = json.loads(c.eval("""(async () => {
            const r = {};
            (await window.rtcgwPhone.pc.getStats()).forEach(s => {
              if (s.type === 'inbound-rtp' && s.kind === 'audio') r.inbound = s;
              if (s.type === 'outbound-rtp' && s.kind === 'audio') r.outbound = s;
            });
            return JSON.stringify(r); })()"""))
        assert stats["inbound"]["packetsReceived"] > 200, stats
        assert stats["inbound"]["totalAudioEnergy"] > 0.01, stats["inbound"]
        assert stats["outbound"]["packetsSent"] > 200, stats
        shot = tmp_path / "web-phone.png"
        shot.write_bytes(base64.b64decode(c.cdp("Page.captureScreenshot", {"format": "png"})["data"]))
        if os.environ.get("RTCGW_UPDATE_DOCS") == "1":
            shutil.copy(shot, ROOT / "docs" / "web-phone.png")
        calls = json.loads(c.eval("fetch('/v1/calls').then(r => r.text())"))
        assert len(calls) == 1, calls
        c.eval("document.getElementById('hangup').click(); true")
        c.wait_for("document.getElementById('status').textContent === 'hung up'")
    finally:
        c.close()
    time.sleep(0.5)
    assert gw.metric("rtcgw_calls_active") == 0
    assert status.startswith("in call")
    # The gateway recorded the browser's microphone: the speech file.
    recordings = list(gw.record_dir.glob("*.wav"))
    assert len(recordings) == 1
    with wave.open(str(recordings[0])) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(float)
    assert np.sqrt(np.mean(x ** 2)) > 100, "the microphone's speech reached the gateway"

