// The legacy (plain RTP) leg's audio processing, with libwebrtc's own parts:
// a NetEq per received stream (the same adaptive jitter buffer, PLC,
// accelerate/expand and clock-drift handling the WebRTC leg gets) and an
// AudioEncoder per sent stream, both from the gateway's codec factories.
//
// Design notes
// ------------
// Sans-IO in spirit: Rust owns the sockets and the RTP/RTCP logic and passes
// the time in. Each NetEqStream runs on its own webrtc::SimulatedClock that
// Rust advances with every call (`now_ms`), so the same code runs in real
// time in the gateway and in virtual time in tests.
// Audio crosses as 10 ms mono frames at 48 kHz in both directions; the
// resampling to and from codec rates happens here (PushResampler).
// Threads: an object is used by one Rust task at a time (Send, not Sync).
#pragma once

#include <cstdint>
#include <memory>

#include "rust/cxx.h"

namespace rtcgw {

struct CodecSpec;
struct NetEqSettings;
struct NetEqStats;
struct FrameInfo;
struct RtcError;
struct EncodedInfo;

class NetEqStream {
 public:
  struct Impl;
  explicit NetEqStream(std::unique_ptr<Impl> impl);
  ~NetEqStream();

  // 0: inserted; -1: NetEq refused it (unknown payload type, bad payload).
  int32_t insert(int64_t now_ms,
                 uint16_t seq,
                 uint32_t timestamp,
                 uint32_t ssrc,
                 uint8_t payload_type,
                 bool marker,
                 rust::Slice<const uint8_t> payload) const;
  // 10 ms at 48 kHz mono into `out` (>= 480 samples).
  FrameInfo get_audio(int64_t now_ms, rust::Slice<int16_t> out) const;
  NetEqStats stats() const;

 private:
  std::unique_ptr<Impl> impl_;
};

std::unique_ptr<NetEqStream> new_neteq(const NetEqSettings& settings,
                                       rust::Slice<const CodecSpec> codecs,
                                       int64_t now_ms,
                                       RtcError& error);

class RtpEncoder {
 public:
  struct Impl;
  explicit RtpEncoder(std::unique_ptr<Impl> impl);
  ~RtpEncoder();

  // Feeds 10 ms of mono audio at `sample_rate` (resampled to the codec's
  // rate here). When a packet is complete (after ptime), writes its payload
  // to `out` and returns its size and RTP timestamp; size 0 while
  // accumulating or when the frame is not 10 ms.
  EncodedInfo encode(rust::Slice<const int16_t> pcm,
                     int32_t sample_rate,
                     rust::Vec<uint8_t>& out) const;
  // RTP clock rate (8000 for G.722, as RFC 3551 says).
  uint32_t rtp_clock_rate() const;

 private:
  std::unique_ptr<Impl> impl_;
};

std::unique_ptr<RtpEncoder> new_rtp_encoder(const CodecSpec& codec,
                                            int32_t ptime_ms,
                                            uint32_t initial_timestamp,
                                            RtcError& error);

}  // namespace rtcgw
