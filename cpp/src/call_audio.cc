#include "rtcgw/call_audio.h"

#include <algorithm>

namespace rtcgw {

FrameRing::FrameRing(size_t capacity) : slots_(capacity == 0 ? 1 : capacity) {}

bool FrameRing::Push(const int16_t* samples, size_t n, int sample_rate) {
  std::lock_guard<std::mutex> lock(mu_);
  bool fit = len_ < slots_.size();
  if (!fit) {  // drop the oldest
    head_ = (head_ + 1) % slots_.size();
    --len_;
  }
  PcmFrame& slot = slots_[(head_ + len_) % slots_.size()];
  slot.sample_rate = sample_rate;
  slot.samples = n;
  std::copy(samples, samples + n, slot.data.begin());
  ++len_;
  return fit;
}

bool FrameRing::Pop(PcmFrame* out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (len_ == 0) return false;
  const PcmFrame& slot = slots_[head_];
  out->sample_rate = slot.sample_rate;
  out->samples = slot.samples;
  std::copy(slot.data.begin(), slot.data.begin() + slot.samples,
            out->data.begin());
  head_ = (head_ + 1) % slots_.size();
  --len_;
  return true;
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
    sink->OnData(frame.data.data(), 16, frame.sample_rate, 1, frame.samples);
  }
}

CallAudio::CallAudio(size_t tx_capacity, size_t rx_capacity)
    : source_(rtc::make_ref_counted<CallAudioSource>()),
      tx_(tx_capacity),
      rx_(rx_capacity) {
  silence_.sample_rate = 48000;
  silence_.samples = 480;
}

bool CallAudio::PushTx(const int16_t* samples, size_t n, int sample_rate) {
  if (sample_rate < 8000 || sample_rate % 100 != 0 ||
      n != size_t(sample_rate / 100) || n > kMaxFrameSamples) {
    tx_invalid.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  bool fit = tx_.Push(samples, n, sample_rate);
  if (!fit) tx_overflows.fetch_add(1, std::memory_order_relaxed);
  return fit;
}

bool CallAudio::PopRx(PcmFrame* out) { return rx_.Pop(out); }

void CallAudio::Tick() {
  if (tx_.Pop(&out_)) {
    started_ = true;
    tx_frames.fetch_add(1, std::memory_order_relaxed);
    source_->Deliver(out_);
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
  if (bits_per_sample != 16 || number_of_channels == 0 ||
      number_of_frames > kMaxFrameSamples)
    return;
  const int16_t* in = static_cast<const int16_t*>(audio_data);
  if (number_of_channels > 1) {
    // Downmix to mono: the gateway's legs are mono.
    for (size_t i = 0; i < number_of_frames; ++i) {
      int32_t acc = 0;
      for (size_t c = 0; c < number_of_channels; ++c)
        acc += in[i * number_of_channels + c];
      mono_[i] = static_cast<int16_t>(acc / int32_t(number_of_channels));
    }
    in = mono_.data();
  }
  rx_frames.fetch_add(1, std::memory_order_relaxed);
  if (!rx_.Push(in, number_of_frames, sample_rate))
    rx_overflows.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace rtcgw
