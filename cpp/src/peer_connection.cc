#include "rtcgw/peer_connection.h"

#include <algorithm>
#include <functional>

#include "api/jsep.h"
#include "api/dtmf_sender_interface.h"
#include "api/stats/rtc_stats_collector_callback.h"
#include "api/stats/rtc_stats_report.h"
#include "api/units/time_delta.h"
#include "rtc_base/logging.h"
#include "rtc_base/thread.h"
#include "pc/session_description.h"
#include "rtcgw/pc_state.h"
#include "rtcgw/src/rtc/sys.rs.h"

namespace rtcgw {
namespace {

ErrorKind KindOf(const webrtc::RTCError& e) {
  switch (e.type()) {
    case webrtc::RTCErrorType::INVALID_PARAMETER:
    case webrtc::RTCErrorType::SYNTAX_ERROR:
    case webrtc::RTCErrorType::INVALID_RANGE:
      return ErrorKind::InvalidSdp;
    case webrtc::RTCErrorType::INVALID_STATE:
    case webrtc::RTCErrorType::INVALID_MODIFICATION:
      return ErrorKind::InvalidState;
    case webrtc::RTCErrorType::UNSUPPORTED_OPERATION:
    case webrtc::RTCErrorType::UNSUPPORTED_PARAMETER:
      return ErrorKind::Unsupported;
    default:
      return ErrorKind::Internal;
  }
}

class RemoteObserver : public webrtc::SetRemoteDescriptionObserverInterface {
 public:
  explicit RemoteObserver(std::function<void(webrtc::RTCError)> done)
      : done_(std::move(done)) {}
  void OnSetRemoteDescriptionComplete(webrtc::RTCError error) override {
    done_(std::move(error));
  }

 private:
  std::function<void(webrtc::RTCError)> done_;
};

class LocalObserver : public webrtc::SetLocalDescriptionObserverInterface {
 public:
  explicit LocalObserver(std::function<void(webrtc::RTCError)> done)
      : done_(std::move(done)) {}
  void OnSetLocalDescriptionComplete(webrtc::RTCError error) override {
    done_(std::move(error));
  }

 private:
  std::function<void(webrtc::RTCError)> done_;
};

class CreateObserver : public webrtc::CreateSessionDescriptionObserver {
 public:
  using Done = std::function<void(webrtc::RTCError,
                                  std::unique_ptr<webrtc::SessionDescriptionInterface>)>;
  explicit CreateObserver(Done done) : done_(std::move(done)) {}
  void OnSuccess(webrtc::SessionDescriptionInterface* desc) override {
    done_(webrtc::RTCError::OK(),
          std::unique_ptr<webrtc::SessionDescriptionInterface>(desc));
  }
  void OnFailure(webrtc::RTCError error) override {
    done_(std::move(error), nullptr);
  }

