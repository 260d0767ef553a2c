// The libwebrtc runtime shared by every call of the gateway.
//
// Design notes
// ------------
// Threads (fixed, independent of the number of calls):
//   * network, worker and signaling rtc::Threads, shared by all
//     PeerConnections (worker runs the voice engine, signaling runs SDP
//     operations and observers);
//   * `task_queue_threads` pool threads running every task queue libwebrtc
//     creates per call (task_queue_pool.h);
//   * the audio clock thread (audio_device.h).
// One PeerConnectionFactory with the gateway's codec factories, a clock-only
// ADM, a pull-only mixer, no AudioProcessing on the factory, and a
// FixedNetworkManager so ICE only ever uses the configured addresses. One
// ECDSA DTLS certificate is generated at start and shared by all calls, so
// call setup does not pay for key generation.
//
// Ownership: Rust owns the Runtime through UniquePtr and must drop every
// PeerConnection before it (the Rust wrapper holds an Arc to guarantee that).
#pragma once

#include <memory>

#include "rust/cxx.h"

namespace rtc {
class Thread;
class RTCCertificate;
template <class T>
class scoped_refptr;
}  // namespace rtc
namespace webrtc {
class PeerConnectionFactoryInterface;
}

namespace rtcgw {

struct RuntimeConfig;
struct PcConfig;
struct RtcError;
struct RuntimeCounters;
struct TickSink;
struct EventSink;
class PeerConnection;
class AudioClock;
class ClockAdm;
class LogForwarder;

class Runtime {
 public:
  Runtime();
  ~Runtime();

  std::unique_ptr<PeerConnection> create_peer_connection(
      const PcConfig& config,
      rust::Box<EventSink> events,
      RtcError& error) const;
  RuntimeCounters counters() const;

  struct Impl;

 private:
  friend std::unique_ptr<Runtime> new_runtime(const RuntimeConfig&,
                                               rust::Box<TickSink>,
                                               RtcError&);
  std::unique_ptr<Impl> impl_;
};

std::unique_ptr<Runtime> new_runtime(const RuntimeConfig& config,
                                     rust::Box<TickSink> tick,
                                     RtcError& error);

// Gives the C library's free memory back to the system (glibc's
// malloc_trim): after many calls end, what their PeerConnections freed
// stays in the allocator's arenas, scattered so that no automatic trim
// reaches it (an RSS high-water mark). True when some was released.
bool release_free_memory();

}  // namespace rtcgw
