// JSON Web Token (RFC 7519) bearer credentials: the verification keys of a trusted issuer
// (JwtKeySet) and the verification of one compact JWS token against the configured
// issuers (verify_jwt). Only HS256, RS256 and ES256 are accepted; keys are never taken
// from the token itself (jku, x5u, jwk and x5c headers are ignored).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/jwt_keys.h"
#include "config/config.h"
#include "policy/auth_result.h"

namespace sparkgate::policy {

// The algorithms are base vocabulary (the config loader checks auth.jwt.algorithms).
using base::JwtAlg;
using base::jwt_alg_name;
using base::parse_jwt_alg;

// Strict base64url (RFC 4648 §5) without padding, as used by JWS: only A-Z a-z 0-9 - _,
// no '=', no whitespace, and the unused bits of the last character must be zero.
// Returns nullopt on any violation. Pure function, callable from any thread.
std::optional<std::string> base64url_decode(std::string_view in);

// The verification keys of one issuer: RSA (>= 2048 bits) and EC P-256 public keys, and
// HMAC secrets. Each key has an optional kid and, when it came from a JWKS with an "alg"
// member, a fixed algorithm.
//
// Loading (the add_* methods) is single-threaded, done while the config loads, through
// the key builder of jwt_key_builder.h. Afterwards the set is immutable and shared
// read-only (std::shared_ptr<const base::JwtKeys>); the const methods may then be called
// from any number of threads at once.
class JwtKeySet final : public base::JwtKeys {
 public:
  JwtKeySet();
  ~JwtKeySet() override;  // wipes the HMAC secrets
  JwtKeySet(JwtKeySet&&) noexcept;
  JwtKeySet& operator=(JwtKeySet&&) noexcept;
  JwtKeySet(const JwtKeySet&) = delete;
  JwtKeySet& operator=(const JwtKeySet&) = delete;

  // Adds the public key of a PEM file holding a public key ("BEGIN PUBLIC KEY") or an
  // X.509 certificate (its subject key; the certificate itself is not validated). The key
  // must be RSA of at least 2048 bits or EC on P-256; private keys are refused. `kid` may
  // be empty, which matches any token kid. Returns false and sets `error` (naming the
  // file, never containing key material) on failure; the set is then unchanged.
  bool add_pem_file(const std::string& path, const std::string& kid, std::string& error);

  // Adds the keys of an RFC 7517 JWK Set file, see add_jwks_json.
  bool add_jwks_file(const std::string& path, std::string& error);

  // Adds the keys of an RFC 7517 JWK Set {"keys": [...]}: kty "RSA" (n, e), "EC" (crv
  // "P-256", x, y) and "oct" (k, an HMAC secret). A key with "use" other than "sig", with
  // an "alg" other than HS256/RS256/ES256, of another kty or of another curve is skipped.
  // A supported key that is malformed (bad base64url, point not on the curve, RSA modulus
  // under 2048 bits, alg contradicting kty) is an error, and so is a set with no usable
  // key. `what` names the source in error messages ("jwks /etc/sparkgate/jwks.json").
  // All or nothing: on error (false, `error` set) no key of the set is added.
  bool add_jwks_json(std::string_view json, const std::string& what, std::string& error);

  // Adds an HS256 secret. The config loader refuses empty secrets; an empty secret here
  // never verifies anything. `kid` may be empty (matches any token kid).
  void add_hmac_secret(std::string secret, const std::string& kid);

  // The number of usable keys.
  size_t size() const override;

  // Verifies `signature` (already base64url-decoded) over `signing_input` ("header.payload"
  // as it appeared in the token) with every key that fits: the key type matches `alg`
  // (RSA for RS256, EC P-256 for ES256, a secret for HS256, so an RSA public key can never
  // act as an HMAC secret), the key's own alg (if any) equals `alg`, and, when `kid` is
  // set, the key has that kid or no kid. HMACs are compared in constant time. Thread-safe;
  // leaves the calling thread's OpenSSL error queue empty.
  Verify verify(JwtAlg alg, const std::optional<std::string>& kid, std::string_view signing_input,
                std::string_view signature) const override;

 private:
  struct Key;
  std::vector<Key> keys_;
};

// Verifies a compact JWS bearer token (header.payload.signature) against `issuers` at time
// `now`, and maps its claims to a Principal (method "jwt"):
//   1. at most 16 KiB, exactly three strict base64url parts, header and payload JSON
//      objects (nesting depth capped) — else kMalformed;
//   2. alg must be HS256, RS256 or ES256 (else kBadAlgorithm); a "crit" header is refused;
//   3. iss selects the issuer (missing, not a string or not configured: kUnknownIssuer;
//      the first issuer with that name wins); the issuer must allow alg (kBadAlgorithm;
//      an issuer with no algorithms allows none);
//   4. the signature must verify with a key of that issuer (JwtKeySet::verify) —
//      kBadSignature;
//   5. exp (optional, a number) plus leeway must not be past (kExpired); nbf (optional)
//      minus leeway must not be in the future (kNotYetValid); a non-numeric exp/nbf is
//      kBadClaims;
//   6. when the issuer lists audiences, aud (a string or an array of strings) must contain
//      one of them — kBadAudience;
//   7. user from user_claim (a non-empty string), groups from groups_claim (an array of
//      strings or one string; absent: none), tenant from tenant_claim (a string; absent:
//      empty) — else kBadClaims.
// The message says what was wrong and never contains the token, its signature or its
// raw claims (names taken from the token — iss, kid, alg — are quoted only when short and
// printable). Never throws. Thread-safe: `issuers` and their key sets are only read.
AuthResult verify_jwt(std::string_view token, const std::vector<config::JwtIssuer>& issuers,
                      std::chrono::system_clock::time_point now);

}  // namespace sparkgate::policy
