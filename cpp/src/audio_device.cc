#include "rtcgw/audio_device.h"

#include <algorithm>
#include <chrono>

namespace rtcgw {

bool PullMixer::AddSource(Source* source) {
  std::lock_guard<std::mutex> lock(mu_);
  sources_.push_back(source);
  return true;
}

void PullMixer::RemoveSource(Source* source) {
  std::lock_guard<std::mutex> lock(mu_);
  sources_.erase(std::remove(sources_.begin(), sources_.end(), source),
                 sources_.end());
}

void PullMixer::Mix(size_t number_of_channels,
                    webrtc::AudioFrame* audio_frame_for_mixing) {
  constexpr int kRate = 48000;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Source* source : sources_) {
      // The frame is delivered to the call's sink inside this pull.
      source->GetAudioFrameWithInfo(kRate, &scratch_);
    }
  }
  audio_frame_for_mixing->UpdateFrame(
      0, nullptr, kRate / 100, kRate, webrtc::AudioFrame::kNormalSpeech,
      webrtc::AudioFrame::kVadUnknown, number_of_channels);
}

int32_t ClockAdm::RegisterAudioCallback(webrtc::AudioTransport* transport) {
  std::lock_guard<std::mutex> lock(mu_);
  transport_ = transport;
  return 0;
}

int32_t ClockAdm::StartPlayout() {
  playing_ = true;
  return 0;
}
int32_t ClockAdm::StopPlayout() {
  playing_ = false;
  return 0;
}
int32_t ClockAdm::StartRecording() {
  recording_ = true;
  return 0;
}
int32_t ClockAdm::StopRecording() {
  recording_ = false;
  return 0;
}

void ClockAdm::PullPlayout() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!transport_ || !playing_) return;
  size_t samples_out = 0;
  int64_t elapsed_ms = 0, ntp_ms = 0;
  transport_->NeedMorePlayData(480, 2, 1, 48000, playout_buf_.data(),
                               samples_out, &elapsed_ms, &ntp_ms);
}

AudioClock::AudioClock(rtc::scoped_refptr<ClockAdm> adm,
                       std::function<void()> on_tick)
    : adm_(std::move(adm)), on_tick_(std::move(on_tick)) {
  thread_ = std::thread([this] { Run(); });
}

AudioClock::~AudioClock() {
  stop_ = true;
  thread_.join();
}

void AudioClock::Add(std::shared_ptr<CallAudio> call) {
  std::lock_guard<std::mutex> lock(mu_);
  calls_.push_back(std::move(call));
}

void AudioClock::Remove(const CallAudio* call) {
  std::lock_guard<std::mutex> lock(mu_);
  calls_.erase(std::remove_if(calls_.begin(), calls_.end(),
                              [call](const auto& c) { return c.get() == call; }),
               calls_.end());
}

void AudioClock::Run() {
  using namespace std::chrono;
  constexpr auto kTick = milliseconds(10);
  constexpr auto kResync = milliseconds(100);
  auto next = steady_clock::now() + kTick;
  while (!stop_) {
    std::this_thread::sleep_until(next);
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& call : calls_) call->Tick();
    }
    adm_->PullPlayout();
    ticks_.fetch_add(1, std::memory_order_relaxed);
    if (on_tick_) on_tick_();
    next += kTick;
    auto now = steady_clock::now();
    if (now - next > kResync) {
      // Stalled (suspended process, overloaded host): skip the lost ticks
      // rather than bursting them.
      late_ticks_.fetch_add(1, std::memory_order_relaxed);
      next = now + kTick;
    }
  }
}

}  // namespace rtcgw
