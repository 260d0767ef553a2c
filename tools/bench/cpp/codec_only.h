// Codec-only reference costs for benchmarks: what one call's codec work
// costs without any of the gateway around it, measured in the same run as the
// gateway so that the two can be compared as a ratio.
#pragma once

#include <cstdint>

namespace rtcgw {

// Encodes `frames` 10 ms frames of a 48 kHz mono tone with libwebrtc's Opus
// encoder (WebRTC defaults: 20 ms packets, 32 kbit/s) and decodes every
// packet with its Opus decoder. Returns the elapsed thread CPU time in ns.
uint64_t bench_opus_roundtrip(uint32_t frames);

// One bridged call's codec work (WebRTC Opus leg <-> PCMU leg) for `frames`
// 10 ms frames: the Opus roundtrip above plus a G.711 mu-law encode (20 ms
// packets) and decode of 10 ms of an 8 kHz tone. Resampling between 48 and
// 8 kHz, which the gateway also does, is left out: this is the codecs alone.
// Returns the elapsed thread CPU time in ns.
uint64_t bench_bridge_codecs(uint32_t frames);

}  // namespace rtcgw
