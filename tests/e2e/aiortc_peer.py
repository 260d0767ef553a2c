"""A real, independent WebRTC peer (aiortc) for rtcgw's end-to-end tests.

It offers audio to rtcgw's WHIP-shaped call API, sends a sine tone, records
what it receives, and hangs up with DELETE. ICE is restricted to loopback so
the test never leaves the machine.
"""

import asyncio
import fractions
import json
import math
import urllib.request
import wave

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError
import av


def loopback_only():
    """Make aioice gather host candidates on 127.0.0.1 only."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


class ToneTrack(AudioStreamTrack):
    """A sine tone at 48 kHz mono, 20 ms frames, paced in real time."""

    def __init__(self, freq):
        super().__init__()
        self.freq = freq
        self.n = 0
        self.start = None

    async def recv(self):
        samples = 960
        loop = asyncio.get_running_loop()
        if self.start is None:
            self.start = loop.time()
        # Deadline pacing: frame n is due at start + n * 20 ms.
        delay = self.start + self.n / 48000.0 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        pts = self.n
        t = (np.arange(samples) + self.n) / 48000.0
        self.n += samples
        pcm = (0.3 * 32767 * np.sin(2 * math.pi * self.freq * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, 48000)
        return frame


def http(method, url, body=None, ctype=None):
    req = urllib.request.Request(url, data=body, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


def mono(frame):
    """A decoded audio frame as mono int16 (channels averaged)."""
    arr = frame.to_ndarray()
    ch = len(frame.layout.channels)
    return (arr.reshape(-1, ch).mean(axis=1) if ch > 1 else arr.reshape(-1)).astype(np.int16)


async def record(track, samples):
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        samples.append((frame.sample_rate, mono(frame)))


async def call(base_url, tone_hz, seconds, out_wav):
    """One call; returns a dict describing what happened."""
    pc = RTCPeerConnection()
    pc.addTrack(ToneTrack(tone_hz))
    received = []
    tasks = []

    @pc.on("track")
    def on_track(track):
        tasks.append(asyncio.ensure_future(record(track, received)))

    await pc.setLocalDescription(await pc.createOffer())
    loop = asyncio.get_running_loop()
    status, headers, answer = await loop.run_in_executor(
        None, http, "POST", base_url + "/v1/calls", pc.localDescription.sdp.encode(), "application/sdp"
    )
    result = {"status": status, "location": headers.get("location"), "answer": answer}
    if status != 201:
        await pc.close()
        return result
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await asyncio.sleep(seconds)
    location = headers["location"]
    result["delete_status"] = (await loop.run_in_executor(None, http, "DELETE", base_url + location))[0]
    await pc.close()
    for t in tasks:
        t.cancel()
    rate = received[0][0] if received else 48000
    pcm = np.concatenate([s for _, s in received]) if received else np.zeros(0, np.int16)
    with wave.open(out_wav, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    result["received_samples"] = int(pcm.size)
    return result


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--tone", type=float, default=1000.0)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--out", default="peer.wav")
    a = p.parse_args()
    loopback_only()
    print(json.dumps(asyncio.run(call(a.url, a.tone, a.seconds, a.out)), indent=1))
