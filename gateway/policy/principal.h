// Who is asking: the verified identity of a request, produced by authentication and
// used by identity enforcement, quotas, routing and the session registry.
#pragma once

#include <string>
#include <vector>

namespace sparkgate::policy {

struct Principal {
  std::string user;
  std::vector<std::string> groups;
  std::string tenant;
  // How the principal was established, for logs and metrics: "token", "jwt", "mtls",
  // "anonymous" (auth.anonymous: allow, no credential), or "none" (no auth configured:
  // the user is the request's own, unverified user_id).
  std::string method = "none";

  // True when the user comes from a credential the gateway checked.
  bool verified() const { return method == "token" || method == "jwt" || method == "mtls"; }
};

}  // namespace sparkgate::policy
