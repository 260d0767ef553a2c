// Per-call audio processing for bridged calls: libwebrtc's AudioProcessing
// (AEC3, noise suppression, AGC2) on the legacy-to-WebRTC direction.
//
// Design notes
// ------------
// The legacy leg is the gateway's sound card: what rtcgw sends to it is the
// "render" (far-end) signal, what it receives is the "capture" signal that
// may carry the far phone's echo of the render signal. One instance per call,
// used by that call's media task only (no locking), on 10 ms mono frames at
// any of 8/16/32/48 kHz. Switches come from config; all off means no
// instance is made at all.
#pragma once

#include <cstdint>
#include <memory>

#include "rust/cxx.h"

namespace webrtc {
class AudioProcessing;
}

namespace rtcgw {

struct ApmSettings;
struct RtcError;

class CallApm {
 public:
  explicit CallApm(const ApmSettings& settings);
  ~CallApm();

  // The signal played to the legacy leg (the echo reference), in place
  // untouched. False on a frame APM refused (wrong size or rate).
  bool render(rust::Slice<const int16_t> pcm, int32_t sample_rate) const;
  // The signal received from the legacy leg, processed in place.
  bool capture(rust::Slice<int16_t> pcm, int32_t sample_rate) const;

 private:
  // AudioProcessing is ref-counted; held raw here to keep rtc::scoped_refptr
  // out of the header Rust sees. Released in the destructor.
  webrtc::AudioProcessing* apm_;
  int delay_ms_;
};

std::unique_ptr<CallApm> new_call_apm(const ApmSettings& settings,
                                      RtcError& error);

}  // namespace rtcgw
