#include "codec_only.h"

#include <time.h>

#include <cmath>
#include <vector>

#include "api/audio_codecs/g711/audio_decoder_g711.h"
#include "api/audio_codecs/g711/audio_encoder_g711.h"
#include "api/audio_codecs/opus/audio_decoder_opus.h"
#include "api/audio_codecs/opus/audio_encoder_opus.h"
#include "rtc_base/buffer.h"

namespace rtcgw {

namespace {
uint64_t ThreadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// Encodes 10 ms of a tone at the codec's rate and decodes what comes out.
class Roundtrip {
 public:
  Roundtrip(std::unique_ptr<webrtc::AudioEncoder> encoder,
            std::unique_ptr<webrtc::AudioDecoder> decoder, int rate)
      : encoder_(std::move(encoder)),
        decoder_(std::move(decoder)),
        rate_(rate),
        pcm_(rate / 100),
        out_(5760) {}

  bool ok() const { return encoder_ && decoder_; }

  void Frame() {
    for (size_t i = 0; i < pcm_.size(); ++i) {
      double t = double(timestamp_ + i) / rate_;
      pcm_[i] = int16_t(9000 * std::sin(2 * M_PI * 440.0 * t));
    }
    packet_.Clear();
    encoder_->Encode(timestamp_, pcm_, &packet_);
    timestamp_ += pcm_.size();
    if (packet_.size() > 0) {
      webrtc::AudioDecoder::SpeechType type;
      decoder_->Decode(packet_.data(), packet_.size(), rate_,
                       out_.size() * sizeof(int16_t), out_.data(), &type);
    }
  }

 private:
  std::unique_ptr<webrtc::AudioEncoder> encoder_;
  std::unique_ptr<webrtc::AudioDecoder> decoder_;
  int rate_;
  std::vector<int16_t> pcm_, out_;
  rtc::Buffer packet_;
  uint32_t timestamp_ = 0;
};

Roundtrip Opus() {
  webrtc::AudioEncoderOpusConfig enc_config;  // 48 kHz, mono, 20 ms
  enc_config.bitrate_bps = 32000;
  return Roundtrip(webrtc::AudioEncoderOpus::MakeAudioEncoder(enc_config, 111),
                   webrtc::AudioDecoderOpus::MakeAudioDecoder({48000, 1}),
                   48000);
}

Roundtrip Pcmu() {
  webrtc::AudioEncoderG711::Config enc_config;  // mono, 20 ms
  enc_config.type = webrtc::AudioEncoderG711::Config::Type::kPcmU;
  webrtc::AudioDecoderG711::Config dec_config;
  dec_config.type = webrtc::AudioDecoderG711::Config::Type::kPcmU;
  dec_config.num_channels = 1;  // no default: uninitialised otherwise
  return Roundtrip(webrtc::AudioEncoderG711::MakeAudioEncoder(enc_config, 0),
                   webrtc::AudioDecoderG711::MakeAudioDecoder(dec_config),
                   8000);
}

}  // namespace

uint64_t bench_opus_roundtrip(uint32_t frames) {
  Roundtrip opus = Opus();
  if (!opus.ok()) return 0;
  uint64_t start = ThreadCpuNs();
  for (uint32_t f = 0; f < frames; ++f) opus.Frame();
  return ThreadCpuNs() - start;
}

uint64_t bench_bridge_codecs(uint32_t frames) {
  Roundtrip opus = Opus(), pcmu = Pcmu();
  if (!opus.ok() || !pcmu.ok()) return 0;
  uint64_t start = ThreadCpuNs();
  for (uint32_t f = 0; f < frames; ++f) {
    opus.Frame();
    pcmu.Frame();
  }
  return ThreadCpuNs() - start;
}

}  // namespace rtcgw
