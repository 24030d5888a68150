// OIDC key sources: URL and discovery-document parsing, fetched JWK Sets, the refresh
// schedule (rate limit and backoff), the HTTPS client's failures that need no
// certificate (refused, stalled, not TLS) and JwksCache's on-demand refresh rate limit.
#include "test_jwk.h"
#include <doctest/doctest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <boost/asio.hpp>
#include <memory>
#include <thread>

#include "policy/https_get.h"
#include "policy/jwks_cache.h"
#include "policy/jwt.h"
#include "policy/oidc_documents.h"
#include "policy/refresh_schedule.h"

using namespace sparkgate;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

using sparkgate::testing::b64url;

// An RS256 JWK of a fresh 2048-bit key (generated once).
std::string rsa_jwk(const std::string& kid) {
  static EVP_PKEY* pkey = EVP_RSA_gen(2048);
  REQUIRE(pkey);
  return sparkgate::testing::rsa_public_jwk(pkey, kid);
}

const std::string kIssuer = "https://idp.example.com/realms/data";

std::string discovery_doc(const std::string& issuer, const std::string& jwks_uri_member) {
  return R"({"issuer":")" + issuer + R"(",)" + jwks_uri_member +
         R"("authorization_endpoint":"https://idp.example.com/auth","id_token_signing_alg_values_supported":["RS256"]})";
}

}  // namespace

TEST_CASE("parse_https_url: https only, host, port, target") {
  std::string error;
  auto u = policy::parse_https_url("https://idp.example.com/realms/data/certs?x=1", error);
  REQUIRE(u);
  CHECK(u->host == "idp.example.com");
  CHECK(u->port == 443);
  CHECK(u->target == "/realms/data/certs?x=1");
  CHECK(u->authority() == "idp.example.com");
  u = policy::parse_https_url("https://localhost:8443", error);
  REQUIRE(u);
  CHECK(u->port == 8443);
  CHECK(u->target == "/");
  CHECK(u->authority() == "localhost:8443");
  u = policy::parse_https_url("https://[::1]:9443/jwks", error);
  REQUIRE(u);
  CHECK(u->host == "::1");
  CHECK(u->authority() == "[::1]:9443");

  for (const char* bad : {"http://idp.example.com/certs", "ftp://idp/x", "idp.example.com/certs", "https://",
                          "https:///path", "https://user:pw@idp/x", "https://idp/x#frag", "https://idp:0/x",
                          "https://idp:99999/x", "https://idp:abc/x", "https://id p/x", "https://idp/\x01",
                          "https://[::1/x", "https://idp_name/x"}) {
    CAPTURE(bad);
    error.clear();
    CHECK_FALSE(policy::parse_https_url(bad, error));
    CHECK_FALSE(error.empty());
  }
  policy::parse_https_url("http://idp.example.com/certs", error);
  CHECK(error.find("not https://") != std::string::npos);
}

TEST_CASE("discovery_url appends the well-known path once") {
  CHECK(policy::discovery_url("https://idp/realms/a") == "https://idp/realms/a/.well-known/openid-configuration");
  CHECK(policy::discovery_url("https://idp/realms/a/") == "https://idp/realms/a/.well-known/openid-configuration");
}

