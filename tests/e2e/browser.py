"""Headless Chromium (Debian's `chromium`) as a WebRTC peer, driven over the
DevTools protocol: the browser's own RTCPeerConnection, RTCDTMFSender and
WebAudio, on loopback only."""

import json
import subprocess
import time
import urllib.request

import websocket

FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    # ICE on loopback, with real addresses rather than mDNS names.
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
]


def fake_microphone(speech_wav, out):
    """A speech WAV as 48 kHz 16-bit mono, the way Chromium's fake capture
    device reads a file (it loops it); `out`."""
    import wave

    import numpy as np

    with wave.open(str(speech_wav)) as w:
        rate, x = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), np.int16)
    t = np.arange(len(x) * 48000 // rate) * rate / 48000
    y = np.interp(t, np.arange(len(x)), x.astype(float)).astype(np.int16)
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(y.tobytes())
    return out


def fake_microphone_flags(wav):
    """Chromium flags: getUserMedia granted, the microphone playing `wav`."""
    return ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}"]


class Chromium:
    def __init__(self, profile_dir, extra_flags=()):
        profile_dir.mkdir(parents=True, exist_ok=True)
        self.log = (profile_dir / "chromium.log").open("w")
        # A profile reused after a killed browser still names the old port.
        (profile_dir / "DevToolsActivePort").unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            ["chromium", *FLAGS, *extra_flags, f"--user-data-dir={profile_dir}", "--remote-debugging-port=0",
             "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT)
        port_file = profile_dir / "DevToolsActivePort"
        deadline = time.time() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError("chromium did not start")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        while True:  # the port file can come before the DevTools server listens
            try:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
                page = next(t for t in targets if t["type"] == "page")
                break
            except (OSError, StopIteration):
                if self.proc.poll() is not None or time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.next_id = 0

    def eval(self, expression, timeout=30):
        """Evaluates JavaScript in the page (awaiting a promise); its value."""
        self.next_id += 1
        self.ws.settimeout(timeout)
        self.ws.send(json.dumps({"id": self.next_id, "method": "Runtime.evaluate", "params": {
            "expression": expression, "awaitPromise": True, "returnByValue": True}}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") != self.next_id:
                continue
            result = msg.get("result", {})
            if "exceptionDetails" in result:
                raise AssertionError(f"JavaScript failed: {result['exceptionDetails']}")
            return result.get("result", {}).get("value")

    def cdp(self, method, params=None, timeout=30):
        """One DevTools-protocol command on the page; its result."""
        self.next_id += 1
        self.ws.settimeout(timeout)
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params or {}}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def wait_for(self, js, timeout=20, interval=0.2):
        """Polls a JavaScript expression until it is truthy; its value."""
        deadline = time.time() + timeout
        while True:
            try:
                value = self.eval(js, timeout=max(1.0, deadline - time.time()))
            except AssertionError:  # e.g. the page is still loading
                value = None
            if value:
                return value
            if time.time() > deadline:
                raise AssertionError(f"timed out waiting for {js}")
            time.sleep(interval)

    def open(self, url, ready_js="document.readyState === 'complete'", timeout=20):
        """Navigates the page to `url`; returns once `ready_js` holds."""
        self.cdp("Page.navigate", {"url": url}, timeout=timeout)
        return self.wait_for(ready_js, timeout=timeout)

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.log.close()


# The end of an offering script: create and apply the offer on `pc`, wait for
# every candidate (non-trickle), resolve to the complete offer.
OFFER_AND_GATHER_JS = """
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== 'complete') {
    await new Promise(r => pc.addEventListener('icegatheringstatechange',
      () => pc.iceGatheringState === 'complete' && r()));
  }
  return pc.localDescription.sdp;
})()"""

# The start of a caller: a 1 kHz WebAudio tone as its track, on `window.pc`
# made with `config`, its sender as `window.sender`.
def tone_caller_js(config=""):
    return f"""(async () => {{
  const ctx = new AudioContext();
  const osc = ctx.createOscillator();
  osc.frequency.value = 1000;
  const dst = ctx.createMediaStreamDestination();
  osc.connect(dst);
  osc.start();
  const pc = new RTCPeerConnection({config});
  window.pc = pc;
  window.sender = pc.addTrack(dst.stream.getAudioTracks()[0], dst.stream);"""


# A caller with a 1 kHz WebAudio tone; resolves to the complete offer.
OFFER_JS = tone_caller_js() + OFFER_AND_GATHER_JS


def answer_js(sdp):
    return f"""(async () => {{
  await pc.setRemoteDescription({{type: 'answer', sdp: {json.dumps(sdp)}}});
  for (let i = 0; i < 100 && pc.connectionState !== 'connected'; i++)
    await new Promise(r => setTimeout(r, 100));
  return pc.connectionState;
}})()"""


def direction_offer_js(direction):
    """A re-offer with the (first) transceiver's direction set: hold
    ('sendonly') or resume ('sendrecv'); resolves to the offer."""
    return f"""(async () => {{
  pc.getTransceivers()[0].direction = '{direction}';
  await pc.setLocalDescription(await pc.createOffer());
  return pc.localDescription.sdp; }})()"""


def dtmf_js(tones, duration_ms=100, gap_ms=70):
    """insertDTMF, resolved when the last tone has been played out."""
    return f"""(async () => {{
  const dtmf = sender.dtmf;
  if (!dtmf || !dtmf.canInsertDTMF) return 'no DTMF';
  const done = new Promise(r => dtmf.addEventListener('tonechange', e => e.tone === '' && r()));
  dtmf.insertDTMF({json.dumps(tones)}, {duration_ms}, {gap_ms});
  await done;
  return 'sent';
}})()"""


# OFFER_JS with the browser's encoded-frame streams (insertable streams) on:
# every received RTP payload that is not Opus's goes to `window.frames_in`
# as {pt, ts, bytes, at} before the browser's NetEq, so that the RFC 4733
# events rtcgw sends are seen as they arrive; what the browser sends passes
# unchanged.
OFFER_SEEING_EVENTS_JS = tone_caller_js("{encodedInsertableStreams: true}") + """
  window.frames_in = [];
  const out = sender.createEncodedStreams();
  out.readable.pipeTo(out.writable);
  pc.ontrack = e => {
    const s = e.receiver.createEncodedStreams();
    s.readable.pipeThrough(new TransformStream({transform(frame, ctl) {
      const pt = frame.getMetadata().payloadType;
      if (pt !== 111) frames_in.push({pt, ts: frame.getMetadata().rtpTimestamp ?? frame.timestamp,
        bytes: Array.from(new Uint8Array(frame.data)), at: performance.now()});
      ctl.enqueue(frame);
    }})).pipeTo(s.writable);
  };""" + OFFER_AND_GATHER_JS
