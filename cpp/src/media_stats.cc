#include "rtcgw/media_stats.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <optional>
#include <utility>

#include "media/base/media_channel.h"
#include "pc/channel_interface.h"
#include "pc/peer_connection_internal.h"
#include "pc/peer_connection_proxy.h"
#include "pc/rtp_transceiver.h"
#include "rtc_base/thread.h"
#include "rtcgw/pc_state.h"
#include "rtcgw/peer_connection.h"
#include "rtcgw/src/rtc/sys.rs.h"

namespace rtcgw {
namespace {

// The call's audio channel; signaling thread. The PeerConnection behind the
// proxy that CreatePeerConnectionOrError returns is a PeerConnectionInternal.
cricket::VoiceMediaChannel* VoiceChannel(PcState& s) {
  if (s.closed || !s.pc) return nullptr;
  auto* proxy = static_cast<
      webrtc::PeerConnectionProxyWithInternal<webrtc::PeerConnectionInterface>*>(
      s.pc.get());
  auto* pc = static_cast<webrtc::PeerConnectionInternal*>(proxy->internal());
  for (const auto& t : pc->GetTransceiversInternal()) {
    auto* tr = t->internal();
    if (tr->media_type() != cricket::MEDIA_TYPE_AUDIO || tr->stopped()) continue;
    if (auto* ch = tr->channel()) return ch->voice_media_channel();
  }
  return nullptr;
}

std::string CodecName(const cricket::RtpCodecParametersMap& codecs,
                      const absl::optional<int>& pt) {
  if (!pt) return {};
  auto it = codecs.find(*pt);
  if (it == codecs.end()) return {};
  std::string name = it->second.name;
  if (it->second.clock_rate) {
    name.push_back('/');
    name.append(std::to_string(*it->second.clock_rate));
  }
  return name;
}

MediaStats Convert(const cricket::VoiceMediaInfo& info) {
  MediaStats m{};
  m.present = true;
  m.rtt_ms = -1.0;
  if (!info.receivers.empty()) {
    const auto& r = info.receivers.front();
    m.has_inbound = true;
    m.codec = rust::String(CodecName(info.receive_codecs, r.codec_payload_type));
    m.packets_received = static_cast<uint64_t>(std::max(r.packets_rcvd, 0));
    m.bytes_received = static_cast<uint64_t>(std::max<int64_t>(r.payload_bytes_rcvd, 0));
    m.packets_lost = r.packets_lost;
    m.packets_discarded = r.packets_discarded;
    m.jitter_ms = r.jitter_ms;
    m.jitter_buffer_delay_s = r.jitter_buffer_delay_seconds;
    m.jitter_buffer_target_delay_s = r.jitter_buffer_target_delay_seconds.value_or(0.0);
    m.jitter_buffer_emitted_count = r.jitter_buffer_emitted_count;
    m.total_samples_received = r.total_samples_received;
    m.concealed_samples = r.concealed_samples;
    m.silent_concealed_samples = r.silent_concealed_samples;
    m.concealment_events = r.concealment_events;
    m.inserted_samples_for_deceleration = r.inserted_samples_for_deceleration;
    m.removed_samples_for_acceleration = r.removed_samples_for_acceleration;
    m.expand_rate = r.expand_rate;
    m.speech_expand_rate = r.speech_expand_rate;
    m.accelerate_rate = r.accelerate_rate;
    m.preemptive_expand_rate = r.preemptive_expand_rate;
    m.current_buffer_ms = static_cast<uint32_t>(std::max(r.jitter_buffer_ms, 0));
    m.preferred_buffer_ms = static_cast<uint32_t>(std::max(r.jitter_buffer_preferred_ms, 0));
    m.jitter_buffer_flushes = r.jitter_buffer_flushes;
    m.decoding_calls = static_cast<uint64_t>(std::max(r.decoding_calls_to_neteq, 0));
    m.decoding_normal = static_cast<uint64_t>(std::max(r.decoding_normal, 0));
    m.decoding_plc = static_cast<uint64_t>(std::max(r.decoding_plc, 0));
    m.decoding_codec_plc = static_cast<uint64_t>(std::max(r.decoding_codec_plc, 0));
    m.decoding_cng = static_cast<uint64_t>(std::max(r.decoding_cng, 0));
    m.decoding_plc_cng = static_cast<uint64_t>(std::max(r.decoding_plc_cng, 0));
    m.decoding_muted_output = static_cast<uint64_t>(std::max(r.decoding_muted_output, 0));
  }
  if (!info.senders.empty()) {
    const auto& s = info.senders.front();
    m.has_outbound = true;
    if (m.codec.empty())
      m.codec = rust::String(CodecName(info.send_codecs, s.codec_payload_type));
    m.packets_sent = static_cast<uint64_t>(std::max(s.packets_sent, 0));
    m.bytes_sent = static_cast<uint64_t>(std::max<int64_t>(s.payload_bytes_sent, 0));
    if (!s.report_block_datas.empty()) {
      const auto& block = s.report_block_datas.front();
      m.has_remote = true;
      m.remote_packets_lost = block.report_block().packets_lost;
      m.remote_fraction_lost = block.report_block().fraction_lost / 256.0;
      int rate = 0;
      if (s.codec_payload_type) {
        auto it = info.send_codecs.find(*s.codec_payload_type);
        if (it != info.send_codecs.end() && it->second.clock_rate)
          rate = *it->second.clock_rate;
      }
      // RTP timestamp units; 0 when the rate is unknown.
      m.remote_jitter_ms = rate > 0 ? block.report_block().jitter * 1000.0 / rate : 0.0;
      if (block.has_rtt()) m.rtt_ms = static_cast<double>(block.last_rtt_ms());
    }
  }
  return m;
}

// Shared by the tasks of one run (one per signaling thread). Each task
// writes its own calls' slots; the last one to finish (the atomic count
// orders their writes before its read) hands all of them to Rust.
struct Run {
  explicit Run(size_t n, size_t groups, rust::Box<MediaStatsCtx> ctx)
      : results(n), remaining(groups), ctx(std::move(ctx)) {}
  std::vector<MediaStats> results;
  std::atomic<size_t> remaining;
  rust::Box<MediaStatsCtx> ctx;

