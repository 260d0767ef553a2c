#include "rtcgw/runtime.h"

#include <malloc.h>

#include <string>

#include "api/audio/audio_mixer.h"
#include "api/create_peerconnection_factory.h"
#include "api/peer_connection_interface.h"
#include "api/rtc_event_log/rtc_event_log_factory.h"
#include "api/task_queue/default_task_queue_factory.h"
#include "api/task_queue/task_queue_factory.h"
#include "media/engine/webrtc_media_engine.h"
#include "p2p/base/basic_packet_socket_factory.h"
#include "p2p/client/basic_port_allocator.h"
#include "rtc_base/logging.h"
#include "rtc_base/rtc_certificate_generator.h"
#include "rtc_base/ssl_adapter.h"
#include "rtc_base/thread.h"
#include "rtcgw/audio_device.h"
#include "rtcgw/codecs.h"
#include "rtcgw/load_codecs.h"
#include "rtcgw/network.h"
#include "rtcgw/pc_state.h"
#include "rtcgw/peer_connection.h"
#include "rtcgw/src/rtc/sys.rs.h"
#include "rtcgw/task_queue_pool.h"

namespace rtcgw {

// Forwards libwebrtc's log lines to Rust's tracing.
class LogForwarder : public rtc::LogSink {
 public:
  void OnLogMessage(const std::string& message) override {
    OnLogMessage(message, rtc::LS_INFO);
  }
  void OnLogMessage(const std::string& message,
                    rtc::LoggingSeverity severity) override {
    std::string line = message;
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
      line.pop_back();
    webrtc_log(static_cast<int>(severity), line);
  }
};

struct Runtime::Impl {
  std::unique_ptr<LogForwarder> log;
  std::unique_ptr<rtc::Thread> network, worker, signaling;
  rtc::scoped_refptr<ClockAdm> adm;
  std::unique_ptr<AudioClock> clock;
  // Each call's port allocator gathers on these (owned by the factory's
  // context, and by us: both outlive every peer connection).
  rtc::NetworkManager* networks = nullptr;
  std::unique_ptr<rtc::BasicPacketSocketFactory> sockets;
  rtc::scoped_refptr<webrtc::PeerConnectionFactoryInterface> factory;
  rtc::scoped_refptr<rtc::RTCCertificate> certificate;
  uint16_t min_port = 0, max_port = 0;

