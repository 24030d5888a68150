// Who is asking: the verified identity of a request, produced by authentication and
// used by identity enforcement, quotas, routing and the session registry.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sparkgate::base {

// How a principal was established.
enum class AuthMethod {
  kNone,       // no auth configured: the user is the request's own, unverified user_id
  kAnonymous,  // auth.anonymous: allow, and the request carried no credential
  kToken,      // a static bearer token
  kJwt,        // a verified JWT
  kMtls,       // the client certificate
};

// "none", "anonymous", "token", "jwt", "mtls": the names logs show.
constexpr std::string_view auth_method_name(AuthMethod m) {
  switch (m) {
    case AuthMethod::kNone: return "none";
    case AuthMethod::kAnonymous: return "anonymous";
    case AuthMethod::kToken: return "token";
    case AuthMethod::kJwt: return "jwt";
    case AuthMethod::kMtls: return "mtls";
  }
  return "none";
}

struct Principal {
  std::string user;
  std::vector<std::string> groups;
  std::string tenant;
  AuthMethod method = AuthMethod::kNone;

  // True when the user comes from a credential the gateway checked.
  bool verified() const {
    return method == AuthMethod::kToken || method == AuthMethod::kJwt || method == AuthMethod::kMtls;
  }
};

}  // namespace sparkgate::base
