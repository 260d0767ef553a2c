#include "rtcgw/bench.h"

#include <time.h>

#include <cmath>
#include <vector>

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
}  // namespace

uint64_t bench_opus_roundtrip(uint32_t frames) {
  webrtc::AudioEncoderOpusConfig enc_config;  // 48 kHz, mono, 20 ms
  enc_config.bitrate_bps = 32000;
  auto encoder = webrtc::AudioEncoderOpus::MakeAudioEncoder(enc_config, 111);
  auto decoder = webrtc::AudioDecoderOpus::MakeAudioDecoder({48000, 1});
  if (!encoder || !decoder) return 0;

  std::vector<int16_t> pcm(480);
  std::vector<int16_t> out(5760);
  rtc::Buffer packet;
  uint32_t timestamp = 0;
  uint64_t start = ThreadCpuNs();
  for (uint32_t f = 0; f < frames; ++f) {
    for (size_t i = 0; i < pcm.size(); ++i) {
      double t = double(timestamp + i) / 48000.0;
      pcm[i] = int16_t(9000 * std::sin(2 * M_PI * 440.0 * t));
    }
    packet.Clear();
    encoder->Encode(timestamp, pcm, &packet);
    timestamp += 480;
    if (packet.size() > 0) {
      webrtc::AudioDecoder::SpeechType type;
      decoder->Decode(packet.data(), packet.size(), 48000,
                      out.size() * sizeof(int16_t), out.data(), &type);
    }
  }
  return ThreadCpuNs() - start;
}

}  // namespace rtcgw
