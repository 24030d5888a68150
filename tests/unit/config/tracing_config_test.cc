// tracing: in the config loader: defaults, every key, secrets in headers, and the errors
// (each with its line).
#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "config/config_loader.h"
#include "config_errors.h"

using namespace sparkgate::config;

namespace {
const char* kBase = R"(listeners:
  - address: 127.0.0.1:15001
clusters:
  - name: local
    backends:
      - address: 127.0.0.1:15002
routes:
  - cluster: local
)";  // 8 lines: tracing starts on line 9

using sparkgate::testing::all_errors;
using sparkgate::testing::has_error;

LoadResult load(const std::string& tracing) { return load_config_string(std::string(kBase) + tracing, "t.yaml"); }
}  // namespace

TEST_CASE("tracing is off without a tracing block") {
  auto r = load("");
  REQUIRE(r.config);
  CHECK_FALSE(r.config->tracing.enabled());
}

TEST_CASE("tracing: every key, /v1/traces appended, defaults") {
  setenv("SG_TEST_OTLP_KEY", "s3cr3t-value", 1);
  auto r = load(R"(tracing:
  otlp:
    endpoint: http://otel-collector:4318
    headers: {X-Api-Key: {env: SG_TEST_OTLP_KEY}, x-tenant: team-a}
    timeout: 2s
  sample_ratio: 0.25
  service_name: gw-eu
  queue_size: 100
  batch_size: 10
  flush_interval: 250ms
)");
  INFO(all_errors(r));
  REQUIRE(r.config);
  const auto& t = r.config->tracing;
  CHECK(t.enabled());
  CHECK(t.url.host == "otel-collector");
  CHECK(t.url.port == 4318);
  CHECK_FALSE(t.url.tls);
  CHECK(t.url.target == "/v1/traces");
  REQUIRE(t.headers.size() == 2);
  CHECK(t.headers[0].name == "x-api-key");
  CHECK(t.headers[0].value == "s3cr3t-value");
  CHECK(t.headers[0].source == "env SG_TEST_OTLP_KEY");
  CHECK(t.headers[1].value == "team-a");
  CHECK(t.headers[1].source == "literal");
  CHECK(t.timeout == std::chrono::seconds(2));
  CHECK(t.sample_ratio == doctest::Approx(0.25));
  CHECK(t.service_name == "gw-eu");
  CHECK(t.queue_size == 100);
  CHECK(t.batch_size == 10);
  CHECK(t.flush_interval == std::chrono::milliseconds(250));

  auto d = load("tracing:\n  otlp:\n    endpoint: https://collector.example.com/otlp/\n");
  INFO(all_errors(d));
  REQUIRE(d.config);
  CHECK(d.config->tracing.url.tls);
  CHECK(d.config->tracing.url.port == 443);
  CHECK(d.config->tracing.url.target == "/otlp/v1/traces");
  CHECK(d.config->tracing.sample_ratio == 1.0);
  CHECK(d.config->tracing.service_name == "sparkgate");
  CHECK(d.config->tracing.queue_size == 2048);
  CHECK(d.config->tracing.batch_size == 512);
  CHECK(d.config->tracing.flush_interval == std::chrono::seconds(5));
  CHECK(d.config->tracing.timeout == std::chrono::seconds(10));
}

TEST_CASE("tracing: a header value from a file") {
  auto dir = std::filesystem::temp_directory_path() / "sg_tracing_cfg";
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir / "key") << "file-secret\n";
  }
  auto r = load_config_string(std::string(kBase) + "tracing:\n  otlp:\n    endpoint: http://c:4318\n    headers:\n"
                                                  "      authorization: {file: key}\n",
                              "t.yaml", dir.string());
  INFO(all_errors(r));
  REQUIRE(r.config);
  REQUIRE(r.config->tracing.headers.size() == 1);
  CHECK(r.config->tracing.headers[0].value == "file-secret");
  CHECK(r.config->tracing.headers[0].source.rfind("file ", 0) == 0);
}

TEST_CASE("tracing: errors name the line and never the secret") {
  setenv("SG_TEST_OTLP_BAD", "line1\nline2", 1);
  unsetenv("SG_TEST_OTLP_UNSET");
  auto r = load(R"(tracing:
  otlp:
    endpoint: ftp://collector:4318
    timeout: 10m
    headers:
      content-type: text/plain
      "bad header": x
      x-a: {env: SG_TEST_OTLP_UNSET}
      x-b: {env: SG_TEST_OTLP_BAD}
      x-c: {env: A, file: b}
  sample_ratio: 1.5
  batch_size: 5000
  colour: blue
)");
  CHECK_FALSE(r.config);
  INFO(all_errors(r));
  CHECK(has_error(r, 11, "is not an absolute http:// or https:// URL"));
  CHECK(has_error(r, 12, "tracing.otlp.timeout must be at most 5m"));
  CHECK(has_error(r, 14, "the exporter sets this header itself"));
  CHECK(has_error(r, 15, "is not a valid header name"));
  CHECK(has_error(r, 16, "environment variable 'SG_TEST_OTLP_UNSET' is not set"));
  CHECK(has_error(r, 17, "contains control characters"));
  CHECK(has_error(r, 18, "give one of env and file"));
  CHECK(has_error(r, 19, "tracing.sample_ratio must be a number from 0 to 1"));
  CHECK(has_error(r, 20, "must not exceed tracing.queue_size"));
  CHECK(has_error(r, 21, "unknown key 'colour' in tracing"));
  CHECK(all_errors(r).find("line1") == std::string::npos);

  auto missing = load("tracing:\n  sample_ratio: 0.5\n");
  CHECK(has_error(missing, 10, "tracing needs otlp.endpoint"));
  auto query = load("tracing:\n  otlp:\n    endpoint: http://c:4318/?x=1\n");
  CHECK(has_error(query, 11, "must not have a query"));
  auto ca = load("tracing:\n  otlp:\n    endpoint: http://c:4318\n    ca_file: /etc/hostname\n");
  CHECK(has_error(ca, 12, "needs an https:// endpoint"));
}
