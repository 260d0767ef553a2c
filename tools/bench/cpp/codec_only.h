// Codec-only reference costs for benchmarks: what one call's codec work
// costs without any of the gateway around it, measured in the same run as the
// gateway so that the two can be compared as a ratio.
#pragma once

#include <cstdint>

#include "rust/cxx.h"

namespace rtcgw {

// Encodes `frames` 10 ms frames of a 48 kHz mono tone with libwebrtc's Opus
// encoder (WebRTC defaults: 20 ms packets, 32 kbit/s) and decodes every
// packet with its Opus decoder. Returns the elapsed thread CPU time in ns.
uint64_t bench_opus_roundtrip(uint32_t frames);

struct CeilingOpus;

// One bridged call's codec work (WebRTC Opus leg <-> PCMU leg) on recorded
// speech `pcm` (mono, `rate` Hz, whole 10 ms frames), once through: per 20 ms
// an Opus decode of what a browser sends (speech encoded beforehand with
// WebRTC's defaults), a G.711 mu-law encode and decode at 8 kHz, and an Opus
// encode of the speech at 48 kHz with the gateway's settings `opus`.
// Resampling, which the gateway also does, is left out: this is the codecs
// alone. Returns the elapsed thread CPU time in ns (0: a codec failed).
uint64_t bench_bridge_codecs(rust::Slice<const int16_t> pcm, uint32_t rate,
                             const CeilingOpus& opus);

}  // namespace rtcgw
