#include "rtcgw/call_audio.h"

#include <algorithm>

namespace rtcgw {

bool FrameRing::Push(PcmFrame frame) {
  std::lock_guard<std::mutex> lock(mu_);
  bool fit = frames_.size() < capacity_;
  if (!fit) frames_.pop_front();
  frames_.push_back(std::move(frame));
  return fit;
}

bool FrameRing::Pop(PcmFrame* out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (frames_.empty()) return false;
  *out = std::move(frames_.front());
  frames_.pop_front();
  return true;
}

size_t FrameRing::Len() const {
  std::lock_guard<std::mutex> lock(mu_);
  return frames_.size();
}

void CallAudioSource::AddSink(webrtc::AudioTrackSinkInterface* sink) {
  std::lock_guard<std::mutex> lock(mu_);
  if (std::find(sinks_.begin(), sinks_.end(), sink) == sinks_.end())
    sinks_.push_back(sink);
}

void CallAudioSource::RemoveSink(webrtc::AudioTrackSinkInterface* sink) {
  std::lock_guard<std::mutex> lock(mu_);
  sinks_.erase(std::remove(sinks_.begin(), sinks_.end(), sink), sinks_.end());
}

void CallAudioSource::Deliver(const PcmFrame& frame) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto* sink : sinks_) {
    sink->OnData(frame.samples.data(), 16, frame.sample_rate, 1,
                 frame.samples.size());
  }
}

CallAudio::CallAudio(size_t tx_capacity, size_t rx_capacity)
    : source_(rtc::make_ref_counted<CallAudioSource>()),
      tx_(tx_capacity),
      rx_(rx_capacity) {
  silence_.sample_rate = 48000;
  silence_.samples.assign(480, 0);
}

bool CallAudio::PushTx(PcmFrame frame) {
  bool fit = tx_.Push(std::move(frame));
  if (!fit) tx_overflows.fetch_add(1, std::memory_order_relaxed);
  return fit;
}

bool CallAudio::PopRx(PcmFrame* out) { return rx_.Pop(out); }

void CallAudio::Tick() {
  PcmFrame frame;
  if (tx_.Pop(&frame)) {
    started_ = true;
    tx_frames.fetch_add(1, std::memory_order_relaxed);
    source_->Deliver(frame);
    return;
  }
  // Silence keeps the encoder's clock running; underruns only count once
  // Rust has started feeding the call.
  if (started_) tx_underruns.fetch_add(1, std::memory_order_relaxed);
  source_->Deliver(silence_);
}

void CallAudio::OnData(const void* audio_data,
                       int bits_per_sample,
                       int sample_rate,
                       size_t number_of_channels,
                       size_t number_of_frames) {
  if (bits_per_sample != 16 || number_of_channels == 0) return;
  const int16_t* in = static_cast<const int16_t*>(audio_data);
  PcmFrame frame;
  frame.sample_rate = sample_rate;
  frame.samples.resize(number_of_frames);
  // Downmix to mono: the gateway's legs are mono.
  for (size_t i = 0; i < number_of_frames; ++i) {
    int32_t acc = 0;
    for (size_t c = 0; c < number_of_channels; ++c)
      acc += in[i * number_of_channels + c];
    frame.samples[i] = static_cast<int16_t>(acc / int32_t(number_of_channels));
  }
  rx_frames.fetch_add(1, std::memory_order_relaxed);
  if (!rx_.Push(std::move(frame)))
    rx_overflows.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace rtcgw
