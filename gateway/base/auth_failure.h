// Why a credential was refused: produced by authentication (policy/), counted by the
// metrics (observe/), which sizes one counter per value.
#pragma once

#include <cstddef>
#include <string_view>

namespace sparkgate::base {

// Each value is a bounded metric label (sparkgate_auth_failures_total{reason}).
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

// The number of AuthFailure values (kNone included).
inline constexpr size_t kAuthFailureCount = static_cast<size_t>(AuthFailure::kBadCertificate) + 1;

// "missing", "malformed", "unknown_token", "expired", "not_yet_valid", "bad_signature",
// "bad_algorithm", "unknown_issuer", "bad_audience", "bad_claims", "bad_certificate"
// ("none" for kNone).
std::string_view auth_failure_label(AuthFailure f);

}  // namespace sparkgate::base