  ~Impl() {
    clock.reset();
    factory = nullptr;
    sockets.reset();
    signaling.reset();
    worker.reset();
    network.reset();
    if (log) rtc::LogMessage::RemoveLogToStream(log.get());
  }
};

Runtime::Runtime() : impl_(std::make_unique<Impl>()) {}
Runtime::~Runtime() = default;

std::unique_ptr<Runtime> new_runtime(const RuntimeConfig& config,
                                     rust::Box<TickSink> tick,
                                     RtcError& error) {
  auto fail = [&](ErrorKind kind, std::string message) {
    error.kind = kind;
    error.message = rust::String(message);
    return nullptr;
  };
  error.kind = ErrorKind::None;

  std::vector<rtc::IPAddress> addresses;
  for (const auto& a : config.addresses) {
    rtc::IPAddress ip;
    if (!rtc::IPFromString(std::string(a), &ip))
      return fail(ErrorKind::Internal, "not an IP address: " + std::string(a));
    addresses.push_back(ip);
  }
  if (addresses.empty())
    return fail(ErrorKind::Internal, "no media address configured");

  auto rt = std::unique_ptr<Runtime>(new Runtime());
  Runtime::Impl& s = *rt->impl_;
  s.min_port = config.min_port;
  s.max_port = config.max_port;

  rtc::LogMessage::LogToDebug(rtc::LS_NONE);  // no stderr: logs go to Rust
  rtc::LogMessage::SetLogToStderr(false);
  if (config.log_severity < rtc::LS_NONE) {
    s.log = std::make_unique<LogForwarder>();
    rtc::LogMessage::AddLogToStream(
        s.log.get(), static_cast<rtc::LoggingSeverity>(config.log_severity));
  }
  rtc::InitializeSSL();

  s.network = rtc::Thread::CreateWithSocketServer();
  s.network->SetName("rtcgw-net", nullptr);
  s.worker = rtc::Thread::Create();
  s.worker->SetName("rtcgw-worker", nullptr);
  s.signaling = rtc::Thread::Create();
  s.signaling->SetName("rtcgw-signal", nullptr);
  if (!s.network->Start() || !s.worker->Start() || !s.signaling->Start())
    return fail(ErrorKind::Internal, "cannot start libwebrtc threads");

  s.adm = rtc::make_ref_counted<ClockAdm>();
  // 0 threads: libwebrtc's stock factory (one OS thread per task queue),
  // kept for measuring against the pool.
  std::unique_ptr<webrtc::TaskQueueFactory> task_queues;
  if (config.task_queue_threads == 0)
    task_queues = webrtc::CreateDefaultTaskQueueFactory();
  else
    task_queues =
        std::make_unique<PooledTaskQueueFactory>(config.task_queue_threads);

  OpusOverrides opus;
  opus.bitrate_bps = config.opus.bitrate_bps;
  opus.complexity = config.opus.complexity;
  opus.fec = config.opus.fec;
  opus.dtx = config.opus.dtx;
  opus.ptime_ms = config.opus.ptime_ms;
  opus.match_bandwidth = config.opus.match_bandwidth;

  cricket::MediaEngineDependencies media;
  media.task_queue_factory = task_queues.get();
  media.adm = s.adm;
  if (config.replay_pcm.empty()) {
    media.audio_encoder_factory = CreateEncoderFactory(opus);
  } else {
    std::vector<int16_t> pcm(config.replay_pcm.begin(), config.replay_pcm.end());
    media.audio_encoder_factory = CreateReplayEncoderFactory(opus, pcm, config.replay_rate);
  }
  media.audio_decoder_factory = config.silent_decoders
                                    ? CreateSilentDecoderFactory()
                                    : CreateDecoderFactory();
  media.audio_mixer = rtc::make_ref_counted<PullMixer>();
  media.audio_processing = nullptr;  // per-call APM comes with bridging

  webrtc::PeerConnectionFactoryDependencies deps;
  deps.network_thread = s.network.get();
  deps.worker_thread = s.worker.get();
  deps.signaling_thread = s.signaling.get();
  deps.task_queue_factory = std::move(task_queues);
  deps.call_factory = webrtc::CreateCallFactory();
  deps.event_log_factory = std::make_unique<webrtc::RtcEventLogFactory>(
      deps.task_queue_factory.get());
  auto networks = std::make_unique<FixedNetworkManager>(addresses);
  s.networks = networks.get();
  deps.network_manager = std::move(networks);
  s.sockets =
      std::make_unique<rtc::BasicPacketSocketFactory>(s.network->socketserver());
  deps.media_engine = cricket::CreateMediaEngine(std::move(media));

  s.factory = webrtc::CreateModularPeerConnectionFactory(std::move(deps));
  if (!s.factory)
    return fail(ErrorKind::Internal, "CreateModularPeerConnectionFactory failed");

  webrtc::PeerConnectionFactoryInterface::Options options;
  options.network_ignore_mask = 0;  // configured addresses may be loopback
  s.factory->SetOptions(options);

  s.certificate = rtc::RTCCertificateGenerator::GenerateCertificate(
      rtc::KeyParams::ECDSA(rtc::EC_NIST_P256), absl::nullopt);
  if (!s.certificate)
    return fail(ErrorKind::Internal, "cannot generate the DTLS certificate");

  // The clock starts last: everything it touches exists now.
  auto sink = std::make_shared<rust::Box<TickSink>>(std::move(tick));
  s.clock = std::make_unique<AudioClock>(s.adm, [sink] { audio_tick(**sink); });
  return rt;
}

std::unique_ptr<PeerConnection> Runtime::create_peer_connection(
    const PcConfig& config,
    rust::Box<EventSink> events,
    RtcError& error) const {
  error.kind = ErrorKind::None;
  webrtc::PeerConnectionInterface::RTCConfiguration rtc_config;
  rtc_config.sdp_semantics = webrtc::SdpSemantics::kUnifiedPlan;
  rtc_config.bundle_policy =
      webrtc::PeerConnectionInterface::kBundlePolicyMaxBundle;
  rtc_config.rtcp_mux_policy =
      webrtc::PeerConnectionInterface::kRtcpMuxPolicyRequire;
  rtc_config.tcp_candidate_policy =
      webrtc::PeerConnectionInterface::kTcpCandidatePolicyDisabled;
  rtc_config.continual_gathering_policy =
      webrtc::PeerConnectionInterface::GATHER_ONCE;
  rtc_config.certificates.push_back(impl_->certificate);
  rtc_config.set_min_port(impl_->min_port);
  rtc_config.set_max_port(impl_->max_port);
  rtc_config.port_allocator_config.flags =
      cricket::PORTALLOCATOR_DISABLE_TCP | cricket::PORTALLOCATOR_DISABLE_RELAY;
  rtc_config.audio_jitter_buffer_max_packets = config.jitter_buffer_max_packets;
  rtc_config.audio_jitter_buffer_fast_accelerate =
      config.jitter_buffer_fast_accelerate;
  rtc_config.audio_jitter_buffer_min_delay_ms =
      config.jitter_buffer_min_delay_ms;

  auto state = std::make_shared<PcState>(
      impl_->signaling.get(), impl_->worker.get(), impl_->clock.get(),
      std::move(events),
      config.ice_gathering_timeout_ms, config.jitter_buffer_min_delay_ms,
      config.tx_ring_frames,
      config.rx_ring_frames);
  webrtc::PeerConnectionDependencies pc_deps(state.get());
  // Our own allocator (as the factory would make it) so that its step delay
  // can be set: libwebrtc paces the allocation phases (UDP, relay, TCP) 50 ms
  // apart even when relay and TCP are disabled, so a non-trickle answer
  // waited 100 ms for phases that gather nothing. Host candidates only: no
  // pacing is needed.
  auto allocator = std::make_unique<cricket::BasicPortAllocator>(
      impl_->networks, impl_->sockets.get());
  allocator->SetPortRange(rtc_config.port_allocator_config.min_port,
                          rtc_config.port_allocator_config.max_port);
  allocator->set_flags(rtc_config.port_allocator_config.flags);
  cricket::PortAllocator* allocator_ptr = allocator.get();
  pc_deps.allocator = std::move(allocator);
  auto pc = impl_->factory->CreatePeerConnectionOrError(rtc_config,
                                                        std::move(pc_deps));
  if (!pc.ok()) {
    error.kind = ErrorKind::Internal;
    error.message = rust::String(std::string(pc.error().message()));
    return nullptr;
  }
  // The peer connection set kMinimumStepDelay as it initialized the
  // allocator (on the network thread); gathering starts only with the
  // local description, so this comes first.
  impl_->network->BlockingCall(
      [allocator_ptr] { allocator_ptr->set_step_delay(0); });
  auto track = impl_->factory->CreateAudioTrack("rtcgw-audio",
                                                state->audio->source().get());
  auto sender = pc.value()->AddTrack(track, {"rtcgw"});
  if (!sender.ok()) {
    pc.value()->Close();
    error.kind = ErrorKind::Internal;
    error.message = rust::String(std::string(sender.error().message()));
    return nullptr;
  }
  state->Attach(pc.MoveValue());
  return std::make_unique<PeerConnection>(state);
}

RuntimeCounters Runtime::counters() const {
  RuntimeCounters c;
  c.ticks = impl_->clock->ticks();
  c.late_ticks = impl_->clock->late_ticks();
  return c;
}

bool release_free_memory() {
  return malloc_trim(0) != 0;
}

}  // namespace rtcgw
