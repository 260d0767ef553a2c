#include "rtcgw/load_codecs.h"

#include <opus/opus.h>

#include <algorithm>
#include <atomic>
#include <memory>

#include "absl/strings/match.h"
#include "api/audio_codecs/audio_decoder_factory_template.h"
#include "api/audio_codecs/g711/audio_decoder_g711.h"
#include "api/audio_codecs/g722/audio_decoder_g722.h"
#include "api/audio_codecs/opus/audio_decoder_opus.h"
#include "api/audio_codecs/opus/audio_encoder_opus.h"
#include "common_audio/resampler/include/push_resampler.h"
#include "rtc_base/buffer.h"

namespace rtcgw {
namespace {

using Packets = std::vector<rtc::Buffer>;

// Encodes `pcm` once, 20 ms packets, with what `opus` sets.
std::shared_ptr<const Packets> EncodeOnce(const OpusOverrides& opus,
                                          const std::vector<int16_t>& pcm) {
  auto packets = std::make_shared<Packets>();
  webrtc::AudioEncoderOpusConfig config;  // 48 kHz mono 20 ms, as browsers
  ApplyOpusOverrides(opus, config);
  auto encoder = webrtc::AudioEncoderOpus::MakeAudioEncoder(config, 111);
  if (!encoder) return packets;
  // No loss reported, as on the benchmark's loopback: with FEC on, libopus
  // spends bits on it only once RTCP reports loss, browsers' included.
  uint32_t timestamp = 0;
  rtc::Buffer packet;
  for (size_t at = 0; at + 480 <= pcm.size(); at += 480) {
    encoder->Encode(timestamp,
                    rtc::ArrayView<const int16_t>(pcm.data() + at, 480),
                    &packet);
    timestamp += 480;
    if (packet.size() > 0) {
      packets->emplace_back(packet.data(), packet.size());
      packet.Clear();
    }
  }
  return packets;
}

// Hands out the packets of one shared recording instead of encoding.
class ReplayEncoder : public webrtc::AudioEncoder {
 public:
  ReplayEncoder(std::shared_ptr<const Packets> packets, int payload_type,
                size_t start)
      : packets_(std::move(packets)),
        payload_type_(payload_type),
        next_(start) {}

  int SampleRateHz() const override { return 48000; }
  size_t NumChannels() const override { return 1; }
  size_t Num10MsFramesInNextPacket() const override { return 2; }
  size_t Max10MsFramesInAPacket() const override { return 2; }
  int GetTargetBitrate() const override { return 32000; }
  void Reset() override { buffered_ = 0; }
  absl::optional<std::pair<webrtc::TimeDelta, webrtc::TimeDelta>>
  GetFrameLengthRange() const override {
    return {{webrtc::TimeDelta::Millis(20), webrtc::TimeDelta::Millis(20)}};
  }

 protected:
  EncodedInfo EncodeImpl(uint32_t rtp_timestamp,
                         rtc::ArrayView<const int16_t>,
                         rtc::Buffer* encoded) override {
    if (buffered_++ == 0) first_timestamp_ = rtp_timestamp;
    EncodedInfo info;
    if (buffered_ < 2 || packets_->empty()) return info;
    buffered_ = 0;
    const rtc::Buffer& p = (*packets_)[next_++ % packets_->size()];
    encoded->AppendData(p.data(), p.size());
    info.encoded_bytes = p.size();
    info.encoded_timestamp = first_timestamp_;
    info.payload_type = payload_type_;
    info.send_even_if_empty = true;
    info.speech = true;
    info.encoder_type = CodecType::kOpus;
    return info;
  }

 private:
  std::shared_ptr<const Packets> packets_;
  int payload_type_;
  size_t next_;
  int buffered_ = 0;
  uint32_t first_timestamp_ = 0;
};

class ReplayEncoderFactory : public ForwardingEncoderFactory {
 public:
  ReplayEncoderFactory(const OpusOverrides& opus,
                       const std::vector<int16_t>& pcm)
      : ForwardingEncoderFactory(CreateEncoderFactory(opus)),
        packets_(EncodeOnce(opus, pcm)) {}