  void GroupDone() {
    if (remaining.fetch_sub(1) != 1) return;
    rust::Vec<MediaStats> out;
    out.reserve(results.size());
    for (auto& r : results) out.push_back(std::move(r));
    media_stats_done(std::move(ctx), std::move(out));
  }
};

}  // namespace

MediaStatsBatch::MediaStatsBatch() = default;
MediaStatsBatch::~MediaStatsBatch() = default;

void MediaStatsBatch::add(const PeerConnection& pc) { calls_.push_back(pc.state()); }

void MediaStatsBatch::run(bool clear_rates, rust::Box<MediaStatsCtx> ctx) {
  // Calls by (signaling, worker) thread pair: one runtime, one group.
  std::map<std::pair<rtc::Thread*, rtc::Thread*>, std::vector<size_t>> groups;
  for (size_t i = 0; i < calls_.size(); ++i)
    groups[{calls_[i]->signaling, calls_[i]->worker}].push_back(i);
  auto run = std::make_shared<Run>(calls_.size(), std::max<size_t>(groups.size(), 1),
                                   std::move(ctx));
  if (groups.empty()) return run->GroupDone();
  for (auto& [threads, idx] : groups) {
    auto calls = std::make_shared<std::vector<std::shared_ptr<PcState>>>();
    for (size_t i : idx) calls->push_back(calls_[i]);
    rtc::Thread* worker = threads.second;
    threads.first->PostTask([run, calls, idx = std::move(idx), worker, clear_rates] {
      std::vector<cricket::VoiceMediaChannel*> channels;
      channels.reserve(calls->size());
      for (auto& s : *calls) channels.push_back(VoiceChannel(*s));
      std::vector<std::optional<cricket::VoiceMediaInfo>> infos(channels.size());
      worker->BlockingCall([&] {
        for (size_t k = 0; k < channels.size(); ++k) {
          if (!channels[k]) continue;
          cricket::VoiceMediaInfo info;
          if (channels[k]->GetStats(&info, clear_rates)) infos[k] = std::move(info);
        }
      });
      for (size_t k = 0; k < infos.size(); ++k) {
        if (infos[k]) run->results[idx[k]] = Convert(*infos[k]);
      }
      run->GroupDone();
    });
  }
}

std::unique_ptr<MediaStatsBatch> new_media_stats_batch() {
  return std::make_unique<MediaStatsBatch>();
}

}  // namespace rtcgw
