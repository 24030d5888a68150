// The vocabulary shared by the config and authentication for JWT verification keys: the
// algorithms, and the interface of one issuer's key set. The config loader records key
// *specs* (config::JwtKeySpec) and has them turned into a JwtKeys by the builder it is
// given (policy::JwtKeySet, which parses the key material); token verification (policy)
// uses the keys through this interface.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace sparkgate::base {

enum class JwtAlg { kHS256, kRS256, kES256 };

// Exact, case-sensitive JOSE names: "HS256", "RS256", "ES256". Anything else (including
// "none") is nullopt.
std::optional<JwtAlg> parse_jwt_alg(std::string_view name);
std::string_view jwt_alg_name(JwtAlg alg);

// The verification keys of one issuer. Immutable once built, and shared read-only
// (std::shared_ptr<const JwtKeys>); the const methods may be called from any number of
// threads at once.
class JwtKeys {
 public:
  // The outcome of verify().
  enum class Verify {
    kVerified,   // one of the candidate keys verifies the signature
    kNoKey,      // no key fits the token's alg and kid
    kMismatch,   // candidate keys exist, none of them verifies the signature
  };

  virtual ~JwtKeys() = default;

  // The number of usable keys.
  virtual size_t size() const = 0;

  // Verifies `signature` (already base64url-decoded) over `signing_input` ("header.payload"
  // as it appeared in the token) with every key that fits `alg` and, when set, `kid`.
  virtual Verify verify(JwtAlg alg, const std::optional<std::string>& kid, std::string_view signing_input,
                        std::string_view signature) const = 0;
};

}  // namespace sparkgate::base
