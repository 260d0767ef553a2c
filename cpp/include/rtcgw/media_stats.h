// The WebRTC legs' audio figures for the stats poller, many calls per
// thread hop.
//
// Why not getStats: a standard getStats costs each call about eight thread
// hops (signaling -> network and worker and back, twice, then the merge),
// and on a 2-core VM those wake-ups cost more than the figures: polling 200
// calls every second cost 5-6% of a core, nearly all of it in futex and
// scheduler time. A batch instead takes one task on the signaling thread,
// which collects every call's voice channel, and one blocking call to the
// worker thread, which reads them all (the same
// VoiceMediaChannel::GetStats that getStats reads). Also: the NetEq rates
// since the previous read, which getStats no longer exposes.
//
// Uses libwebrtc internals (pc/peer_connection_internal.h, the transceiver's
// channel) of this API generation; no libwebrtc type leaves this file.
// Channels cannot go away underneath: a channel is destroyed by a blocking
// call from the signaling thread, which is busy with the batch meanwhile.
#pragma once

#include <memory>
#include <vector>

#include "rust/cxx.h"

namespace rtcgw {

struct MediaStatsCtx;
struct PcState;
class PeerConnection;

class MediaStatsBatch {
 public:
  MediaStatsBatch();
  ~MediaStatsBatch();
  void add(const PeerConnection& pc);
  // Reads every added call (in order; `present` false for one without a
  // voice channel or closed) and hands them to `media_stats_done`.
  // `clear_rates`: NetEq's rates since the previous clearing read (the
  // poller's); false leaves them, and reports them as 0.
  void run(bool clear_rates, rust::Box<MediaStatsCtx> ctx);

 private:
  std::vector<std::shared_ptr<PcState>> calls_;
};

std::unique_ptr<MediaStatsBatch> new_media_stats_batch();

}  // namespace rtcgw
