#include "rtcgw/srtp.h"

#include <mutex>
#include <string>

#include <srtp2/srtp.h>

#include "rtcgw/src/rtc/sys.rs.h"

namespace rtcgw {

struct SrtpStream::Impl {
  srtp_t session = nullptr;
  ~Impl() {
    if (session) srtp_dealloc(session);
  }
};

SrtpStream::SrtpStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SrtpStream::~SrtpStream() = default;

std::unique_ptr<SrtpStream> new_srtp(rust::Str suite,
                                     rust::Slice<const uint8_t> key,
                                     bool inbound,
                                     RtcError& error) {
  static std::once_flag init;
  // libwebrtc initialises libsrtp too; srtp_init is idempotent.
  std::call_once(init, [] { srtp_init(); });
  error.kind = ErrorKind::None;
  srtp_policy_t policy{};
  std::string s(suite);
  if (s == "AES_CM_128_HMAC_SHA1_80") {
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy.rtp);
  } else if (s == "AES_CM_128_HMAC_SHA1_32") {
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&policy.rtp);
  } else {
    error.kind = ErrorKind::Unsupported;
    error.message = rust::String("unsupported SRTP suite " + s);
    return nullptr;
  }
  // RFC 4568 section 6.2.1: SRTCP always uses the 80-bit tag.
  srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy.rtcp);
  if (key.size() != 30) {
    error.kind = ErrorKind::InvalidSdp;
    error.message = rust::String("SRTP master key||salt must be 30 bytes, got " +
                                 std::to_string(key.size()));
    return nullptr;
  }
  std::vector<uint8_t> k(key.begin(), key.end());
  policy.key = k.data();
  policy.ssrc.type = inbound ? ssrc_any_inbound : ssrc_any_outbound;
  policy.window_size = 1024;
  policy.allow_repeat_tx = 1;
  auto impl = std::make_unique<SrtpStream::Impl>();
  srtp_err_status_t st = srtp_create(&impl->session, &policy);
  if (st != srtp_err_status_ok) {
    error.kind = ErrorKind::Internal;
    error.message = rust::String("srtp_create failed: " + std::to_string(int(st)));
    return nullptr;
  }
  return std::make_unique<SrtpStream>(std::move(impl));
}

namespace {
template <typename F>
bool Apply(rust::Vec<uint8_t>& packet, size_t grow, F f) {
  int len = int(packet.size());
  for (size_t i = 0; i < grow; ++i) packet.push_back(0);
  srtp_err_status_t st = f(packet.data(), &len);
  if (st != srtp_err_status_ok || len < 0) {
    packet.truncate(packet.size() - grow);
    return false;
  }
  packet.truncate(size_t(len));
  return true;
}
}  // namespace

bool SrtpStream::protect_rtp(rust::Vec<uint8_t>& p) const {
  return Apply(p, SRTP_MAX_TRAILER_LEN, [&](uint8_t* d, int* l) {
    return srtp_protect(impl_->session, d, l);
  });
}
bool SrtpStream::unprotect_rtp(rust::Vec<uint8_t>& p) const {
  return Apply(p, 0, [&](uint8_t* d, int* l) {
    return srtp_unprotect(impl_->session, d, l);
  });
}
bool SrtpStream::protect_rtcp(rust::Vec<uint8_t>& p) const {
  return Apply(p, SRTP_MAX_TRAILER_LEN + 4, [&](uint8_t* d, int* l) {
    return srtp_protect_rtcp(impl_->session, d, l);
  });
}
bool SrtpStream::unprotect_rtcp(rust::Vec<uint8_t>& p) const {
  return Apply(p, 0, [&](uint8_t* d, int* l) {
    return srtp_unprotect_rtcp(impl_->session, d, l);
  });
}

}  // namespace rtcgw
