// One call's WebRTC leg: a libwebrtc PeerConnection with its audio I/O.
//
// Design notes
// ------------
// Every SDP operation is posted to the signaling thread and completes through
// a Rust callback (sdp_done) carrying the caller's typed context. Non-trickle:
// the local SDP is returned only once ICE gathering is complete (or when
// `ice_gathering_timeout_ms` runs out, with whatever was gathered; with none it
// is a Timeout error). Events (ICE/connection state) reach Rust through
// pc_event on the signaling thread; callbacks never block.
//
// Audio: 10 ms frames through CallAudio's bounded rings (call_audio.h);
// push_audio/pull_audio may be called from any thread.
//
// Ownership: PeerConnection (held by Rust) owns a shared PcState that is also
// the PeerConnectionObserver; tasks in flight keep it alive. Dropping the
// PeerConnection closes the libwebrtc PeerConnection (a blocking call to the
// signaling thread) and unregisters the call's audio from the clock.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "rtcgw/call_audio.h"

#include "rust/cxx.h"

namespace rtcgw {

struct SdpCtx;
struct StatsCtx;
struct AudioCounters;
struct FrameInfo;
struct PcState;

class PeerConnection {
 public:
  explicit PeerConnection(std::shared_ptr<PcState> state);
  ~PeerConnection();

  // Apply a remote offer, answer it, wait for ICE gathering.
  void answer(rust::Str offer, rust::Box<SdpCtx> ctx) const;
  // Create an offer, apply it locally, wait for ICE gathering.
  void offer(rust::Box<SdpCtx> ctx) const;
  // Apply the remote answer to our offer.
  void apply_answer(rust::Str answer, rust::Box<SdpCtx> ctx) const;
  // getStats; `kinds` (comma-separated stats types, empty: all) limits
  // which entries are converted for Rust, the costly part of a poll.
  void get_stats(rust::Str kinds, rust::Box<StatsCtx> ctx) const;
  // One 10 ms mono frame (sample_rate / 100 samples). False: ring was full
  // and the oldest frame was dropped.
  bool push_audio(rust::Slice<const int16_t> pcm, int32_t sample_rate) const;
  // Oldest received 10 ms frame into `out` (at least kMaxFrameSamples
  // long); {0, 0} when none is waiting. Not for concurrent callers.
  FrameInfo pull_audio(rust::Slice<int16_t> out) const;
  AudioCounters audio_counters() const;
  // Queues RFC 4733 digits on the audio sender (after any still queued),
  // on the signaling thread; logs a warning when the remote side negotiated
  // no telephone-event. libwebrtc clamps duration to 40-6000 ms, gap >= 30.
  void insert_dtmf(rust::Str tones, int32_t duration_ms, int32_t gap_ms) const;
  // The clock of the telephone-event libwebrtc sends on and the audio
  // clock beside it (DtmfTap::Clocks).
  std::array<uint32_t, 2> dtmf_clocks() const;
  void close() const;

  // The glue's own state (for MediaStatsBatch), not for Rust.
  const std::shared_ptr<PcState>& state() const { return state_; }

 private:
  std::shared_ptr<PcState> state_;
  mutable PcmFrame rx_scratch_;
  mutable std::atomic<bool> close_requested_{false};
};

}  // namespace rtcgw
