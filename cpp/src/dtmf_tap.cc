#include "rtcgw/dtmf_tap.h"

#include "rtcgw/pc_state.h"
#include "rtcgw/src/rtc/sys.rs.h"

namespace rtcgw {

void DtmfTap::SetTelephoneEvents(std::vector<std::pair<int, int>> events,
                                 int audio_clock) {
  std::lock_guard<std::mutex> lock(mu_);
  events_ = std::move(events);
  audio_clock_ = audio_clock;
}

std::pair<int, int> DtmfTap::Clocks() {
  std::lock_guard<std::mutex> lock(mu_);
  int clock = 0;
  for (const auto& [pt, rate] : events_) {
    if (rate == audio_clock_) return {rate, audio_clock_};
    if (clock == 0 || rate < clock) clock = rate;
  }
  return {clock, audio_clock_};
}

int DtmfTap::ClockRateOf(int payload_type) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [pt, rate] : events_)
    if (pt == payload_type) return rate;
  return 0;
}

void DtmfTap::Transform(
    std::unique_ptr<webrtc::TransformableFrameInterface> frame) {
  if (int rate = ClockRateOf(frame->GetPayloadType()); rate > 0) {
    if (auto s = state_.lock()) {
      auto data = frame->GetData();
      dtmf_packet(*s->events, uint32_t(rate), uint32_t(Clocks().second),
                  frame->GetTimestamp(),
                  rust::Slice<const uint8_t>(data.data(), data.size()));
    }
    return;  // consumed: relayed out of band, never played as a tone
  }
  rtc::scoped_refptr<webrtc::TransformedFrameCallback> callback;
  {
    std::lock_guard<std::mutex> lock(mu_);
    callback = callback_;
  }
  if (callback) callback->OnTransformedFrame(std::move(frame));
}

void DtmfTap::RegisterTransformedFrameCallback(
    rtc::scoped_refptr<webrtc::TransformedFrameCallback> callback) {
  std::lock_guard<std::mutex> lock(mu_);
  callback_ = std::move(callback);
}

void DtmfTap::UnregisterTransformedFrameCallback() {
  std::lock_guard<std::mutex> lock(mu_);
  callback_ = nullptr;
}

}  // namespace rtcgw
