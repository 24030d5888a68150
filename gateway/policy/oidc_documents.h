// The two documents of an OpenID Connect key source, parsed from untrusted bytes: the
// discovery document (OpenID Connect Discovery 1.0 §3, only `issuer` and `jwks_uri` are
// used) and the JWK Set it points to (RFC 7517). Also the https:// URLs they name.
//
// Pure functions of their inputs: no I/O, callable from any thread, never throw.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/https_url.h"
#include "policy/jwt.h"

namespace sparkgate::policy {

// Real discovery documents are 2-8 KiB and real JWK Sets a few KiB; 1 MiB leaves room
// for IdPs that publish dozens of keys and certificates, and bounds a hostile answer.
inline constexpr size_t kMaxOidcDocumentBytes = 1024 * 1024;

// The URL vocabulary lives in base/ (the config loader checks URLs too).
using base::discovery_url;
using base::HttpsUrl;
using base::parse_https_url;

// Parses a discovery document. It must be at most kMaxOidcDocumentBytes, a JSON object,
// with "issuer" a string exactly equal to `expected_issuer` (§4.3: no normalisation)
// and "jwks_uri" an https URL. Returns the jwks_uri, or nullopt with `error` saying what
// was wrong (the document's own values are quoted only when short and printable).
std::optional<std::string> parse_discovery(std::string_view body, std::string_view expected_issuer,
                                           std::string& error);

// A fetched JWK Set: its usable signing keys (RSA >= 2048 bits and EC P-256, never
// "oct" secrets: an HMAC key published at a URL is no secret) and their key ids.
struct FetchedJwks {
  std::shared_ptr<const JwtKeySet> keys;  // never null, never empty
  std::vector<std::string> kids;          // in document order; "" for a key without kid
};

// Parses a JWK Set fetched from `source` (named in errors). At most
// kMaxOidcDocumentBytes; otherwise the rules of JwtKeySet::add_jwks_json, without oct
// keys. nullopt with `error` on failure.
std::optional<FetchedJwks> parse_fetched_jwks(std::string_view body, const std::string& source, std::string& error);

}  // namespace sparkgate::policy