TEST_CASE("parse_discovery: the jwks_uri of a document for the configured issuer") {
  std::string error;
  auto uri = policy::parse_discovery(
      discovery_doc(kIssuer, R"("jwks_uri":"https://idp.example.com/realms/data/protocol/openid-connect/certs",)"),
      kIssuer, error);
  REQUIRE(uri);
  CHECK(*uri == "https://idp.example.com/realms/data/protocol/openid-connect/certs");
}

TEST_CASE("parse_discovery: wrong issuer, missing or unusable jwks_uri, oversized, not JSON") {
  const std::string good_uri = R"("jwks_uri":"https://idp.example.com/certs",)";
  std::string error;
  SUBCASE("another issuer") {
    CHECK_FALSE(policy::parse_discovery(discovery_doc("https://evil.example.com/realms/data", good_uri), kIssuer,
                                        error));
    CHECK(error.find("names issuer 'https://evil.example.com/realms/data', not the configured") != std::string::npos);
  }
  SUBCASE("the issuer with a trailing slash is another issuer (no normalisation)") {
    CHECK_FALSE(policy::parse_discovery(discovery_doc(kIssuer + "/", good_uri), kIssuer, error));
  }
  SUBCASE("no issuer") {
    CHECK_FALSE(policy::parse_discovery(R"({"jwks_uri":"https://idp.example.com/certs"})", kIssuer, error));
    CHECK(error.find("no \"issuer\"") != std::string::npos);
  }
  SUBCASE("missing jwks_uri") {
    CHECK_FALSE(policy::parse_discovery(discovery_doc(kIssuer, ""), kIssuer, error));
    CHECK(error.find("no \"jwks_uri\"") != std::string::npos);
  }
  SUBCASE("jwks_uri not a string") {
    CHECK_FALSE(policy::parse_discovery(discovery_doc(kIssuer, R"("jwks_uri":42,)"), kIssuer, error));
    CHECK(error.find("no \"jwks_uri\" string") != std::string::npos);
  }
  SUBCASE("an http:// jwks_uri") {
    CHECK_FALSE(policy::parse_discovery(discovery_doc(kIssuer, R"("jwks_uri":"http://idp.example.com/certs",)"),
                                        kIssuer, error));
    CHECK(error.find("jwks_uri is not usable") != std::string::npos);
    CHECK(error.find("not https://") != std::string::npos);
  }
  SUBCASE("oversized body") {
    std::string body = discovery_doc(kIssuer, good_uri);
    body.insert(1, R"("pad":")" + std::string(policy::kMaxOidcDocumentBytes, 'x') + R"(",)");
    CHECK_FALSE(policy::parse_discovery(body, kIssuer, error));
    CHECK(error.find("larger than 1048576 bytes") != std::string::npos);
  }
  SUBCASE("not JSON, not an object") {
    CHECK_FALSE(policy::parse_discovery("<html>login</html>", kIssuer, error));
    CHECK(error.find("not a JSON object") != std::string::npos);
    CHECK_FALSE(policy::parse_discovery(R"(["issuer"])", kIssuer, error));
    CHECK_FALSE(policy::parse_discovery("", kIssuer, error));
  }
}

TEST_CASE("parse_fetched_jwks: signing keys and their kids; oct secrets are never taken from a URL") {
  std::string error;
  auto jwks = policy::parse_fetched_jwks(
      R"({"keys":[)" + rsa_jwk("k1") + "," + rsa_jwk("k2") +
          R"(,{"kty":"oct","kid":"s","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI"},)" +
          R"({"kty":"RSA","use":"enc","kid":"e","n":"AQAB","e":"AQAB"}]})",
      "https://idp/certs", error);
  REQUIRE_MESSAGE(jwks, error);
  CHECK(jwks->kids == std::vector<std::string>{"k1", "k2"});
  CHECK(jwks->keys->size() == 2);

  CHECK_FALSE(policy::parse_fetched_jwks(R"({"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]})", "https://idp/certs",
                                         error));
  CHECK(error.find("no usable key") != std::string::npos);
  CHECK_FALSE(policy::parse_fetched_jwks(R"({"keys":[]})", "https://idp/certs", error));
  CHECK_FALSE(policy::parse_fetched_jwks("not json", "https://idp/certs", error));
  CHECK(error.find("https://idp/certs") != std::string::npos);
  std::string big = R"({"keys":[)" + rsa_jwk("k1") + "]," + R"("pad":")" +
                    std::string(policy::kMaxOidcDocumentBytes, 'x') + R"("})";
  CHECK_FALSE(policy::parse_fetched_jwks(big, "https://idp/certs", error));
  CHECK(error.find("larger than") != std::string::npos);
}

