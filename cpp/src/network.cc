#include "rtcgw/network.h"

#include <string>

#include "rtc_base/thread.h"

namespace rtcgw {

FixedNetworkManager::FixedNetworkManager(std::vector<rtc::IPAddress> addresses)
    : addresses_(std::move(addresses)) {}

void FixedNetworkManager::StartUpdating() {
  if (start_count_++ == 0) {
    std::vector<std::unique_ptr<rtc::Network>> list;
    int n = 0;
    for (const auto& ip : addresses_) {
      std::string name = "rtcgw" + std::to_string(n++);
      int prefix = ip.family() == AF_INET6 ? 128 : 32;
      // ADAPTER_TYPE_ETHERNET, not LOOPBACK: a configured loopback address is
      // deliberate and must not be dropped by the allocator's ignore mask.
      auto net = std::make_unique<rtc::Network>(name, name, ip, prefix,
                                                rtc::ADAPTER_TYPE_ETHERNET);
      net->AddIP(rtc::InterfaceAddress(ip));
      list.push_back(std::move(net));
    }
    bool changed = false;
    MergeNetworkList(std::move(list), &changed);
  }
  // Port allocator sessions wait for this signal before gathering.
  rtc::Thread::Current()->PostTask([this] { SignalNetworksChanged(); });
}

void FixedNetworkManager::StopUpdating() {
  if (start_count_ > 0) --start_count_;
}

}  // namespace rtcgw
