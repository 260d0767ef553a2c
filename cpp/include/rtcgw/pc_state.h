// Internal to the C++ glue: the shared state behind one PeerConnection, and
// its PeerConnectionObserver. Everything except the audio rings is touched on
// the signaling thread only.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/peer_connection_interface.h"
#include "rtcgw/audio_device.h"
#include "rtcgw/call_audio.h"
#include "rtcgw/dtmf_tap.h"
#include "rust/cxx.h"

namespace rtcgw {

struct SdpCtx;
struct EventSink;
enum class ErrorKind : uint8_t;

struct PcState : public webrtc::PeerConnectionObserver,
                 public std::enable_shared_from_this<PcState> {
  PcState(rtc::Thread* signaling,
          rtc::Thread* worker,
          AudioClock* clock,
          rust::Box<EventSink> events,
          uint32_t gather_timeout_ms,
          int min_delay_ms,
          uint32_t tx_frames,
          uint32_t rx_frames);
  ~PcState() override;

  void Attach(rtc::scoped_refptr<webrtc::PeerConnectionInterface> pc);

  // Signaling thread.
  void Fail(ErrorKind kind, const std::string& message);
  void Succeed(std::string sdp);
  void SetLocalAndGather(std::unique_ptr<webrtc::SessionDescriptionInterface>);
  void MaybeFinishGathering(bool timed_out);
  void CloseOnSignaling();
  // Tells the DTMF tap the telephone-event payload types of the local
  // description (the types the remote side sends to us).
  void RefreshTelephoneEvents();

  // PeerConnectionObserver (signaling thread).
  void OnSignalingChange(
      webrtc::PeerConnectionInterface::SignalingState) override {}
  void OnDataChannel(
      rtc::scoped_refptr<webrtc::DataChannelInterface>) override {}
  void OnIceGatheringChange(
      webrtc::PeerConnectionInterface::IceGatheringState state) override;
  void OnIceCandidate(const webrtc::IceCandidateInterface*) override {}
  void OnIceConnectionChange(
      webrtc::PeerConnectionInterface::IceConnectionState state) override;
  void OnConnectionChange(
      webrtc::PeerConnectionInterface::PeerConnectionState state) override;
  void OnTrack(
      rtc::scoped_refptr<webrtc::RtpTransceiverInterface> transceiver) override;

  rtc::Thread* signaling;
  rtc::Thread* worker;  // the voice engine's (media stats are read there)
  AudioClock* clock;
  rust::Box<EventSink> events;
  uint32_t gather_timeout_ms;
  // NetEQ minimum delay, applied per receiver in OnTrack: this libwebrtc
  // generation plumbs RTCConfiguration::audio_jitter_buffer_min_delay_ms to
  // ChannelReceive but never applies it (it calls SetMinimumDelay(0)).
  int min_delay_ms;
  std::shared_ptr<CallAudio> audio;
  rtc::scoped_refptr<webrtc::PeerConnectionInterface> pc;
  std::vector<rtc::scoped_refptr<webrtc::AudioTrackInterface>> remote_tracks;
  // Takes received RFC 4733 events out of the audio (made in Attach).
  rtc::scoped_refptr<DtmfTap> dtmf_tap;
  std::optional<rust::Box<SdpCtx>> pending;  // the SDP operation under way
  uint64_t pending_seq = 0;                  // tells timeouts apart
  bool gathering = false;
  bool closed = false;
};

}  // namespace rtcgw
