#include "rtcgw/codecs.h"

#include "api/audio_codecs/audio_decoder_factory_template.h"
#include "api/audio_codecs/audio_encoder_factory_template.h"
#include "api/audio_codecs/g711/audio_decoder_g711.h"
#include "api/audio_codecs/g711/audio_encoder_g711.h"
#include "api/audio_codecs/g722/audio_decoder_g722.h"
#include "api/audio_codecs/g722/audio_encoder_g722.h"
#include "api/audio_codecs/opus/audio_decoder_opus.h"
#include "api/audio_codecs/opus/audio_encoder_opus.h"
#include "absl/strings/match.h"

namespace rtcgw {
namespace {

// Wraps the template factory; only Opus encoders are adjusted.
class EncoderFactory : public webrtc::AudioEncoderFactory {
 public:
  explicit EncoderFactory(const OpusOverrides& opus)
      : opus_(opus),
        inner_(webrtc::CreateAudioEncoderFactory<webrtc::AudioEncoderOpus,
                                                 webrtc::AudioEncoderG722,
                                                 webrtc::AudioEncoderG711>()) {}

  std::vector<webrtc::AudioCodecSpec> GetSupportedEncoders() override {
    return inner_->GetSupportedEncoders();
  }

  absl::optional<webrtc::AudioCodecInfo> QueryAudioEncoder(
      const webrtc::SdpAudioFormat& format) override {
    return inner_->QueryAudioEncoder(format);
  }

  std::unique_ptr<webrtc::AudioEncoder> MakeAudioEncoder(
      int payload_type,
      const webrtc::SdpAudioFormat& format,
      absl::optional<webrtc::AudioCodecPairId> codec_pair_id) override {
    if (!absl::EqualsIgnoreCase(format.name, "opus"))
      return inner_->MakeAudioEncoder(payload_type, format, codec_pair_id);
    auto config = webrtc::AudioEncoderOpus::SdpToConfig(format);
    if (!config) return nullptr;
    if (opus_.bitrate_bps > 0) config->bitrate_bps = opus_.bitrate_bps;
    if (opus_.complexity >= 0) {
      config->complexity = opus_.complexity;
      config->low_rate_complexity = opus_.complexity;
    }
    // The operator decides: useinbandfec=1 only says the peer can use it.
    config->fec_enabled = opus_.fec;
    config->dtx_enabled = config->dtx_enabled || opus_.dtx;
    if (opus_.ptime_ms > 0) config->frame_size_ms = opus_.ptime_ms;
    if (!config->IsOk()) {
      // Operator settings out of range: fall back to what SDP negotiated.
      config = webrtc::AudioEncoderOpus::SdpToConfig(format);
    }
    return webrtc::AudioEncoderOpus::MakeAudioEncoder(*config, payload_type,
                                                      codec_pair_id);
  }

 private:
  OpusOverrides opus_;
  rtc::scoped_refptr<webrtc::AudioEncoderFactory> inner_;
};

}  // namespace

rtc::scoped_refptr<webrtc::AudioEncoderFactory> CreateEncoderFactory(
    const OpusOverrides& opus) {
  return rtc::make_ref_counted<EncoderFactory>(opus);
}

rtc::scoped_refptr<webrtc::AudioDecoderFactory> CreateDecoderFactory() {
  return webrtc::CreateAudioDecoderFactory<webrtc::AudioDecoderOpus,
                                           webrtc::AudioDecoderG722,
                                           webrtc::AudioDecoderG711>();
}

}  // namespace rtcgw
