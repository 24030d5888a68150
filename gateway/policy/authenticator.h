// Authentication of one request from its headers (authorization / authentication:
// Bearer <token>) and its connection's client certificate.
//
//   bearer token → a static token (SHA-256, constant-time compare) or a JWT
//   no bearer    → the mTLS certificate, when auth.mtls is configured
//   nothing      → anonymous when allowed, else UNAUTHENTICATED
//
// Pure function of its inputs; thread-safe.
#pragma once

#include <chrono>

#include "config/config.h"
#include "http2/header_map.h"
#include "policy/auth_result.h"
#include "policy/peer_certificate.h"

namespace sparkgate::policy {

class RemoteKeys;

// Only call with auth.enabled(). `peer` is the connection's verified client certificate
// or null. An anonymous principal has an empty user: the caller fills in the request's
// own user_id once it has read it.
// `remote` holds the keys of issuers with discovery/jwks_uri (null: such issuers have
// no keys).
AuthResult authenticate(const config::Auth& auth, const http2::HeaderMap& headers, const PeerCertificate* peer,
                        std::chrono::system_clock::time_point now, const RemoteKeys* remote = nullptr);

// The principal a verified client certificate stands for under `mtls`, or a
// kBadCertificate failure when the configured field is absent.
AuthResult principal_from_certificate(const config::Mtls& mtls, const PeerCertificate& peer);

// "sha256:<hex>" of a token: what the config stores. Used by tests and the docs' recipe.
std::string token_hash_hex(std::string_view token);

}  // namespace sparkgate::policy
