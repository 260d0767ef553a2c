// Per-call audio I/O: the 10 ms PCM frames that cross between Rust and
// libwebrtc for one call.
//
// Design notes
// ------------
// One PeerConnectionFactory serves every call. Its single AudioDeviceModule
// (audio_device.h) is only a clock; no audio goes through the ADM's record or
// playout buffers. Instead each call owns a CallAudio:
//   * send: Rust pushes frames into `tx_`; on every clock tick the AudioClock
//     pops one frame and hands it to `source_`, the call's own
//     AudioSourceInterface, whose sink is that call's audio send stream
//     (encoder). No other call sees it.
//   * receive: the remote audio track of the call has `sink_` attached; the
//     pull-only mixer asks every receive stream for 10 ms of audio (NetEQ
//     GetAudio) on each tick, and the stream hands the frame to its track's
//     sinks, so it lands in this call's `rx_`. Rust drains `rx_`.
// Both rings are bounded: a full ring drops the oldest frame and counts it, an
// empty tx ring sends silence and counts an underrun. Each ring has its own
// mutex, held for a copy of one frame.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "api/media_stream_interface.h"
#include "api/notifier.h"

namespace rtcgw {

// Largest frame: 10 ms at 96 kHz.
constexpr size_t kMaxFrameSamples = 960;

// One 10 ms mono frame at `sample_rate` Hz (sample_rate / 100 samples).
struct PcmFrame {
  int sample_rate = 0;
  size_t samples = 0;
  std::array<int16_t, kMaxFrameSamples> data{};
};

// Bounded queue of frames in preallocated slots: no allocation on the audio
// path. Drops the oldest frame when full.
class FrameRing {
 public:
  explicit FrameRing(size_t capacity);
  // Returns false when a frame had to be dropped to make room.
  bool Push(const int16_t* samples, size_t n, int sample_rate);
  bool Pop(PcmFrame* out);

 private:
  std::mutex mu_;
  std::vector<PcmFrame> slots_;
  size_t head_ = 0;  // oldest frame
  size_t len_ = 0;
};

// The call's outgoing audio source. Its sinks are the audio send streams
// libwebrtc attaches on the worker thread; Deliver() runs on the clock thread.
class CallAudioSource : public webrtc::Notifier<webrtc::AudioSourceInterface> {
 public:
  SourceState state() const override { return kLive; }
  bool remote() const override { return false; }
  void AddSink(webrtc::AudioTrackSinkInterface* sink) override;
  void RemoveSink(webrtc::AudioTrackSinkInterface* sink) override;
  void Deliver(const PcmFrame& frame);

 private:
  std::mutex mu_;
  std::vector<webrtc::AudioTrackSinkInterface*> sinks_;
};

class CallAudio : public webrtc::AudioTrackSinkInterface {
 public:
  CallAudio(size_t tx_capacity, size_t rx_capacity);

  // Rust side. PushTx rejects (false, counted) a frame that is not 10 ms.
  bool PushTx(const int16_t* samples, size_t n, int sample_rate);
  bool PopRx(PcmFrame* out);

  // Clock thread: one tick's worth of outgoing audio.
  void Tick();

  // Receive path: called by the remote track while the mixer pulls.
  void OnData(const void* audio_data,
              int bits_per_sample,
              int sample_rate,
              size_t number_of_channels,
              size_t number_of_frames) override;

  rtc::scoped_refptr<CallAudioSource> source() const { return source_; }

  std::atomic<uint64_t> tx_frames{0}, tx_underruns{0}, tx_overflows{0},
      tx_invalid{0};
  std::atomic<uint64_t> rx_frames{0}, rx_overflows{0};

 private:
  rtc::scoped_refptr<CallAudioSource> source_;
  FrameRing tx_, rx_;
  // Clock thread only (Tick and OnData run there).
  PcmFrame out_, silence_;
  std::array<int16_t, kMaxFrameSamples> mono_{};
  bool started_ = false;
};

}  // namespace rtcgw
