// A network address as the config writes it: host (a name, an IPv4 or an IPv6 literal)
// and port. Shared by the config, the Redis client and the upstream pools.
#pragma once

#include <cstdint>
#include <string>

namespace sparkgate::base {

struct Endpoint {
  std::string host;
  uint16_t port = 0;

  // "host:port", or "[v6]:port" for an IPv6 literal.
  std::string to_string() const;
};

}  // namespace sparkgate::base
