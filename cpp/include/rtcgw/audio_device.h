// The gateway's audio device: a clock, not a sound card.
//
// Design notes
// ------------
// Chosen design: ONE PeerConnectionFactory, ONE AudioDeviceModule, ONE clock
// thread for every call, with per-call sources and sinks (call_audio.h).
// The rejected alternative, a factory plus ADM thread per call (the seed's
// rtc_gw), costs at least 5 OS threads (network, worker, signaling, ADM,
// task queues) and a full voice engine per call. Even within one factory,
// libwebrtc's stock task queues add ~3 threads per call (measured: 11 -> 158
// threads from 1 to 50 calls, see BENCHMARKS.md); with the pooled task queues
// and this clock the gateway stays at 9 threads from 1 to 100 calls.
//
// AudioClock runs one thread that ticks every 10 ms against absolute
// deadlines (start + n * 10 ms, std::this_thread::sleep_until), so it does not
// drift against wall time; a tick that is more than 100 ms late resyncs the
// schedule and is counted. Each tick:
//   1. every registered CallAudio sends one frame to its own source;
//   2. the ADM asks libwebrtc's AudioTransport for playout, which makes the
//      PullMixer call GetAudioFrameWithInfo on every receive stream (NetEQ
//      decode, PLC, accelerate...) and so feeds every call's sink;
//   3. the tick callback tells Rust that frames are ready.
// ClockAdm never calls RecordedDataIsAvailable: captured audio goes per call
// through CallAudioSource instead, so calls cannot hear each other.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "api/audio/audio_frame.h"
#include "api/audio/audio_mixer.h"
#include "modules/audio_device/include/audio_device_default.h"
#include "rtcgw/call_audio.h"

namespace rtcgw {

// Mixer that pulls every source at 48 kHz and mixes nothing: each stream's
// audio already reached its call's sink during the pull.
class PullMixer : public webrtc::AudioMixer {
 public:
  bool AddSource(Source* source) override;
  void RemoveSource(Source* source) override;
  void Mix(size_t number_of_channels,
           webrtc::AudioFrame* audio_frame_for_mixing) override;

 private:
  std::mutex mu_;
  std::vector<Source*> sources_;
  webrtc::AudioFrame scratch_;
};

class ClockAdm
    : public webrtc::webrtc_impl::AudioDeviceModuleDefault<
          webrtc::AudioDeviceModule> {
 public:
  int32_t RegisterAudioCallback(webrtc::AudioTransport* transport) override;
  int32_t Init() override { return 0; }
  bool Initialized() const override { return true; }
  int32_t InitPlayout() override { return 0; }
  bool PlayoutIsInitialized() const override { return true; }
  int32_t StartPlayout() override;
  int32_t StopPlayout() override;
  bool Playing() const override { return playing_; }
  int32_t InitRecording() override { return 0; }
  bool RecordingIsInitialized() const override { return true; }
  int32_t StartRecording() override;
  int32_t StopRecording() override;
  bool Recording() const override { return recording_; }

  // Clock thread: one 10 ms playout pull.
  void PullPlayout();

 private:
  std::mutex mu_;
  webrtc::AudioTransport* transport_ = nullptr;
  std::atomic<bool> playing_{false}, recording_{false};
  std::vector<int16_t> playout_buf_ = std::vector<int16_t>(480 * 2);
};

class AudioClock {
 public:
  AudioClock(rtc::scoped_refptr<ClockAdm> adm, std::function<void()> on_tick);
  ~AudioClock();

  void Add(std::shared_ptr<CallAudio> call);
  void Remove(const CallAudio* call);

  uint64_t ticks() const { return ticks_; }
  uint64_t late_ticks() const { return late_ticks_; }

 private:
  void Run();

  rtc::scoped_refptr<ClockAdm> adm_;
  std::function<void()> on_tick_;
  std::mutex mu_;
  std::vector<std::shared_ptr<CallAudio>> calls_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> ticks_{0}, late_ticks_{0};
  std::thread thread_;
};

}  // namespace rtcgw