 private:
  Done done_;
};

// Scalars as numbers: building JSON text here and parsing it back in Rust
// was most of rtcgw's own stats cost.
StatsMember ToMember(const webrtc::RTCStatsMemberInterface& member) {
  using T = webrtc::RTCStatsMemberInterface;
  StatsMember m{rust::String(member.name()), StatsValue::Json, 0, 0, 0.0, {}};
  switch (member.type()) {
    case T::kBool:
      m.value = StatsValue::Bool;
      m.int_value = *member.cast_to<webrtc::RTCStatsMember<bool>>() ? 1 : 0;
      break;
    case T::kInt32:
      m.value = StatsValue::Int;
      m.int_value = *member.cast_to<webrtc::RTCStatsMember<int32_t>>();
      break;
    case T::kInt64:
      m.value = StatsValue::Int;
      m.int_value = *member.cast_to<webrtc::RTCStatsMember<int64_t>>();
      break;
    case T::kUint32:
      m.value = StatsValue::Uint;
      m.uint_value = *member.cast_to<webrtc::RTCStatsMember<uint32_t>>();
      break;
    case T::kUint64:
      m.value = StatsValue::Uint;
      m.uint_value = *member.cast_to<webrtc::RTCStatsMember<uint64_t>>();
      break;
    case T::kDouble:
      m.value = StatsValue::Double;
      m.double_value = *member.cast_to<webrtc::RTCStatsMember<double>>();
      break;
    case T::kString:
      m.value = StatsValue::Text;
      m.text = rust::String(*member.cast_to<webrtc::RTCStatsMember<std::string>>());
      break;
    default:
      m.text = rust::String(member.ValueToJson());
  }
  return m;
}

class StatsCallback : public webrtc::RTCStatsCollectorCallback {
 public:
  StatsCallback(rust::Box<StatsCtx> ctx, std::vector<std::string> kinds)
      : ctx_(std::move(ctx)), kinds_(std::move(kinds)) {}
  void OnStatsDelivered(
      const rtc::scoped_refptr<const webrtc::RTCStatsReport>& report) override {
    rust::Vec<StatsEntry> entries;
    for (const webrtc::RTCStats& stats : *report) {
      if (!kinds_.empty() &&
          std::find(kinds_.begin(), kinds_.end(), stats.type()) == kinds_.end())
        continue;
      StatsEntry entry;
      entry.id = rust::String(stats.id());
      entry.kind = rust::String(stats.type());
      entry.timestamp_us = stats.timestamp_us();
      for (const auto* member : stats.Members()) {
        if (!member->is_defined()) continue;
        entry.members.push_back(ToMember(*member));
      }
      entries.push_back(std::move(entry));
    }
    if (ctx_) stats_done(std::move(*ctx_), std::move(entries));
    ctx_.reset();
  }

 private:
  std::optional<rust::Box<StatsCtx>> ctx_;
  std::vector<std::string> kinds_;
};

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(c));
  return s;
}

}  // namespace

PcState::PcState(rtc::Thread* signaling,
                 rtc::Thread* worker,
                 AudioClock* clock,
                 rust::Box<EventSink> events,
                 uint32_t gather_timeout_ms,
                 int min_delay_ms,
                 uint32_t tx_frames,
                 uint32_t rx_frames)
    : signaling(signaling),
      worker(worker),
      clock(clock),
      events(std::move(events)),
      gather_timeout_ms(gather_timeout_ms),
      min_delay_ms(min_delay_ms),
      audio(std::make_shared<CallAudio>(tx_frames, rx_frames)) {}

PcState::~PcState() = default;

void PcState::Attach(rtc::scoped_refptr<webrtc::PeerConnectionInterface> p) {
  pc = std::move(p);
  clock->Add(audio);
  dtmf_tap = rtc::make_ref_counted<DtmfTap>(weak_from_this());
}

void PcState::RefreshTelephoneEvents() {
  const auto* local = pc ? pc->local_description() : nullptr;
  if (!local) return;
  std::vector<std::pair<int, int>> events;
  int audio_clock = 0;
  for (const auto& content : local->description()->contents()) {
    const auto* audio = content.media_description()
                            ? content.media_description()->as_audio()
                            : nullptr;
    if (!audio) continue;
    for (const auto& codec : audio->codecs()) {
      const std::string name = Lower(codec.name);
      if (name == "telephone-event")
        events.emplace_back(codec.id, codec.clockrate);
      else if (audio_clock == 0 && name != "red" && name != "cn" &&
               name != "rtx")
        audio_clock = codec.clockrate;  // the main codec's (Opus: 48000)
    }
  }
  dtmf_tap->SetTelephoneEvents(std::move(events), audio_clock);
}

void PcState::Fail(ErrorKind kind, const std::string& message) {
  gathering = false;
  if (!pending) return;
  SdpResult r;
  r.error.kind = kind;
  r.error.message = rust::String(message);
  sdp_done(std::move(*pending), std::move(r));
  pending.reset();
}

void PcState::Succeed(std::string sdp) {
  gathering = false;
  if (!pending) return;
  SdpResult r;
  r.error.kind = ErrorKind::None;
  r.sdp = rust::String(sdp);
  sdp_done(std::move(*pending), std::move(r));
  pending.reset();
}