TEST_CASE("RefreshSchedule: an unknown kid may fetch at most once per min_refresh_interval") {
  using Clock = policy::RefreshSchedule::Clock;
  policy::RefreshSchedule s(10min, 30s);
  const auto t0 = Clock::now();
  CHECK(s.on_demand_allowed(t0));  // never fetched
  CHECK(s.next_due() <= t0);       // the first fetch is due at once
  s.started(t0);
  CHECK_FALSE(s.on_demand_allowed(t0 + 1h));  // one is running: join it instead
  s.finished(t0 + 1s, true);
  CHECK_FALSE(s.on_demand_allowed(t0 + 1s));
  CHECK_FALSE(s.on_demand_allowed(t0 + 29s));
  CHECK(s.on_demand_at() == t0 + 30s);
  CHECK(s.on_demand_allowed(t0 + 30s));
  CHECK(s.next_due() == t0 + 1s + 10min);
  // A scheduled fetch counts as well: the limit runs from the last start of any fetch.
  s.started(t0 + 40s);
  s.finished(t0 + 41s, true);
  CHECK_FALSE(s.on_demand_allowed(t0 + 60s));
  CHECK(s.on_demand_allowed(t0 + 70s));
}

TEST_CASE("RefreshSchedule: failures back off from 1 s, doubling, capped by refresh_interval") {
  using Clock = policy::RefreshSchedule::Clock;
  policy::RefreshSchedule s(10s, 1s);
  auto t = Clock::now();
  std::vector<std::chrono::milliseconds> seen;
  for (int i = 0; i < 6; ++i) {
    s.started(t);
    s.finished(t, false);
    seen.push_back(s.backoff());
    CHECK(s.next_due() == t + s.backoff());
  }
  CHECK(seen == std::vector<std::chrono::milliseconds>{1s, 2s, 4s, 8s, 10s, 10s});
  CHECK(s.consecutive_failures() == 6);
  s.started(t);
  s.finished(t, true);
  CHECK(s.consecutive_failures() == 0);
  CHECK(s.backoff() == 0ms);
  CHECK(s.next_due() == t + 10s);

  policy::RefreshSchedule long_interval(1h, 30s);
  for (int i = 0; i < 20; ++i) {
    long_interval.started(t);
    long_interval.finished(t, false);
  }
  CHECK(long_interval.backoff() == policy::RefreshSchedule::kMaxBackoff);
}

namespace {

// Runs one https_get against 127.0.0.1:`port` and returns its response.
policy::HttpsResponse get_once(uint16_t port, std::chrono::milliseconds timeout, asio::io_context& io) {
  std::string error;
  auto tls = policy::make_fetch_tls_context("", error);
  REQUIRE(tls);
  auto url = policy::parse_https_url("https://127.0.0.1:" + std::to_string(port) + "/certs", error);
  REQUIRE(url);
  std::optional<policy::HttpsResponse> got;
  policy::https_get(io.get_executor(), tls, *url, {timeout, policy::kMaxOidcDocumentBytes},
                    [&](policy::HttpsResponse r) { got = std::move(r); });
  io.run_for(timeout + 5s);
  REQUIRE(got);
  return *got;
}

}  // namespace

