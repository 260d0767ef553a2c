#include "codec_only.h"

#include <time.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "api/audio_codecs/g711/audio_decoder_g711.h"
#include "api/audio_codecs/g711/audio_encoder_g711.h"
#include "api/audio_codecs/opus/audio_decoder_opus.h"
#include "api/audio_codecs/opus/audio_encoder_opus.h"
#include "rtc_base/buffer.h"
#include "rtcgw/codecs.h"
#include "rtcgw/load_codecs.h"
#include "rtcgw-bench/src/codec_only.rs.h"

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

}  // namespace

uint64_t bench_opus_roundtrip(uint32_t frames) {
  Roundtrip opus = Opus();
  if (!opus.ok()) return 0;
  uint64_t start = ThreadCpuNs();
  for (uint32_t f = 0; f < frames; ++f) opus.Frame();
  return ThreadCpuNs() - start;
}

uint64_t bench_bridge_codecs(rust::Slice<const int16_t> pcm, uint32_t rate,
                             const CeilingOpus& opus) {
  std::vector<int16_t> speech(pcm.begin(), pcm.end());
  std::vector<int16_t> wide = Resample(speech, int(rate), 48000);
  std::vector<int16_t> narrow = Resample(speech, int(rate), 8000);
  if (wide.empty() || narrow.empty()) return 0;
  size_t frames = std::min(wide.size() / 480, narrow.size() / 80);

  // What the browser sends, encoded beforehand (not measured).
  webrtc::AudioEncoderOpusConfig browser;
  auto browser_enc = webrtc::AudioEncoderOpus::MakeAudioEncoder(browser, 111);
  // The gateway's encoder toward the browser.
  // The gateway's own override code (codecs.h) on WebRTC's defaults.
  OpusOverrides overrides;
  overrides.bitrate_bps = opus.bitrate_bps;
  overrides.complexity = opus.complexity;
  overrides.fec = opus.fec;
  overrides.dtx = opus.dtx;
  webrtc::AudioEncoderOpusConfig gw;
  ApplyOpusOverrides(overrides, gw);
  gw.max_playback_rate_hz = opus.max_playback_hz;
  auto gw_enc = webrtc::AudioEncoderOpus::MakeAudioEncoder(gw, 111);
  auto opus_dec = webrtc::AudioDecoderOpus::MakeAudioDecoder({48000, 1});
  webrtc::AudioEncoderG711::Config ulaw_config;
  ulaw_config.type = webrtc::AudioEncoderG711::Config::Type::kPcmU;
  webrtc::AudioDecoderG711::Config ulaw_dec_config;
  ulaw_dec_config.type = webrtc::AudioDecoderG711::Config::Type::kPcmU;
  ulaw_dec_config.num_channels = 1;
  auto ulaw_enc = webrtc::AudioEncoderG711::MakeAudioEncoder(ulaw_config, 0);
  auto ulaw_dec = webrtc::AudioDecoderG711::MakeAudioDecoder(ulaw_dec_config);
  if (!browser_enc || !gw_enc || !opus_dec || !ulaw_enc || !ulaw_dec) return 0;

  std::vector<rtc::Buffer> sent;
  rtc::Buffer packet;
  for (size_t f = 0; f < frames; ++f) {
    browser_enc->Encode(uint32_t(f * 480),
                        rtc::ArrayView<const int16_t>(&wide[f * 480], 480),
                        &packet);
    if (packet.size() > 0) {
      sent.emplace_back(packet.data(), packet.size());
      packet.Clear();
    }
  }

  std::vector<int16_t> out(5760);
  webrtc::AudioDecoder::SpeechType type;
  size_t next = 0;
  uint64_t start = ThreadCpuNs();
  for (size_t f = 0; f < frames; ++f) {
    if (f % 2 == 1 && next < sent.size()) {  // one browser packet per 20 ms
      const rtc::Buffer& p = sent[next++];
      opus_dec->Decode(p.data(), p.size(), 48000, out.size() * sizeof(int16_t),
                       out.data(), &type);
    }
    packet.Clear();
    ulaw_enc->Encode(uint32_t(f * 80),
                     rtc::ArrayView<const int16_t>(&narrow[f * 80], 80),
                     &packet);
    if (packet.size() > 0)
      ulaw_dec->Decode(packet.data(), packet.size(), 8000,
                       out.size() * sizeof(int16_t), out.data(), &type);
    packet.Clear();
    gw_enc->Encode(uint32_t(f * 480),
                   rtc::ArrayView<const int16_t>(&wide[f * 480], 480), &packet);
  }
  return ThreadCpuNs() - start;
}

}  // namespace rtcgw
