// auth.jwt[] keys fetched over HTTPS: discovery, jwks_uri, ca_file, refresh_interval,
// min_refresh_interval, and every error they can make.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "config/config_loader.h"
#include "config_errors.h"

using namespace sparkgate::config;
using namespace std::chrono_literals;

namespace {

const char* kBase = R"(listeners:
  - address: 127.0.0.1:15001
clusters:
  - name: local
    backends:
      - address: 127.0.0.1:15002
routes:
  - cluster: local
admin:
  address: 127.0.0.1:9901
auth:
  jwt:
)";  // the jwt entries start at line 12

using sparkgate::testing::all_errors;
using sparkgate::testing::has_error;

}  // namespace

TEST_CASE("auth.jwt discovery and jwks_uri: defaults and values") {
  auto r = load_config_string(std::string(kBase) + R"(    - issuer: https://idp.example.com/realms/data
      discovery: true
      audience: sparkgate
    - issuer: https://other.example.com
      jwks_uri: https://other.example.com:8443/keys
      refresh_interval: 2m
      min_refresh_interval: 5s
)",
                              "a.yaml");
  INFO(all_errors(r));
  REQUIRE(r.config);
  const auto& a = r.config->auth.jwt.at(0);
  REQUIRE(a.remote);
  CHECK(a.remote->discovery);
  CHECK(a.remote->jwks_uri.empty());
  CHECK(a.remote->ca_file.empty());
  CHECK(a.remote->refresh_interval == 10min);
  CHECK(a.remote->min_refresh_interval == 30s);
  CHECK(a.algorithms == std::vector<std::string>{"RS256", "ES256"});
  CHECK(a.key_sources == std::vector<std::string>{
                             "discovery https://idp.example.com/realms/data/.well-known/openid-configuration"});
  const auto& b = r.config->auth.jwt.at(1);
  REQUIRE(b.remote);
  CHECK_FALSE(b.remote->discovery);
  CHECK(b.remote->jwks_uri == "https://other.example.com:8443/keys");
  CHECK(b.remote->refresh_interval == 2min);
  CHECK(b.remote->min_refresh_interval == 5s);
}

TEST_CASE("auth.jwt ca_file must be a loadable PEM bundle") {
  auto dir = std::filesystem::temp_directory_path() / ("sparkgate-remote-jwks-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "bad.pem") << "not a certificate\n";
  auto r = load_config_string(std::string(kBase) + R"(    - issuer: https://idp.example.com
      discovery: true
      ca_file: bad.pem
    - issuer: https://idp2.example.com
      discovery: true
      ca_file: missing.pem
)",
                              "a.yaml", dir.string());
  INFO(all_errors(r));
  CHECK_FALSE(r.config);
  CHECK(has_error(r, 15, "holds no PEM certificate"));
  CHECK(has_error(r, 18, "missing.pem"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("auth.jwt remote keys: every misuse is an error with its line") {
  auto r = load_config_string(std::string(kBase) + R"(    - issuer: http://idp.example.com
      discovery: true
    - issuer: https://a.example.com
      jwks_uri: http://a.example.com/keys
    - issuer: https://b.example.com
      discovery: true
      jwks_uri: https://b.example.com/keys
    - issuer: https://c.example.com
      jwks_uri: https://c.example.com/keys
      secret_env: HOME
    - issuer: https://d.example.com
      secret_env: HOME
      refresh_interval: 5m
    - issuer: https://e.example.com
      discovery: true
      refresh_interval: 500ms
      min_refresh_interval: 0s
    - issuer: https://f.example.com
      discovery: maybe
    - issuer: https://g.example.com
      discovery: true
      algorithms: [HS256]
    - issuer: https://h.example.com
      discovery: false
)",
                              "a.yaml");
  INFO(all_errors(r));
  CHECK_FALSE(r.config);
  CHECK(has_error(r, 14, "auth.jwt.discovery needs an https:// issuer"));
  CHECK(has_error(r, 16, "auth.jwt.jwks_uri: URL 'http://a.example.com/keys' is not https://"));
  CHECK(has_error(r, 19, "give discovery: true or jwks_uri, not both"));
  CHECK(has_error(r, 21, "cannot be combined with keys, jwks_file or secret_env/secret_file"));
  CHECK(has_error(r, 25, "auth.jwt.refresh_interval applies only with discovery: true or jwks_uri"));
  CHECK(has_error(r, 28, "auth.jwt.refresh_interval must be at least 1000ms"));
  CHECK(has_error(r, 29, "auth.jwt.min_refresh_interval must be at least 1000ms"));
  CHECK(has_error(r, 31, "auth.jwt.discovery must be true or false"));
  CHECK(has_error(r, 34, "HS256 needs secret_env or secret_file"));
  CHECK(has_error(r, 35, "needs keys, jwks_file, secret_env/secret_file, discovery: true or jwks_uri"));
}
