// The outcome of authenticating one request.
#pragma once

#include <string>
#include <string_view>

#include "base/auth_failure.h"
#include "base/principal.h"

namespace sparkgate::policy {

// The refusal reasons are base vocabulary (the metrics count them); policy names them as
// its own.
using base::AuthFailure;
using base::auth_failure_label;

struct AuthResult {
  AuthFailure failure = AuthFailure::kNone;
  base::Principal principal;  // valid when ok()
  // For the client (grpc-message) and the log. Says what was wrong; never contains the
  // credential or any part of it.
  std::string message;

  bool ok() const { return failure == AuthFailure::kNone; }
  static AuthResult fail(AuthFailure f, std::string message) {
    AuthResult r;
    r.failure = f;
    r.message = std::move(message);
    return r;
  }
};

}  // namespace sparkgate::policy
