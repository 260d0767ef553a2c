// The gateway's audio codec factories.
//
// Debian's tg_owt builtin factories lack Opus, so the gateway builds its own
// from libwebrtc's codec classes: Opus, G.722, PCMU/PCMA (telephone-event,
// CN and RED are added by the voice engine itself). The encoder factory also
// applies the operator's Opus settings (bitrate, complexity, FEC, DTX, frame
// size) on top of what SDP negotiated, to every call's Opus encoder, and
// with match_bandwidth wraps it so that it codes no more audio bandwidth
// than the audio it is given holds: narrowband on a call bridged to G.711.
#pragma once

#include "api/audio_codecs/audio_decoder_factory.h"
#include "api/audio_codecs/audio_encoder_factory.h"
#include "api/audio_codecs/opus/audio_encoder_opus_config.h"

namespace rtcgw {


struct OpusOverrides {
  int bitrate_bps = 0;   // 0: what SDP/the codec chose
  int complexity = -1;   // -1: libwebrtc default
  bool fec = true;
  bool dtx = false;
  int ptime_ms = 0;      // 0: what SDP chose
  // Cap the coded audio bandwidth at what the audio holds (BandMatchedOpus
  // in codecs.cc, the detector in src/media/band.rs).
  bool match_bandwidth = true;
};

// The operator's settings on an Opus encoder config (what SDP negotiated,
// or WebRTC's defaults).
void ApplyOpusOverrides(const OpusOverrides& opus,
                        webrtc::AudioEncoderOpusConfig& config);

// An encoder factory offering and making what `inner` does; subclasses
// change what MakeAudioEncoder makes.
class ForwardingEncoderFactory : public webrtc::AudioEncoderFactory {
 public:
  explicit ForwardingEncoderFactory(
      rtc::scoped_refptr<webrtc::AudioEncoderFactory> inner)
      : inner_(std::move(inner)) {}
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
    return inner_->MakeAudioEncoder(payload_type, format, codec_pair_id);
  }

 protected:
  rtc::scoped_refptr<webrtc::AudioEncoderFactory> inner_;
};

rtc::scoped_refptr<webrtc::AudioEncoderFactory> CreateEncoderFactory(
    const OpusOverrides& opus);
rtc::scoped_refptr<webrtc::AudioDecoderFactory> CreateDecoderFactory();

}  // namespace rtcgw