  std::unique_ptr<webrtc::AudioEncoder> MakeAudioEncoder(
      int payload_type,
      const webrtc::SdpAudioFormat& format,
      absl::optional<webrtc::AudioCodecPairId> codec_pair_id) override {
    if (!absl::EqualsIgnoreCase(format.name, "opus") || packets_->empty())
      return inner_->MakeAudioEncoder(payload_type, format, codec_pair_id);
    // Calls start 0.74 s apart in the recording.
    size_t start = calls_.fetch_add(37, std::memory_order_relaxed);
    return std::make_unique<ReplayEncoder>(packets_, payload_type, start);
  }

 private:
  std::shared_ptr<const Packets> packets_;
  std::atomic<size_t> calls_{0};
};

// Tells NetEq each packet's length and plays silence for it.
class SilentOpusDecoder : public webrtc::AudioDecoder {
 public:
  void Reset() override {}
  int SampleRateHz() const override { return 48000; }
  size_t Channels() const override { return 1; }
  int PacketDuration(const uint8_t* encoded, size_t length) const override {
    int n = opus_packet_get_nb_samples(encoded, int(length), 48000);
    return n > 0 ? n : 960;
  }

 protected:
  int DecodeInternal(const uint8_t* encoded, size_t length, int,
                     int16_t* decoded, SpeechType* type) override {
    int n = PacketDuration(encoded, length);
    std::fill(decoded, decoded + n, 0);
    *type = kSpeech;
    return n;
  }
};

struct SilentOpus {
  using Config = webrtc::AudioDecoderOpus::Config;
  static absl::optional<Config> SdpToConfig(const webrtc::SdpAudioFormat& f) {
    return webrtc::AudioDecoderOpus::SdpToConfig(f);
  }
  static void AppendSupportedDecoders(std::vector<webrtc::AudioCodecSpec>* s) {
    webrtc::AudioDecoderOpus::AppendSupportedDecoders(s);
  }
  static std::unique_ptr<webrtc::AudioDecoder> MakeAudioDecoder(
      const Config&, absl::optional<webrtc::AudioCodecPairId>) {
    return std::make_unique<SilentOpusDecoder>();
  }
};

}  // namespace

rtc::scoped_refptr<webrtc::AudioEncoderFactory> CreateReplayEncoderFactory(
    const OpusOverrides& opus,
    const std::vector<int16_t>& pcm,
    int rate) {
  return rtc::make_ref_counted<ReplayEncoderFactory>(
      opus, Resample(pcm, rate, 48000));
}

std::vector<int16_t> Resample(const std::vector<int16_t>& pcm, int from_hz,
                              int to_hz) {
  if (from_hz == to_hz) return pcm;
  webrtc::PushResampler<int16_t> resampler;
  std::vector<int16_t> out;
  if (from_hz < 8000 || to_hz < 8000 ||
      resampler.InitializeIfNeeded(from_hz, to_hz, 1) != 0)
    return out;
  size_t in_frame = size_t(from_hz / 100), out_frame = size_t(to_hz / 100);
  out.resize(pcm.size() / in_frame * out_frame);
  for (size_t i = 0, o = 0; i + in_frame <= pcm.size();
       i += in_frame, o += out_frame)
    resampler.Resample(pcm.data() + i, in_frame, out.data() + o, out_frame);
  return out;
}

rtc::scoped_refptr<webrtc::AudioDecoderFactory> CreateSilentDecoderFactory() {
  return webrtc::CreateAudioDecoderFactory<SilentOpus, webrtc::AudioDecoderG722,
                                           webrtc::AudioDecoderG711>();
}

}  // namespace rtcgw
