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

}  // namespace rtcgw
