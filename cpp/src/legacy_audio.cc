#include "rtcgw/legacy_audio.h"

#include <map>
#include <mutex>
#include <vector>

#include "api/audio/audio_frame.h"
#include "api/audio_codecs/audio_format.h"
#include "api/neteq/neteq.h"
#include "api/rtp_headers.h"
#include "common_audio/resampler/include/push_resampler.h"
#include "modules/audio_coding/neteq/default_neteq_factory.h"
#include "rtc_base/buffer.h"
#include "rtcgw/codecs.h"
#include "rtcgw/src/rtc/sys.rs.h"
#include "system_wrappers/include/clock.h"

namespace rtcgw {
namespace {

constexpr int kOutRate = 48000;
constexpr size_t kOutSamples = kOutRate / 100;

webrtc::SdpAudioFormat FormatOf(const CodecSpec& c) {
  webrtc::SdpAudioFormat::Parameters params;
  std::string fmtp(c.fmtp);
  size_t pos = 0;
  while (pos < fmtp.size()) {
    size_t end = fmtp.find(';', pos);
    if (end == std::string::npos) end = fmtp.size();
    std::string item = fmtp.substr(pos, end - pos);
    size_t eq = item.find('=');
    auto trim = [](std::string s) {
      while (!s.empty() && s.front() == ' ') s.erase(s.begin());
      while (!s.empty() && s.back() == ' ') s.pop_back();
      return s;
    };
    if (eq != std::string::npos)
      params[trim(item.substr(0, eq))] = trim(item.substr(eq + 1));
    pos = end + 1;
  }
  return webrtc::SdpAudioFormat(std::string(c.name), int(c.clock_rate),
                                size_t(c.channels == 0 ? 1 : c.channels),
                                params);
}

void Fail(RtcError& error, ErrorKind kind, const std::string& message) {
  error.kind = kind;
  error.message = rust::String(message);
}

}  // namespace

struct NetEqStream::Impl {
  webrtc::SimulatedClock clock{webrtc::Timestamp::Millis(0)};
  std::unique_ptr<webrtc::NetEq> neteq;
  webrtc::AudioFrame frame;
  webrtc::PushResampler<int16_t> resampler;
  std::vector<int16_t> mono = std::vector<int16_t>(kOutSamples * 6);
  // Decoding call counts by outcome, as acm2's CallStatistics keeps them for
  // the WebRTC leg (legacy getStats' googDecodingNormal/PLC/CNG...): NetEq
  // alone does not count them, so every GetAudio is classified here.
  uint64_t decoding_calls = 0, decoding_normal = 0, decoding_plc = 0,
           decoding_codec_plc = 0, decoding_cng = 0, decoding_plc_cng = 0,
           decoding_muted = 0;

  void CountDecoding(const webrtc::AudioFrame& f, bool muted) {
    ++decoding_calls;
    if (muted) {
      ++decoding_muted;
      return;
    }
    switch (f.speech_type_) {
      case webrtc::AudioFrame::kNormalSpeech: ++decoding_normal; break;
      case webrtc::AudioFrame::kPLC: ++decoding_plc; break;
      case webrtc::AudioFrame::kCodecPLC: ++decoding_codec_plc; break;
      case webrtc::AudioFrame::kCNG: ++decoding_cng; break;
      case webrtc::AudioFrame::kPLCCNG: ++decoding_plc_cng; break;
      case webrtc::AudioFrame::kUndefined: break;
    }
  }

  // The stream's SSRC so far. This NetEq does not notice a new one by
  // itself: a phone that resumes from a new port with a new SSRC and its
  // timestamps restarted behind the old ones had every packet discarded as
  // too old (silence toward the browser). A new SSRC flushes it once it
  // has come twice in a row (a source interleaving two SSRCs does not
  // flush at every packet; the new stream's first packet is lost).
  bool has_ssrc = false;
  uint32_t ssrc = 0, next_ssrc = 0;
  int next_count = 0;

  void TrackSsrc(uint32_t seen) {
    if (!has_ssrc || seen == ssrc) {
      has_ssrc = true;
      ssrc = seen;
      next_count = 0;
      return;
    }
    next_count = seen == next_ssrc ? next_count + 1 : 1;
    next_ssrc = seen;
    if (next_count >= 2) {
      neteq->FlushBuffers();
      ssrc = seen;
      next_count = 0;
    }
  }

