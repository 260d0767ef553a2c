// Codec factories for load generators (rtcgw-bench), never the gateway's.
//
// A benchmark's callers must cost far less than the gateway they load, yet
// send what browsers send: recorded speech in Opus. The
// replay encoder factory encodes the speech once, when the runtime is made,
// and every call's "encoder" hands out those packets in turn (each call from
// its own starting point). The silent decoder factory gives Opus decoders
// that only tell NetEq how long each packet lasts and play silence: NetEq,
// SRTP and the stats run as usual, the decoding cost is gone. A load client
// keeps real decoders on a sample of its calls to check what they hear.
#pragma once

#include <cstdint>
#include <vector>

#include "api/audio_codecs/audio_decoder_factory.h"
#include "api/audio_codecs/audio_encoder_factory.h"
#include "rtcgw/codecs.h"

namespace rtcgw {

// `pcm` at `rate` Hz, mono (resampled to 48 kHz); encoded with `opus` (the runtime's overrides) as a
// browser would send it on a clean network.
// Offers what CreateEncoderFactory offers.
rtc::scoped_refptr<webrtc::AudioEncoderFactory> CreateReplayEncoderFactory(
    const OpusOverrides& opus,
    const std::vector<int16_t>& pcm,
    int rate);

// `pcm` (mono, whole 10 ms frames) from `from_hz` to `to_hz` with
// libwebrtc's sinc resampler, as the gateway's own audio path resamples.
std::vector<int16_t> Resample(const std::vector<int16_t>& pcm, int from_hz,
                              int to_hz);

// Opus decoders that play silence; G.722 and G.711 decode for real.
rtc::scoped_refptr<webrtc::AudioDecoderFactory> CreateSilentDecoderFactory();

}  // namespace rtcgw
