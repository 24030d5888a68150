#include "policy/authenticator.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <cctype>

#include "policy/jwt.h"

namespace sparkgate::policy {

namespace {

std::string sha256(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return std::string(reinterpret_cast<char*>(digest), sizeof(digest));
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

// The credential header: authorization (PySpark, Go) or authentication (the Scala client).
std::optional<std::string_view> credential_header(const http2::HeaderMap& headers, std::string_view& name) {
  if (auto v = headers.find("authorization")) {
    name = "authorization";
    return v;
  }
  if (auto v = headers.find("authentication")) {
    name = "authentication";
    return v;
  }
  return std::nullopt;
}

bool looks_like_jwt(std::string_view token) {
  auto first = token.find('.');
  return first != std::string_view::npos && token.find('.', first + 1) != std::string_view::npos;
}

}  // namespace

std::string token_hash_hex(std::string_view token) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned char c : sha256(token)) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

AuthResult principal_from_certificate(const config::Mtls& mtls, const PeerCertificate& peer) {
  AuthResult r;
  const std::vector<std::string>* list = nullptr;
  switch (mtls.user_from) {
    case config::CertIdentity::kSubjectCn: r.principal.user = peer.subject_cn; break;
    case config::CertIdentity::kSanDns: list = &peer.san_dns; break;
    case config::CertIdentity::kSanEmail: list = &peer.san_email; break;
    case config::CertIdentity::kSanUri: list = &peer.san_uri; break;
  }
  if (list && !list->empty()) r.principal.user = list->front();
  if (r.principal.user.empty()) {
    return AuthResult::fail(AuthFailure::kBadCertificate,
                            "the client certificate has no " + std::string(config::cert_identity_name(mtls.user_from)) +
                                " to take the user from (auth.mtls.user_from)");
  }
  if (mtls.groups_from_ou) r.principal.groups = peer.subject_ou;
  if (mtls.tenant_from_o) r.principal.tenant = peer.subject_o;
  r.principal.method = base::AuthMethod::kMtls;
  return r;
}

AuthResult authenticate(const config::Auth& auth, const http2::HeaderMap& headers, const PeerCertificate* peer,
                        std::chrono::system_clock::time_point now, const RemoteKeys* remote) {
  std::string_view header_name;
  if (const auto header = credential_header(headers, header_name)) {
    std::string_view value = *header;
    auto space = value.find(' ');
    if (space == std::string_view::npos || !iequals(value.substr(0, space), "bearer")) {
      return AuthResult::fail(AuthFailure::kMalformed,
                              "the " + std::string(header_name) + " header is not 'Bearer <token>'");
    }
    std::string_view token = value.substr(space + 1);
    while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
    if (token.empty()) {
      return AuthResult::fail(AuthFailure::kMalformed, "the " + std::string(header_name) + " header has an empty token");
    }
    if (!auth.tokens.empty()) {
      // Every configured hash is compared, in constant time, whatever matches: the time
      // taken says nothing about which entry (if any) matched.
      const std::string digest = sha256(token);
      const config::StaticToken* match = nullptr;
      for (const auto& t : auth.tokens) {
        if (CRYPTO_memcmp(t.sha256.data(), digest.data(), digest.size()) == 0) match = &t;
      }
      if (match) {
        AuthResult r;
        r.principal = match->principal;
        r.principal.method = base::AuthMethod::kToken;
        return r;
      }
    }
    if (!auth.jwt.empty() && looks_like_jwt(token)) return verify_jwt(token, auth.jwt, now, remote);
    if (auth.tokens.empty() && auth.jwt.empty()) {
      return AuthResult::fail(AuthFailure::kUnknownToken,
                              "bearer tokens are not accepted here: authenticate with a client certificate");
    }
    return AuthResult::fail(AuthFailure::kUnknownToken, "the bearer token is not valid (unknown token)");
  }
  if (auth.mtls && peer != nullptr) return principal_from_certificate(*auth.mtls, *peer);
  if (auth.anonymous) {
    AuthResult r;
    r.principal.method = base::AuthMethod::kAnonymous;
    return r;
  }
  std::string how;
  if (!auth.tokens.empty() || !auth.jwt.empty()) how = "send 'authorization: Bearer <token>' (token=... in the sc:// URL)";
  if (auth.mtls) how += std::string(how.empty() ? "" : " or ") + "present a client certificate";
  return AuthResult::fail(AuthFailure::kMissing, "no credential: " + how);
}

}  // namespace sparkgate::policy
