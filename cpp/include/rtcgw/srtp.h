// SDES-SRTP (RFC 4568 keys, RFC 3711 protection) for the legacy leg, with
// libsrtp2 (Debian's, the same library libwebrtc links). One SrtpStream per
// direction: inbound unprotects what arrives, outbound protects what leaves.
// Used by one Rust task at a time.
#pragma once

#include <cstdint>
#include <memory>

#include "rust/cxx.h"

namespace rtcgw {

struct RtcError;

class SrtpStream {
 public:
  struct Impl;
  explicit SrtpStream(std::unique_ptr<Impl> impl);
  ~SrtpStream();

  // In place; false when libsrtp refuses (authentication, replay).
  bool protect_rtp(rust::Vec<uint8_t>& packet) const;
  bool unprotect_rtp(rust::Vec<uint8_t>& packet) const;
  bool protect_rtcp(rust::Vec<uint8_t>& packet) const;
  bool unprotect_rtcp(rust::Vec<uint8_t>& packet) const;

 private:
  std::unique_ptr<Impl> impl_;
};

// `suite`: AES_CM_128_HMAC_SHA1_80 or AES_CM_128_HMAC_SHA1_32; `key`: the
// 30-byte master key || salt from the SDP's inline: parameter.
std::unique_ptr<SrtpStream> new_srtp(rust::Str suite,
                                     rust::Slice<const uint8_t> key,
                                     bool inbound,
                                     RtcError& error);

}  // namespace rtcgw
