// Out-of-band DTMF from the WebRTC leg: a receive-side frame transformer
// that takes RFC 4733 telephone-event payloads out of the audio stream and
// hands them to Rust, before NetEq would turn them into in-band tones.
//
// Design notes
// ------------
// libwebrtc gives an application no callback for received telephone-events:
// NetEq consumes them and plays the tones into the decoded audio. Relaying
// those tones in-band to the legacy leg would double every digit next to the
// RFC 4733 events rtcgw sends there, so the tap consumes telephone-event
// frames and forwards every other frame unchanged.
//
// Threads: Transform() runs on the channel's worker thread, once per received
// packet; the payload-type table is written on the signaling thread after a
// local description is applied (SetTelephoneEvents), so it is mutex-guarded.
// The tap holds the call's PcState weakly: it never keeps a closed call alive.
#pragma once

#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "api/frame_transformer_interface.h"

namespace rtcgw {

struct PcState;

class DtmfTap : public webrtc::FrameTransformerInterface {
 public:
  explicit DtmfTap(std::weak_ptr<PcState> state) : state_(std::move(state)) {}

  // (payload type, clock rate) of each negotiated telephone-event, and the
  // RTP clock of the section's main audio codec.
  void SetTelephoneEvents(std::vector<std::pair<int, int>> events,
                          int audio_clock);
  // The clock of the event libwebrtc's DTMF sender uses (the one at the
  // audio clock, else the lowest; 0: none) and the audio clock.
  std::pair<int, int> Clocks();

  void Transform(
      std::unique_ptr<webrtc::TransformableFrameInterface> frame) override;
  void RegisterTransformedFrameCallback(
      rtc::scoped_refptr<webrtc::TransformedFrameCallback> callback) override;
  void UnregisterTransformedFrameCallback() override;

 private:
  int ClockRateOf(int payload_type);

  std::weak_ptr<PcState> state_;
  std::mutex mu_;
  std::vector<std::pair<int, int>> events_;
  int audio_clock_ = 0;
  rtc::scoped_refptr<webrtc::TransformedFrameCallback> callback_;
};

}  // namespace rtcgw