void PcState::SetLocalAndGather(
    std::unique_ptr<webrtc::SessionDescriptionInterface> desc) {
  auto self = shared_from_this();
  pc->SetLocalDescription(
      std::move(desc),
      rtc::make_ref_counted<LocalObserver>([self](webrtc::RTCError e) {
        if (!e.ok()) return self->Fail(KindOf(e), e.message());
        self->RefreshTelephoneEvents();
        self->gathering = true;
        uint64_t seq = self->pending_seq;
        self->MaybeFinishGathering(false);
        if (self->gathering) {
          self->signaling->PostDelayedTask(
              [self, seq] {
                if (self->pending_seq == seq) self->MaybeFinishGathering(true);
              },
              webrtc::TimeDelta::Millis(self->gather_timeout_ms));
        }
      }));
}

void PcState::MaybeFinishGathering(bool timed_out) {
  if (!gathering || closed || !pc) return;
  bool complete = pc->ice_gathering_state() ==
                  webrtc::PeerConnectionInterface::kIceGatheringComplete;
  if (!complete && !timed_out) return;
  const auto* local = pc->local_description();
  std::string sdp;
  if (!local || !local->ToString(&sdp))
    return Fail(ErrorKind::Internal, "no local description");
  size_t candidates = 0;
  for (size_t i = 0; i < local->number_of_mediasections(); ++i)
    candidates += local->candidates(i)->count();
  if (!complete) {
    if (candidates == 0)
      return Fail(ErrorKind::Timeout, "ICE gathering timed out with no candidate");
    RTC_LOG(LS_WARNING) << "ICE gathering timed out; answering with "
                        << candidates << " candidate(s)";
  }
  Succeed(std::move(sdp));
}

void PcState::OnIceGatheringChange(
    webrtc::PeerConnectionInterface::IceGatheringState) {
  MaybeFinishGathering(false);
}

void PcState::OnIceConnectionChange(
    webrtc::PeerConnectionInterface::IceConnectionState state) {
  PcEvent ev;
  ev.kind = PcEventKind::IceConnection;
  ev.state = rust::String(Lower(std::string(
      webrtc::PeerConnectionInterface::AsString(state))));
  pc_event(*events, std::move(ev));
}

void PcState::OnConnectionChange(
    webrtc::PeerConnectionInterface::PeerConnectionState state) {
  PcEvent ev;
  ev.kind = PcEventKind::Connection;
  ev.state = rust::String(Lower(std::string(
      webrtc::PeerConnectionInterface::AsString(state))));
  pc_event(*events, std::move(ev));
}

void PcState::OnTrack(
    rtc::scoped_refptr<webrtc::RtpTransceiverInterface> transceiver) {
  auto track = transceiver->receiver()->track();
  if (!track || track->kind() != webrtc::MediaStreamTrackInterface::kAudioKind)
    return;
  if (min_delay_ms > 0) {
    transceiver->receiver()->SetJitterBufferMinimumDelay(min_delay_ms / 1000.0);
    RTC_LOG(LS_INFO) << "rtcgw: NetEQ minimum delay " << min_delay_ms
                     << " ms set on receiver " << transceiver->receiver()->id();
  }
  // Received RFC 4733 events go to Rust instead of NetEq's tone generator.
  transceiver->receiver()->SetDepacketizerToDecoderFrameTransformer(dtmf_tap);
  auto audio_track = rtc::scoped_refptr<webrtc::AudioTrackInterface>(
      static_cast<webrtc::AudioTrackInterface*>(track.get()));
  audio_track->AddSink(audio.get());
  remote_tracks.push_back(audio_track);
}

void PcState::CloseOnSignaling() {
  if (closed) return;
  closed = true;
  for (auto& t : remote_tracks) t->RemoveSink(audio.get());
  remote_tracks.clear();
  clock->Remove(audio.get());
  if (pc) pc->Close();
  Fail(ErrorKind::InvalidState, "peer connection closed");
  pc = nullptr;
}

PeerConnection::PeerConnection(std::shared_ptr<PcState> state)
    : state_(std::move(state)) {}

PeerConnection::~PeerConnection() { close(); }

