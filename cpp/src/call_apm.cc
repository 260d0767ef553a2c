#include "rtcgw/call_apm.h"

#include "modules/audio_processing/include/audio_processing.h"
#include "rtcgw/src/rtc/sys.rs.h"

namespace rtcgw {

CallApm::CallApm(const ApmSettings& s) : apm_(nullptr), delay_ms_(s.delay_ms) {
  auto apm = webrtc::AudioProcessingBuilder().Create();
  webrtc::AudioProcessing::Config config;
  config.echo_canceller.enabled = s.echo_cancellation;
  config.high_pass_filter.enabled = s.echo_cancellation || s.noise_suppression;
  config.noise_suppression.enabled = s.noise_suppression;
  config.noise_suppression.level =
      webrtc::AudioProcessing::Config::NoiseSuppression::kModerate;
  config.gain_controller2.enabled = s.automatic_gain_control;
  config.gain_controller2.adaptive_digital.enabled = s.automatic_gain_control;
  apm->ApplyConfig(config);
  apm_ = apm.release();
}

CallApm::~CallApm() {
  if (apm_) apm_->Release();
}

namespace {
bool Fits(size_t samples, int32_t rate) {
  return (rate == 8000 || rate == 16000 || rate == 32000 || rate == 48000) &&
         samples == size_t(rate / 100);
}
}  // namespace

bool CallApm::render(rust::Slice<const int16_t> pcm, int32_t rate) const {
  if (!Fits(pcm.size(), rate)) return false;
  webrtc::StreamConfig config(rate, 1);
  // The reverse stream's output is not used: a scratch copy takes it.
  int16_t scratch[480];
  return apm_->ProcessReverseStream(pcm.data(), config, config, scratch) == 0;
}

bool CallApm::capture(rust::Slice<int16_t> pcm, int32_t rate) const {
  if (!Fits(pcm.size(), rate)) return false;
  webrtc::StreamConfig config(rate, 1);
  apm_->set_stream_delay_ms(delay_ms_);
  return apm_->ProcessStream(pcm.data(), config, config, pcm.data()) == 0;
}

std::unique_ptr<CallApm> new_call_apm(const ApmSettings& settings,
                                      RtcError& error) {
  error.kind = ErrorKind::None;
  return std::make_unique<CallApm>(settings);
}

}  // namespace rtcgw
