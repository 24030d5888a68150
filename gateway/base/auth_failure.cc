#include "base/auth_failure.h"

namespace sparkgate::base {

std::string_view auth_failure_label(AuthFailure f) {
  switch (f) {
    case AuthFailure::kNone: return "none";
    case AuthFailure::kMissing: return "missing";
    case AuthFailure::kMalformed: return "malformed";
    case AuthFailure::kUnknownToken: return "unknown_token";
    case AuthFailure::kExpired: return "expired";
    case AuthFailure::kNotYetValid: return "not_yet_valid";
    case AuthFailure::kBadSignature: return "bad_signature";
    case AuthFailure::kBadAlgorithm: return "bad_algorithm";
    case AuthFailure::kUnknownIssuer: return "unknown_issuer";
    case AuthFailure::kBadAudience: return "bad_audience";
    case AuthFailure::kBadClaims: return "bad_claims";
    case AuthFailure::kBadCertificate: return "bad_certificate";
  }
  return "unknown";
}

}  // namespace sparkgate::base