namespace {

// Posts `body` to the signaling thread as the PeerConnection's one SDP
// operation. The operation's context is claimed first: a second operation
// while one is under way, or one on a closed connection, is answered with an
// InvalidState error instead of running.
void PostSdpOp(std::shared_ptr<PcState> s,
               rust::Box<SdpCtx> ctx,
               std::function<void(const std::shared_ptr<PcState>&)> body) {
  auto holder = std::make_shared<rust::Box<SdpCtx>>(std::move(ctx));
  rtc::Thread* signaling = s->signaling;
  signaling->PostTask([s = std::move(s), holder, body = std::move(body)] {
    if (s->pending) {
      SdpResult r;
      r.error.kind = ErrorKind::InvalidState;
      r.error.message = "another SDP operation is under way";
      return sdp_done(std::move(*holder), std::move(r));
    }
    s->pending.emplace(std::move(*holder));
    ++s->pending_seq;
    if (s->closed || !s->pc)
      return s->Fail(ErrorKind::InvalidState, "peer connection closed");
    body(s);
  });
}

// Parses remote SDP; on failure answers the pending operation and returns
// null.
std::unique_ptr<webrtc::SessionDescriptionInterface> ParseRemote(
    PcState& s,
    webrtc::SdpType type,
    const std::string& text) {
  webrtc::SdpParseError e;
  auto desc = webrtc::CreateSessionDescription(type, text, &e);
  if (!desc) {
    s.Fail(ErrorKind::InvalidSdp,
           e.description +
               (e.line.empty() ? std::string() : " (line: " + e.line + ")"));
  }
  return desc;
}

// Observer for CreateOffer/CreateAnswer: apply locally, then gather.
rtc::scoped_refptr<CreateObserver> SetLocalWhenCreated(
    std::shared_ptr<PcState> s) {
  return rtc::make_ref_counted<CreateObserver>(
      [s](webrtc::RTCError e,
          std::unique_ptr<webrtc::SessionDescriptionInterface> d) {
        if (!e.ok()) return s->Fail(KindOf(e), e.message());
        if (s->closed) return s->Fail(ErrorKind::InvalidState, "closed");
        // One telephone-event, at the main codec's clock (Opus: 48000),
        // in our offers (the peer's answer, whose codecs we send with,
        // can then only have that one) and answers (rtcgw_proto::sdp::
        // dtmf).
        std::string text;
        if (d->ToString(&text)) {
          rust::String matched = match_telephone_events(text);
          if (!matched.empty()) {
            webrtc::SdpParseError error;
            auto edited = webrtc::CreateSessionDescription(
                d->GetType(), std::string(matched), &error);
            if (edited) d = std::move(edited);
          }
        }
        s->SetLocalAndGather(std::move(d));
      });
}

}  // namespace

void PeerConnection::answer(rust::Str offer, rust::Box<SdpCtx> ctx) const {
  // What libwebrtc sends with, as the answerer, comes from the offer's
  // codecs: one telephone-event there, at the main codec's clock.
  rust::String matched = match_telephone_events(offer);
  std::string text = matched.empty() ? std::string(offer) : std::string(matched);
  PostSdpOp(state_, std::move(ctx), [text = std::move(text)](const auto& s) {
    auto desc = ParseRemote(*s, webrtc::SdpType::kOffer, text);
    if (!desc) return;
    s->pc->SetRemoteDescription(
        std::move(desc),
        rtc::make_ref_counted<RemoteObserver>([s](webrtc::RTCError e) {
          if (!e.ok()) return s->Fail(KindOf(e), e.message());
          if (s->closed) return s->Fail(ErrorKind::InvalidState, "closed");
          s->pc->CreateAnswer(
              SetLocalWhenCreated(s).get(),
              webrtc::PeerConnectionInterface::RTCOfferAnswerOptions());
        }));
  });
}

void PeerConnection::offer(rust::Box<SdpCtx> ctx) const {
  PostSdpOp(state_, std::move(ctx), [](const auto& s) {
    s->pc->CreateOffer(
        SetLocalWhenCreated(s).get(),
        webrtc::PeerConnectionInterface::RTCOfferAnswerOptions());
  });
}

