#include "rtcgw/codecs.h"

#include <algorithm>

#include "api/audio_codecs/audio_decoder_factory_template.h"
#include "api/audio_codecs/audio_encoder_factory_template.h"
#include "api/audio_codecs/g711/audio_decoder_g711.h"
#include "api/audio_codecs/g711/audio_encoder_g711.h"
#include "api/audio_codecs/g722/audio_decoder_g722.h"
#include "api/audio_codecs/g722/audio_encoder_g722.h"
#include "api/audio_codecs/opus/audio_decoder_opus.h"
#include "api/audio_codecs/opus/audio_encoder_opus.h"
#include "absl/strings/match.h"
#include "rtc_base/logging.h"
#include "rtcgw/src/rtc/sys.rs.h"

namespace rtcgw {
namespace {

// libwebrtc's Opus encoder, coding narrowband when what it is given holds
// nothing above 4 kHz (src/media/band.rs decides from each 10 ms frame). The cap
// goes through SetMaxPlaybackRate, never above what the peer's SDP allows
// (maxplaybackrate); everything else is the inner encoder's.
class BandMatchedOpus : public webrtc::AudioEncoder {
 public:
  BandMatchedOpus(std::unique_ptr<webrtc::AudioEncoder> inner, int sdp_max_hz)
      : inner_(std::move(inner)),
        sdp_max_hz_(sdp_max_hz),
        cap_hz_(sdp_max_hz),
        detector_(new_band_detector()) {}

  int SampleRateHz() const override { return inner_->SampleRateHz(); }
  size_t NumChannels() const override { return inner_->NumChannels(); }
  int RtpTimestampRateHz() const override {
    return inner_->RtpTimestampRateHz();
  }
  size_t Num10MsFramesInNextPacket() const override {
    return inner_->Num10MsFramesInNextPacket();
  }
  size_t Max10MsFramesInAPacket() const override {
    return inner_->Max10MsFramesInAPacket();
  }
  int GetTargetBitrate() const override { return inner_->GetTargetBitrate(); }
  void Reset() override { inner_->Reset(); }
  bool SetFec(bool enable) override { return inner_->SetFec(enable); }
  bool SetDtx(bool enable) override { return inner_->SetDtx(enable); }
  bool GetDtx() const override { return inner_->GetDtx(); }
  bool SetApplication(Application application) override {
    return inner_->SetApplication(application);
  }
  void SetMaxPlaybackRate(int frequency_hz) override {
    sdp_max_hz_ = frequency_hz;
    cap_hz_ = std::min(frequency_hz, band_hz_);
    inner_->SetMaxPlaybackRate(cap_hz_);
  }
  bool EnableAudioNetworkAdaptor(const std::string& config,
                                 webrtc::RtcEventLog* log) override {
    return inner_->EnableAudioNetworkAdaptor(config, log);
  }
  void DisableAudioNetworkAdaptor() override {
    inner_->DisableAudioNetworkAdaptor();
  }
  void OnReceivedUplinkPacketLossFraction(float fraction) override {
    inner_->OnReceivedUplinkPacketLossFraction(fraction);
  }
  void OnReceivedTargetAudioBitrate(int target_bps) override {
    inner_->OnReceivedTargetAudioBitrate(target_bps);
  }
  void OnReceivedUplinkBandwidth(
      int target_audio_bitrate_bps,
      absl::optional<int64_t> bwe_period_ms) override {
    inner_->OnReceivedUplinkBandwidth(target_audio_bitrate_bps, bwe_period_ms);
  }
  void OnReceivedUplinkAllocation(
      webrtc::BitrateAllocationUpdate update) override {
    inner_->OnReceivedUplinkAllocation(update);
  }
  void OnReceivedRtt(int rtt_ms) override { inner_->OnReceivedRtt(rtt_ms); }
  void OnReceivedOverhead(size_t overhead_bytes_per_packet) override {
    inner_->OnReceivedOverhead(overhead_bytes_per_packet);
  }
  void SetReceiverFrameLengthRange(int min_ms, int max_ms) override {
    inner_->SetReceiverFrameLengthRange(min_ms, max_ms);
  }
  webrtc::ANAStats GetANAStats() const override {
    return inner_->GetANAStats();
  }
  absl::optional<std::pair<webrtc::TimeDelta, webrtc::TimeDelta>>
  GetFrameLengthRange() const override {
    return inner_->GetFrameLengthRange();
  }

 protected:
  EncodedInfo EncodeImpl(uint32_t rtp_timestamp,
                         rtc::ArrayView<const int16_t> audio,
                         rtc::Buffer* encoded) override {
    if (inner_->NumChannels() == 1) {
      band_hz_ = band_update(*detector_, rust::Slice<const int16_t>(
                                             audio.data(), audio.size()));
      int cap = std::min(sdp_max_hz_, band_hz_);
      if (cap != cap_hz_) {
        RTC_LOG(LS_INFO) << "rtcgw: Opus audio bandwidth capped at " << cap
                         << " Hz (was " << cap_hz_ << ")";
        cap_hz_ = cap;
        inner_->SetMaxPlaybackRate(cap);
      }
    }
    return inner_->Encode(rtp_timestamp, audio, encoded);
  }

 private:
  std::unique_ptr<webrtc::AudioEncoder> inner_;
  int sdp_max_hz_, cap_hz_, band_hz_ = 48000;
  rust::Box<BandDetector> detector_;
};

// Wraps the template factory; only Opus encoders are adjusted.
class EncoderFactory : public ForwardingEncoderFactory {
 public:
  explicit EncoderFactory(const OpusOverrides& opus)
      : ForwardingEncoderFactory(
            webrtc::CreateAudioEncoderFactory<webrtc::AudioEncoderOpus,
                                              webrtc::AudioEncoderG722,
                                              webrtc::AudioEncoderG711>()),
        opus_(opus) {}

  std::unique_ptr<webrtc::AudioEncoder> MakeAudioEncoder(
      int payload_type,
      const webrtc::SdpAudioFormat& format,
      absl::optional<webrtc::AudioCodecPairId> codec_pair_id) override {
    if (!absl::EqualsIgnoreCase(format.name, "opus"))
      return inner_->MakeAudioEncoder(payload_type, format, codec_pair_id);
    auto config = webrtc::AudioEncoderOpus::SdpToConfig(format);
    if (!config) return nullptr;
    ApplyOpusOverrides(opus_, *config);
    if (!config->IsOk()) {
      // Operator settings out of range: fall back to what SDP negotiated.
      config = webrtc::AudioEncoderOpus::SdpToConfig(format);
    }
    auto encoder = webrtc::AudioEncoderOpus::MakeAudioEncoder(
        *config, payload_type, codec_pair_id);
    if (!encoder || !opus_.match_bandwidth) return encoder;
    return std::make_unique<BandMatchedOpus>(std::move(encoder),
                                             config->max_playback_rate_hz);
  }

 private:
  OpusOverrides opus_;
};

}  // namespace

void ApplyOpusOverrides(const OpusOverrides& opus,
                        webrtc::AudioEncoderOpusConfig& config) {
  if (opus.bitrate_bps > 0) config.bitrate_bps = opus.bitrate_bps;
  if (opus.complexity >= 0) {
    config.complexity = opus.complexity;
    config.low_rate_complexity = opus.complexity;
  }
  // The operator decides: useinbandfec=1 only says the peer can use it.
  config.fec_enabled = opus.fec;
  config.dtx_enabled = config.dtx_enabled || opus.dtx;
  if (opus.ptime_ms > 0) config.frame_size_ms = opus.ptime_ms;
}

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