  void AdvanceTo(int64_t now_ms) {
    int64_t cur = clock.TimeInMilliseconds();
    if (now_ms > cur) clock.AdvanceTimeMilliseconds(now_ms - cur);
  }
};

NetEqStream::NetEqStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NetEqStream::~NetEqStream() = default;

std::unique_ptr<NetEqStream> new_neteq(const NetEqSettings& settings,
                                       rust::Slice<const CodecSpec> codecs,
                                       int64_t now_ms,
                                       RtcError& error) {
  error.kind = ErrorKind::None;
  auto impl = std::make_unique<NetEqStream::Impl>();
  impl->AdvanceTo(now_ms);
  webrtc::NetEq::Config config;
  config.max_packets_in_buffer = settings.max_packets;
  config.enable_fast_accelerate = settings.fast_accelerate;
  config.min_delay_ms = settings.min_delay_ms;
  config.enable_muted_state = false;
  webrtc::DefaultNetEqFactory factory;
  impl->neteq =
      factory.CreateNetEq(config, CreateDecoderFactory(), &impl->clock);
  if (!impl->neteq) {
    Fail(error, ErrorKind::Internal, "cannot create NetEq");
    return nullptr;
  }
  for (const auto& c : codecs) {
    if (!impl->neteq->RegisterPayloadType(c.payload_type, FormatOf(c))) {
      Fail(error, ErrorKind::Unsupported,
           "NetEq cannot decode " + std::string(c.name) + "/" +
               std::to_string(c.clock_rate));
      return nullptr;
    }
  }
  if (settings.min_delay_ms > 0) impl->neteq->SetMinimumDelay(settings.min_delay_ms);
  return std::make_unique<NetEqStream>(std::move(impl));
}

int32_t NetEqStream::insert(int64_t now_ms,
                            uint16_t seq,
                            uint32_t timestamp,
                            uint32_t ssrc,
                            uint8_t payload_type,
                            bool marker,
                            rust::Slice<const uint8_t> payload) const {
  impl_->AdvanceTo(now_ms);
  impl_->TrackSsrc(ssrc);
  webrtc::RTPHeader header;
  header.sequenceNumber = seq;
  header.timestamp = timestamp;
  header.ssrc = ssrc;
  header.payloadType = payload_type;
  header.markerBit = marker;
  return impl_->neteq->InsertPacket(
      header, rtc::ArrayView<const uint8_t>(payload.data(), payload.size()));
}

FrameInfo NetEqStream::get_audio(int64_t now_ms,
                                 rust::Slice<int16_t> out) const {
  FrameInfo info{0, 0};
  impl_->AdvanceTo(now_ms);
  bool muted = false;
  if (out.size() < kOutSamples ||
      impl_->neteq->GetAudio(&impl_->frame, &muted) != webrtc::NetEq::kOK)
    return info;
  const webrtc::AudioFrame& f = impl_->frame;
  impl_->CountDecoding(f, muted);
  size_t n = f.samples_per_channel_;
  size_t ch = f.num_channels_ == 0 ? 1 : f.num_channels_;
  if (n * ch > impl_->mono.size()) return info;
  const int16_t* src = f.data();
  for (size_t i = 0; i < n; ++i) {
    int32_t acc = 0;
    for (size_t c = 0; c < ch; ++c) acc += muted ? 0 : src[i * ch + c];
    impl_->mono[i] = int16_t(acc / int32_t(ch));
  }
  if (f.sample_rate_hz_ == kOutRate) {
    std::copy(impl_->mono.begin(), impl_->mono.begin() + n, out.begin());
  } else {
    impl_->resampler.InitializeIfNeeded(f.sample_rate_hz_, kOutRate, 1);
    n = size_t(impl_->resampler.Resample(impl_->mono.data(), n, out.data(),
                                         out.size()));
  }
  info.sample_rate = kOutRate;
  info.samples = uint32_t(n);
  return info;
}

NetEqStats NetEqStream::stats() const {
  webrtc::NetEqNetworkStatistics net;
  impl_->neteq->NetworkStatistics(&net);
  auto life = impl_->neteq->GetLifetimeStatistics();
  auto ops = impl_->neteq->GetOperationsAndState();
  NetEqStats s;
  // Rates are Q14 fractions of the output since the last call.
  s.expand_rate = net.expand_rate / 16384.0;
  s.speech_expand_rate = net.speech_expand_rate / 16384.0;
  s.accelerate_rate = net.accelerate_rate / 16384.0;
  s.preemptive_rate = net.preemptive_rate / 16384.0;
  s.secondary_decoded_rate = net.secondary_decoded_rate / 16384.0;
  s.current_buffer_size_ms = net.current_buffer_size_ms;
  s.preferred_buffer_size_ms = net.preferred_buffer_size_ms;
  s.target_delay_ms = impl_->neteq->TargetDelayMs();
  s.total_samples_received = life.total_samples_received;
  s.concealed_samples = life.concealed_samples;
  s.concealment_events = life.concealment_events;
  s.removed_samples_for_acceleration = life.removed_samples_for_acceleration;
  s.inserted_samples_for_deceleration = life.inserted_samples_for_deceleration;
  s.jitter_buffer_delay_ms = life.jitter_buffer_delay_ms;
  s.jitter_buffer_emitted_count = life.jitter_buffer_emitted_count;
  s.packets_discarded = life.packets_discarded;
  s.packets_received = life.jitter_buffer_packets_received;
  s.packet_buffer_flushes = ops.packet_buffer_flushes;
  s.silent_concealed_samples = life.silent_concealed_samples;
  s.jitter_buffer_target_delay_ms = life.jitter_buffer_target_delay_ms;
  s.decoding_calls = impl_->decoding_calls;
  s.decoding_normal = impl_->decoding_normal;
  s.decoding_plc = impl_->decoding_plc;
  s.decoding_codec_plc = impl_->decoding_codec_plc;
  s.decoding_cng = impl_->decoding_cng;
  s.decoding_plc_cng = impl_->decoding_plc_cng;
  s.decoding_muted = impl_->decoding_muted;
  return s;
}

struct RtpEncoder::Impl {
  std::unique_ptr<webrtc::AudioEncoder> encoder;
  webrtc::PushResampler<int16_t> resampler;
  std::vector<int16_t> in;    // one 10 ms frame at the codec's rate, interleaved
  std::vector<int16_t> mono;  // one 10 ms mono frame at the codec's rate
  uint32_t timestamp = 0;
  uint32_t step = 0;  // RTP ticks per 10 ms
  rtc::Buffer buffer;
};

RtpEncoder::RtpEncoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RtpEncoder::~RtpEncoder() = default;

std::unique_ptr<RtpEncoder> new_rtp_encoder(const CodecSpec& codec,
                                            int32_t ptime_ms,
                                            uint32_t initial_timestamp,
                                            RtcError& error) {
  error.kind = ErrorKind::None;
  auto format = FormatOf(codec);
  if (ptime_ms > 0) format.parameters["ptime"] = std::to_string(ptime_ms);
  auto factory = CreateEncoderFactory(OpusOverrides{});
  auto impl = std::make_unique<RtpEncoder::Impl>();
  impl->encoder =
      factory->MakeAudioEncoder(codec.payload_type, format, absl::nullopt);
  if (!impl->encoder) {
    Fail(error, ErrorKind::Unsupported,
         "no encoder for " + std::string(codec.name) + "/" +
             std::to_string(codec.clock_rate));
    return nullptr;
  }
  impl->in.resize(size_t(impl->encoder->SampleRateHz() / 100) *
                  impl->encoder->NumChannels());
  impl->mono.resize(size_t(impl->encoder->SampleRateHz() / 100));
  impl->timestamp = initial_timestamp;
  impl->step = uint32_t(impl->encoder->RtpTimestampRateHz() / 100);
  return std::make_unique<RtpEncoder>(std::move(impl));
}

EncodedInfo RtpEncoder::encode(rust::Slice<const int16_t> pcm,
                               int32_t sample_rate,
                               rust::Vec<uint8_t>& out) const {
  EncodedInfo info{0, 0};
  Impl& s = *impl_;
  if (sample_rate <= 0 || pcm.size() != size_t(sample_rate / 100)) return info;
  int rate = s.encoder->SampleRateHz();
  size_t per_channel = size_t(rate / 100);
  size_t channels = s.encoder->NumChannels();
  std::vector<int16_t>& mono = s.mono;
  if (sample_rate == rate) {
    std::copy(pcm.begin(), pcm.end(), mono.begin());
  } else {
    s.resampler.InitializeIfNeeded(sample_rate, rate, 1);
    s.resampler.Resample(pcm.data(), pcm.size(), mono.data(), mono.size());
  }
  for (size_t i = 0; i < per_channel; ++i)
    for (size_t c = 0; c < channels; ++c) s.in[i * channels + c] = mono[i];
  s.buffer.Clear();
  auto encoded = s.encoder->Encode(s.timestamp, s.in, &s.buffer);
  s.timestamp += s.step;
  if (encoded.encoded_bytes == 0) return info;
  out.clear();
  out.reserve(s.buffer.size());
  for (size_t i = 0; i < s.buffer.size(); ++i) out.push_back(s.buffer.data()[i]);
  info.bytes = uint32_t(encoded.encoded_bytes);
  info.rtp_timestamp = encoded.encoded_timestamp;
  return info;
}

uint32_t RtpEncoder::rtp_clock_rate() const {
  return uint32_t(impl_->encoder->RtpTimestampRateHz());
}

}  // namespace rtcgw
