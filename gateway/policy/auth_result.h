// The outcome of authenticating one request.
#pragma once

#include <string>
#include <string_view>

#include "base/principal.h"

namespace sparkgate::policy {

// Why a credential was refused. Each value is a bounded metric label
// (sparkgate_auth_failures_total{reason}).
enum class AuthFailure {
  kNone,
  kMissing,          // no credential at all, and anonymous access is off
  kMalformed,        // not "Bearer <token>", not a JWT, bad base64/JSON, ...
  kUnknownToken,     // a static token that matches no configured hash
  kExpired,          // exp (plus leeway) is in the past
  kNotYetValid,      // nbf (minus leeway) is in the future
  kBadSignature,     // the signature does not verify with any key of the issuer
  kBadAlgorithm,     // alg is none, unknown, or not allowed for the issuer
  kUnknownIssuer,    // iss names no configured issuer
  kBadAudience,      // aud does not contain a configured audience
  kBadClaims,        // the user claim is missing or a claim has the wrong type
  kBadCertificate,   // mTLS: the client certificate carries no usable identity
};

// "missing", "malformed", "unknown_token", "expired", "not_yet_valid", "bad_signature",
// "bad_algorithm", "unknown_issuer", "bad_audience", "bad_claims", "bad_certificate".
std::string_view auth_failure_label(AuthFailure f);

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
