#include "config/config_loader.h"

#include <doctest/doctest.h>

using namespace sparkgate::config;

namespace {
const char* kMinimal = R"(listeners:
  - address: 127.0.0.1:15001
clusters:
  - name: local
    backends:
      - address: 127.0.0.1:15002
routes:
  - cluster: local
admin:
  address: 127.0.0.1:9901
)";

bool has_error(const LoadResult& r, int line, const std::string& fragment) {
  for (const auto& e : r.errors) {
    if (e.line == line && e.reason.find(fragment) != std::string::npos) return true;
  }
  return false;
}

std::string all_errors(const LoadResult& r) {
  std::string s;
  for (const auto& e : r.errors) s += e.to_string() + "\n";
  return s;
}
}  // namespace

TEST_CASE("the minimal config loads with defaults") {
  auto r = load_config_string(kMinimal, "min.yaml");
  INFO(all_errors(r));
  REQUIRE(r.config);
  const auto& c = *r.config;
  REQUIRE(c.listeners.size() == 1);
  CHECK(c.listeners[0].address.host == "127.0.0.1");
  CHECK(c.listeners[0].address.port == 15001);
  CHECK_FALSE(c.listeners[0].tls.has_value());
  REQUIRE(c.clusters.size() == 1);
  CHECK(c.clusters[0].backends[0].address.to_string() == "127.0.0.1:15002");
  CHECK(c.routes[0].cluster == "local");
  CHECK(c.admin.address.port == 9901);
  CHECK(c.limits.max_message_bytes == 128ull << 20);
  CHECK(c.find_cluster("local") == &c.clusters[0]);
}

TEST_CASE("sizes and durations accept units") {
  std::string y = std::string(kMinimal) + R"(limits:
  max_message_bytes: 64MiB
upstream:
  connect_timeout: 2s
drain:
  timeout: 1m
http2:
  stream_window_bytes: 2MiB
  connection_window_bytes: 1073741824
)";
  auto r = load_config_string(y, "u.yaml");
  INFO(all_errors(r));
  REQUIRE(r.config);
  CHECK(r.config->limits.max_message_bytes == 64ull << 20);
  CHECK(r.config->upstream.connect_timeout == std::chrono::seconds(2));
  CHECK(r.config->drain.timeout == std::chrono::minutes(1));
  CHECK(r.config->http2.stream_window_bytes == 2u << 20);
}

TEST_CASE("errors carry the line and say what is wrong") {
  const char* y = R"(listeners:
  - address: 127.0.0.1:15001
    colour: blue
clusters:
  - name: local
    backends:
      - address: nohost
  - name: local
    backends:
      - address: 127.0.0.1:99999
routes:
  - cluster: nowhere
log:
  level: loud
)";
  auto r = load_config_string(y, "bad.yaml");
  CHECK_FALSE(r.config);
  INFO(all_errors(r));
  CHECK(has_error(r, 3, "unknown key 'colour'"));
  CHECK(has_error(r, 7, "expected host:port"));
  CHECK(has_error(r, 8, "duplicate cluster name 'local'"));
  CHECK(has_error(r, 10, "port must be a number"));
  CHECK(has_error(r, 12, "unknown cluster 'nowhere'"));
  CHECK(has_error(r, 14, "log.level 'loud'"));
  CHECK(r.errors[0].to_string().starts_with("bad.yaml:3: "));
}

TEST_CASE("missing sections and YAML syntax errors are reported") {
  auto r = load_config_string("listeners: []\n", "m.yaml");
  CHECK_FALSE(r.config);
  CHECK(has_error(r, 1, "listeners must be a non-empty list"));
  CHECK(has_error(r, 1, "missing required key 'clusters'"));
  auto s = load_config_string("listeners: [\n  - a\n", "s.yaml");
  CHECK_FALSE(s.config);
  REQUIRE_FALSE(s.errors.empty());
  CHECK(s.errors[0].reason.find("YAML syntax error") != std::string::npos);
  CHECK(s.errors[0].line > 0);
}

TEST_CASE("a missing file is an error naming it") {
  auto r = load_config_file("/nonexistent/sparkgate.yaml");
  CHECK_FALSE(r.config);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].to_string() == "/nonexistent/sparkgate.yaml: cannot open the file");
}

TEST_CASE("out-of-range values are rejected") {
  std::string y = std::string(kMinimal) + "http2:\n  stream_window_bytes: 10\n";
  auto r = load_config_string(y, "w.yaml");
  CHECK_FALSE(r.config);
  CHECK(has_error(r, 12, "between 65535"));
}

TEST_CASE("tls files are resolved against the config directory and must exist") {
  std::string y = R"(listeners:
  - address: 127.0.0.1:15001
    tls: {cert: certs/server.pem, key: certs/server.key}
clusters:
  - name: c
    backends: [{address: "[::1]:15002"}]
routes:
  - cluster: c
)";
  auto r = load_config_string(y, "t.yaml", "/etc/sparkgate");
  CHECK_FALSE(r.config);
  CHECK(has_error(r, 3, "/etc/sparkgate/certs/server.pem' cannot be read"));
}

TEST_CASE("endpoints: IPv6 in brackets, names, and bad forms") {
  Endpoint e;
  std::string why;
  CHECK(parse_endpoint("[::1]:15002", e, why));
  CHECK(e.host == "::1");
  CHECK(e.to_string() == "[::1]:15002");
  CHECK(parse_endpoint("spark-0.spark.svc:15002", e, why));
  CHECK(e.host == "spark-0.spark.svc");
  CHECK_FALSE(parse_endpoint("::1:15002", e, why));
  CHECK_FALSE(parse_endpoint(":15002", e, why));
  CHECK_FALSE(parse_endpoint("host:", e, why));
  CHECK_FALSE(parse_endpoint("host:65536", e, why));
}
