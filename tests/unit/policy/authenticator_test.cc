#include "policy/authenticator.h"

#include <doctest/doctest.h>

#include "config/config.h"
#include "http2/header_map.h"

using namespace sparkgate;
using policy::AuthFailure;

namespace {

config::Auth tokens_auth() {
  config::Auth a;
  for (auto [token, user] : {std::pair{"alice-token", "alice"}, std::pair{"bob-token", "bob"}}) {
    config::StaticToken t;
    std::string hex = policy::token_hash_hex(token).substr(7);
    for (size_t i = 0; i < hex.size(); i += 2) t.sha256.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    t.principal.user = user;
    t.principal.groups = {"analysts"};
    t.principal.tenant = "acme";
    a.tokens.push_back(t);
  }
  return a;
}

policy::AuthResult auth_with(const config::Auth& a, const std::string& name, const std::string& value,
                             const policy::PeerCertificate* peer = nullptr) {
  http2::HeaderMap h;
  if (!name.empty()) h.add(name, value);
  return policy::authenticate(a, h, peer, std::chrono::system_clock::now());
}

}  // namespace

TEST_CASE("token_hash_hex is sha256: and the hex digest") {
  // printf %s abc | sha256sum
  CHECK(policy::token_hash_hex("abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("static tokens: bearer in authorization or authentication maps to the principal") {
  auto a = tokens_auth();
  auto r = auth_with(a, "authorization", "Bearer alice-token");
  REQUIRE(r.ok());
  CHECK(r.principal.user == "alice");
  CHECK(r.principal.groups == std::vector<std::string>{"analysts"});
  CHECK(r.principal.tenant == "acme");
  CHECK(r.principal.method == base::AuthMethod::kToken);
  CHECK(r.principal.verified());
  // The Scala client's header, and a case-insensitive scheme.
  auto s = auth_with(a, "authentication", "bearer bob-token");
  REQUIRE(s.ok());
  CHECK(s.principal.user == "bob");
}

TEST_CASE("authentication failures say what was wrong without the credential") {
  auto a = tokens_auth();
  auto unknown = auth_with(a, "authorization", "Bearer alice-tokeN");
  CHECK(unknown.failure == AuthFailure::kUnknownToken);
  CHECK(unknown.message.find("alice-tokeN") == std::string::npos);

  auto basic = auth_with(a, "authorization", "Basic YWxpY2U6cHc=");
  CHECK(basic.failure == AuthFailure::kMalformed);
  CHECK(basic.message.find("YWxpY2U6cHc=") == std::string::npos);
  CHECK(basic.message.find("not 'Bearer <token>'") != std::string::npos);

  CHECK(auth_with(a, "authorization", "Bearer ").failure == AuthFailure::kMalformed);
  CHECK(auth_with(a, "authorization", "alice-token").failure == AuthFailure::kMalformed);

  auto missing = auth_with(a, "", "");
  CHECK(missing.failure == AuthFailure::kMissing);
  CHECK(missing.message.find("no credential") != std::string::npos);

  // A JWT-shaped token with no JWT issuer configured is just an unknown token.
  CHECK(auth_with(a, "authorization", "Bearer a.b.c").failure == AuthFailure::kUnknownToken);
  CHECK(policy::auth_failure_label(AuthFailure::kUnknownToken) == "unknown_token");
}

TEST_CASE("anonymous access only without any credential") {
  auto a = tokens_auth();
  a.anonymous = true;
  auto r = auth_with(a, "", "");
  REQUIRE(r.ok());
  CHECK(r.principal.method == base::AuthMethod::kAnonymous);
  CHECK(r.principal.user.empty());
  CHECK_FALSE(r.principal.verified());
  // A wrong credential is still refused.
  CHECK(auth_with(a, "authorization", "Bearer nope").failure == AuthFailure::kUnknownToken);
}

TEST_CASE("client certificates map to user, groups and tenant") {
  config::Auth a;
  a.mtls = config::Mtls{};
  policy::PeerCertificate cert;
  cert.subject_cn = "alice";
  cert.subject_o = "acme";
  cert.subject_ou = {"analysts", "etl"};
  cert.san_dns = {"alice.clients.example.com"};
  cert.san_email = {"alice@example.com"};
  cert.san_uri = {"spiffe://example.com/alice"};

  auto r = auth_with(a, "", "", &cert);
  REQUIRE(r.ok());
  CHECK(r.principal.user == "alice");
  CHECK(r.principal.method == base::AuthMethod::kMtls);
  CHECK(r.principal.groups.empty());  // groups_from not configured
  CHECK(r.principal.tenant.empty());

  a.mtls->groups_from_ou = true;
  a.mtls->tenant_from_o = true;
  for (auto [from, user] : {std::pair{config::CertIdentity::kSanDns, "alice.clients.example.com"},
                            std::pair{config::CertIdentity::kSanEmail, "alice@example.com"},
                            std::pair{config::CertIdentity::kSanUri, "spiffe://example.com/alice"}}) {
    a.mtls->user_from = from;
    auto m = auth_with(a, "", "", &cert);
    REQUIRE(m.ok());
    CHECK(m.principal.user == user);
    CHECK(m.principal.groups == std::vector<std::string>{"analysts", "etl"});
    CHECK(m.principal.tenant == "acme");
  }

  policy::PeerCertificate bare;
  bare.subject_cn = "only-cn";
  a.mtls->user_from = config::CertIdentity::kSanEmail;
  auto bad = auth_with(a, "", "", &bare);
  CHECK(bad.failure == AuthFailure::kBadCertificate);
  CHECK(bad.message.find("san_email") != std::string::npos);

  // No certificate and no token.
  auto none = auth_with(a, "", "");
  CHECK(none.failure == AuthFailure::kMissing);
  CHECK(none.message.find("client certificate") != std::string::npos);
}
