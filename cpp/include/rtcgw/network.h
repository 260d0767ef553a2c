// A NetworkManager that offers only the configured local addresses.
//
// ICE host candidates are gathered per network; by handing the port allocator
// exactly the networks the operator configured (instead of enumerating the
// host's interfaces and filtering candidate strings afterwards), the answer
// carries candidates on those addresses only. Lives on the network thread.
#pragma once

#include <vector>

#include "rtc_base/ip_address.h"
#include "rtc_base/network.h"

namespace rtcgw {

class FixedNetworkManager : public rtc::NetworkManagerBase {
 public:
  explicit FixedNetworkManager(std::vector<rtc::IPAddress> addresses);

  void StartUpdating() override;
  void StopUpdating() override;
  std::vector<const rtc::Network*> GetAnyAddressNetworks() override {
    return {};
  }

 private:
  std::vector<rtc::IPAddress> addresses_;
  int start_count_ = 0;
};

}  // namespace rtcgw