void PeerConnection::apply_answer(rust::Str answer,
                                  rust::Box<SdpCtx> ctx) const {
  PostSdpOp(state_, std::move(ctx), [text = std::string(answer)](const auto& s) {
    auto desc = ParseRemote(*s, webrtc::SdpType::kAnswer, text);
    if (!desc) return;
    s->pc->SetRemoteDescription(
        std::move(desc),
        rtc::make_ref_counted<RemoteObserver>([s](webrtc::RTCError e) {
          if (!e.ok()) return s->Fail(KindOf(e), e.message());
          s->Succeed(std::string());
        }));
  });
}

void PeerConnection::get_stats(rust::Str kinds,
                               rust::Box<StatsCtx> ctx) const {
  auto s = state_;
  auto holder = std::make_shared<rust::Box<StatsCtx>>(std::move(ctx));
  std::vector<std::string> wanted;
  std::string list(kinds);
  for (size_t start = 0; start < list.size();) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    if (end > start) wanted.push_back(list.substr(start, end - start));
    start = end + 1;
  }
  s->signaling->PostTask([s, holder, wanted = std::move(wanted)]() mutable {
    auto cb = rtc::make_ref_counted<StatsCallback>(std::move(*holder),
                                                   std::move(wanted));
    if (s->closed || !s->pc) {
      cb->OnStatsDelivered(webrtc::RTCStatsReport::Create(webrtc::Timestamp::Zero()));
      return;
    }
    s->pc->GetStats(cb.get());
  });
}

bool PeerConnection::push_audio(rust::Slice<const int16_t> pcm,
                                int32_t sample_rate) const {
  return state_->audio->PushTx(pcm.data(), pcm.size(), sample_rate);
}

FrameInfo PeerConnection::pull_audio(rust::Slice<int16_t> out) const {
  FrameInfo info{0, 0};
  if (out.size() < kMaxFrameSamples || !state_->audio->PopRx(&rx_scratch_))
    return info;
  std::copy(rx_scratch_.data.begin(),
            rx_scratch_.data.begin() + rx_scratch_.samples, out.begin());
  info.sample_rate = uint32_t(rx_scratch_.sample_rate);
  info.samples = uint32_t(rx_scratch_.samples);
  return info;
}

void PeerConnection::insert_dtmf(rust::Str tones,
                                 int32_t duration_ms,
                                 int32_t gap_ms) const {
  auto s = state_;
  s->signaling->PostTask([s, text = std::string(tones), duration_ms, gap_ms] {
    if (s->closed || !s->pc) return;
    for (const auto& sender : s->pc->GetSenders()) {
      if (sender->media_type() != cricket::MEDIA_TYPE_AUDIO) continue;
      auto dtmf = sender->GetDtmfSender();
      // InsertDtmf replaces the queue: keep what is still to be sent.
      if (dtmf && dtmf->CanInsertDtmf() &&
          dtmf->InsertDtmf(dtmf->tones() + text, duration_ms, gap_ms))
        return;
      break;
    }
    RTC_LOG(LS_WARNING) << "rtcgw: DTMF '" << text
                        << "' not sent: no telephone-event negotiated";
  });
}

std::array<uint32_t, 2> PeerConnection::dtmf_clocks() const {
  if (!state_->dtmf_tap) return {0, 0};
  auto [event, audio] = state_->dtmf_tap->Clocks();
  return {uint32_t(event), uint32_t(audio)};
}

AudioCounters PeerConnection::audio_counters() const {
  const CallAudio& a = *state_->audio;
  AudioCounters c;
  c.tx_frames = a.tx_frames.load();
  c.tx_underruns = a.tx_underruns.load();
  c.tx_overflows = a.tx_overflows.load();
  c.tx_invalid = a.tx_invalid.load();
  c.rx_frames = a.rx_frames.load();
  c.rx_overflows = a.rx_overflows.load();
  return c;
}

void PeerConnection::close() const {
  // Closing once is enough; later calls (and the destructor) do not block.
  if (close_requested_.exchange(true)) return;
  auto s = state_;
  if (s->signaling->IsCurrent()) return s->CloseOnSignaling();
  s->signaling->BlockingCall([s] { s->CloseOnSignaling(); });
}

}  // namespace rtcgw
