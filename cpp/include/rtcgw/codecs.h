// The gateway's audio codec factories.
//
// Debian's tg_owt builtin factories lack Opus, so the gateway builds its own
// from libwebrtc's codec classes: Opus, G.722, PCMU/PCMA (telephone-event,
// CN and RED are added by the voice engine itself). The encoder factory also
// applies the operator's Opus settings (bitrate, complexity, FEC, DTX, frame
// size) on top of what SDP negotiated, to every call's Opus encoder.
#pragma once

#include "api/audio_codecs/audio_decoder_factory.h"
#include "api/audio_codecs/audio_encoder_factory.h"

namespace rtcgw {


struct OpusOverrides {
  int bitrate_bps = 0;   // 0: what SDP/the codec chose
  int complexity = -1;   // -1: libwebrtc default
  bool fec = true;
  bool dtx = false;
  int ptime_ms = 0;      // 0: what SDP chose
};

rtc::scoped_refptr<webrtc::AudioEncoderFactory> CreateEncoderFactory(
    const OpusOverrides& opus);
rtc::scoped_refptr<webrtc::AudioDecoderFactory> CreateDecoderFactory();

}  // namespace rtcgw