TEST_CASE("https_get: refused, stalled and non-TLS peers fail with their reason") {
  asio::io_context io;
  SUBCASE("connection refused") {
    asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    uint16_t port = a.local_endpoint().port();
    a.close();
    auto r = get_once(port, 2s, io);
    CHECK(r.result == policy::FetchResult::kUnreachable);
    CHECK(r.error.find("cannot connect") != std::string::npos);
    CHECK(r.error.find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
  }
  SUBCASE("a peer that accepts and never answers hits the deadline") {
    asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    asio::ip::tcp::socket held(io);
    a.async_accept(held, [](const boost::system::error_code&) {});
    auto start = std::chrono::steady_clock::now();
    auto r = get_once(a.local_endpoint().port(), 300ms, io);
    CHECK(r.result == policy::FetchResult::kTimeout);
    CHECK(r.error.find("deadline") != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - start < 3s);
  }
  SUBCASE("a peer that does not speak TLS") {
    asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    asio::ip::tcp::socket peer(io);
    static const std::string kHttp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
    a.async_accept(peer, [&](const boost::system::error_code& ec) {
      if (!ec) asio::async_write(peer, asio::buffer(kHttp), [](const boost::system::error_code&, size_t) {});
    });
    auto r = get_once(a.local_endpoint().port(), 2s, io);
    CHECK(r.result == policy::FetchResult::kTls);
    CHECK(r.error.find("TLS handshake failed") != std::string::npos);
  }
}

TEST_CASE("JwksCache: no keys before a fetch; an unknown kid refreshes once per min_refresh_interval") {
  // A jwks_uri on a closed port: every fetch fails fast (connection refused).
  asio::io_context io;
  asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
  const uint16_t port = a.local_endpoint().port();
  a.close();
  config::JwtIssuer iss;
  iss.issuer = "https://idp.test";
  iss.algorithms = {"RS256"};
  config::RemoteJwks remote;
  remote.jwks_uri = "https://127.0.0.1:" + std::to_string(port) + "/certs";
  remote.refresh_interval = 1h;
  remote.min_refresh_interval = 400ms;
  iss.remote = remote;

  policy::JwksCache cache;
  cache.sync({iss});
  REQUIRE(cache.snapshot("https://idp.test"));
  CHECK_FALSE(cache.snapshot("https://other"));
  CHECK(cache.request_refresh("https://idp.test", [] {}) == policy::JwksCache::Refresh::kUnavailable);  // not started

  std::vector<std::pair<std::string, policy::FetchResult>> fetches;
  cache.start(io.get_executor(), [&](const std::string& i, policy::FetchResult r, const std::string&) {
    fetches.emplace_back(i, r);
  });
  // The startup fetch is running: a request joins it.
  int done = 0;
  CHECK(cache.request_refresh("https://idp.test", [&] { ++done; }) == policy::JwksCache::Refresh::kPending);
  while (fetches.empty() && io.run_one_for(5s)) {
  }
  REQUIRE(fetches.size() == 1);
  CHECK(fetches[0].second == policy::FetchResult::kUnreachable);
  CHECK(done == 1);
  auto snap = cache.snapshot("https://idp.test");
  CHECK_FALSE(snap->keys);
  CHECK(snap->last_error.find("cannot connect") != std::string::npos);
  CHECK(snap->consecutive_failures == 1);

  // Right after that fetch: rate-limited, and `done` is not kept.
  CHECK(cache.request_refresh("https://idp.test", [&] { ++done; }) == policy::JwksCache::Refresh::kRateLimited);
  std::this_thread::sleep_for(450ms);
  // Past min_refresh_interval (the 1 s backoff retry is not due yet): one new fetch,
  // which a second request joins.
  CHECK(cache.request_refresh("https://idp.test", [&] { ++done; }) == policy::JwksCache::Refresh::kPending);
  CHECK(cache.request_refresh("https://idp.test", [&] { ++done; }) == policy::JwksCache::Refresh::kPending);
  while (fetches.size() < 2 && io.run_one_for(5s)) {
  }
  CHECK(fetches.size() == 2);
  CHECK(done == 3);
  CHECK(cache.snapshot("https://idp.test")->consecutive_failures == 2);

  // verify_jwt names the issuer and the fetch error, and asks for a refresh.
  auto r = policy::verify_jwt(
      "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJpc3MiOiJodHRwczovL2lkcC50ZXN0Iiwic3ViIjoiYSJ9.c2ln", {iss},
      std::chrono::system_clock::now(), &cache);
  CHECK(r.failure == policy::AuthFailure::kKeysUnavailable);
  CHECK(r.refresh_issuer == "https://idp.test");
  CHECK(r.message.find("'https://idp.test' has no keys yet: fetching them failed") != std::string::npos);
  CHECK(r.message.find("cannot connect") != std::string::npos);

  // A reload that drops the issuer forgets it; one that keeps it unchanged keeps its state.
  cache.sync({iss});
  CHECK(cache.snapshot("https://idp.test")->consecutive_failures == 2);
  cache.sync({});
  CHECK_FALSE(cache.snapshot("https://idp.test"));
  CHECK(cache.request_refresh("https://idp.test", [] {}) == policy::JwksCache::Refresh::kUnavailable);
  cache.stop();
}
