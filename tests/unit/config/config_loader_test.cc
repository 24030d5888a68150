#include "config/config_loader.h"
#include "config_errors.h"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

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

using sparkgate::testing::all_errors;
using sparkgate::testing::has_error;
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

TEST_CASE("connection and stream timeouts: defaults, values, and a header_timeout too short") {
  auto d = load_config_string(kMinimal, "min.yaml");
  REQUIRE(d.config);
  CHECK(d.config->limits.header_timeout == std::chrono::seconds(10));
  CHECK(d.config->limits.idle_timeout == std::chrono::hours(1));
  CHECK(d.config->limits.max_connections == 0);
  CHECK(d.config->upstream.idle_timeout == std::chrono::minutes(10));

  std::string y = std::string(kMinimal) + R"(limits:
  header_timeout: 2s
  idle_timeout: 0
  max_connections: 500
upstream:
  idle_timeout: 90s
)";
  auto r = load_config_string(y, "t.yaml");
  INFO(all_errors(r));
  REQUIRE(r.config);
  CHECK(r.config->limits.header_timeout == std::chrono::seconds(2));
  CHECK(r.config->limits.idle_timeout.count() == 0);
  CHECK(r.config->limits.max_connections == 500);
  CHECK(r.config->upstream.idle_timeout == std::chrono::seconds(90));

  auto bad = load_config_string(std::string(kMinimal) + "limits:\n  header_timeout: 10ms\n", "b.yaml");
  CHECK_FALSE(bad.config);
  CHECK(all_errors(bad).find("limits.header_timeout must be at least 100ms") != std::string::npos);
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
  CHECK(r.errors[0].to_string() == "/nonexistent/sparkgate.yaml: cannot open the file: No such file or directory");
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

namespace {
// A fresh directory for files a test config refers to; removed by the destructor.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "sparkgate-cfg-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  void write(const std::string& name, const std::string& content) const {
    std::ofstream(path / name, std::ios::binary) << content;
  }
};

const char* kMultiCluster = R"(listeners:
  - address: 127.0.0.1:15001
clusters:
  - name: etl
    placement: rendezvous
    backends:
      - address: spark-etl-0:15002
        weight: 2
        max_sessions: 100
        drain: true
      - address: spark-etl-1:15002
    health_check:
      enabled: false
      interval: 10s
      timeout: 500ms
      unhealthy_threshold: 3
      healthy_threshold: 4
      passive_failures: 0
      retry_interval: 50ms
      retry_max_interval: 2s
    panic_routing: false
    tls:
      ca: ca.pem
      server_name: spark-etl
      cert: client.pem
      key: client.key
    credentials:
      token_env: SPARKGATE_TEST_ETL_TOKEN
  - name: adhoc
    dns: spark-adhoc.ns.svc:15002
    dns_refresh: 250ms
    credentials:
      token_file: secrets/adhoc-token
  - name: default
    placement: round_robin
    backends: [{address: "[::1]:15002"}]
routes:
  - match:
      users: [alice, bob]
      groups: data-eng
      tenants: [acme]
      client_type: "_SPARK_CONNECT_PYTHON.*"
      headers:
        X-Sparkgate-Cluster: etl
        x-team: {regex: "data-.*"}
      rpc: [ExecutePlan, Config]
    cluster: etl
  - match: {users: [mallory]}
    deny: "mallory is suspended"
  - match: {rpc: AnalyzePlan}
    cluster: adhoc
  - cluster: default
sessions:
  idle_timeout: 30m
  max_lifetime: 12h
  store: redis
  redis:
    address: redis.ns.svc:6380
    key_prefix: "sg:"
    timeout: 250ms
)";
}  // namespace

TEST_CASE("a multi-cluster config loads every field") {
  TempDir dir;
  dir.write("ca.pem", "ca");
  dir.write("client.pem", "cert");
  dir.write("client.key", "key");
  std::filesystem::create_directory(dir.path / "secrets");
  dir.write("secrets/adhoc-token", "file-token-123 \n\n");
  setenv("SPARKGATE_TEST_ETL_TOKEN", "env-token-456", 1);
  auto r = load_config_string(kMultiCluster, "multi.yaml", dir.path.string());
  unsetenv("SPARKGATE_TEST_ETL_TOKEN");
  INFO(all_errors(r));
  REQUIRE(r.config);
  const auto& c = *r.config;
  REQUIRE(c.clusters.size() == 3);

  const auto& etl = c.clusters[0];
  CHECK(etl.name == "etl");
  CHECK(etl.placement == Placement::kRendezvous);
  REQUIRE(etl.backends.size() == 2);
  CHECK(etl.backends[0].address.to_string() == "spark-etl-0:15002");
  CHECK(etl.backends[0].weight == 2);
  CHECK(etl.backends[0].max_sessions == 100);
  CHECK(etl.backends[0].drain);
  CHECK(etl.backends[1].weight == 1);
  CHECK(etl.backends[1].max_sessions == 0);
  CHECK_FALSE(etl.backends[1].drain);
  CHECK_FALSE(etl.dns.has_value());
  CHECK_FALSE(etl.health_check.enabled);
  CHECK(etl.health_check.interval == std::chrono::seconds(10));
  CHECK(etl.health_check.timeout == std::chrono::milliseconds(500));
  CHECK(etl.health_check.unhealthy_threshold == 3);
  CHECK(etl.health_check.healthy_threshold == 4);
  CHECK(etl.health_check.passive_failures == 0);
  CHECK(etl.health_check.retry_interval == std::chrono::milliseconds(50));
  CHECK(etl.health_check.retry_max_interval == std::chrono::seconds(2));
  CHECK_FALSE(etl.panic_routing);
  REQUIRE(etl.tls.has_value());
  CHECK(etl.tls->ca == (dir.path / "ca.pem").string());
  CHECK(etl.tls->server_name == "spark-etl");
  CHECK(etl.tls->cert == (dir.path / "client.pem").string());
  CHECK(etl.tls->key == (dir.path / "client.key").string());
  REQUIRE(etl.credentials.has_value());
  CHECK(etl.credentials->token == "env-token-456");
  CHECK(etl.credentials->source == "env SPARKGATE_TEST_ETL_TOKEN");

  const auto& adhoc = c.clusters[1];
  CHECK(adhoc.backends.empty());
  REQUIRE(adhoc.dns.has_value());
  CHECK(adhoc.dns->to_string() == "spark-adhoc.ns.svc:15002");
  CHECK(adhoc.dns_refresh == std::chrono::milliseconds(250));
  CHECK(adhoc.placement == Placement::kLeastSessions);
  CHECK(adhoc.health_check.enabled);
  CHECK_FALSE(adhoc.tls.has_value());
  REQUIRE(adhoc.credentials.has_value());
  CHECK(adhoc.credentials->token == "file-token-123");
  CHECK(adhoc.credentials->source == "file " + (dir.path / "secrets/adhoc-token").string());

  CHECK(c.clusters[2].placement == Placement::kRoundRobin);
  CHECK(c.clusters[2].backends[0].address.host == "::1");

  REQUIRE(c.routes.size() == 4);
  const auto& r0 = c.routes[0];
  CHECK(r0.line == 38);
  CHECK(r0.cluster == "etl");
  CHECK_FALSE(r0.deny.has_value());
  CHECK(r0.match.users == std::vector<std::string>{"alice", "bob"});
  CHECK(r0.match.groups == std::vector<std::string>{"data-eng"});
  CHECK(r0.match.tenants == std::vector<std::string>{"acme"});
  REQUIRE(r0.match.client_type.has_value());
  CHECK(r0.match.client_type->regex);
  CHECK(r0.match.client_type->matches("_SPARK_CONNECT_PYTHON spark/4.0.0 os/linux"));
  CHECK_FALSE(r0.match.client_type->matches("x_SPARK_CONNECT_PYTHON"));
  REQUIRE(r0.match.headers.size() == 2);
  CHECK(r0.match.headers[0].first == "x-sparkgate-cluster");
  CHECK_FALSE(r0.match.headers[0].second.regex);
  CHECK(r0.match.headers[0].second.matches("etl"));
  CHECK_FALSE(r0.match.headers[0].second.matches("etl2"));
  CHECK(r0.match.headers[1].first == "x-team");
  CHECK(r0.match.headers[1].second.matches("data-eng"));
  CHECK_FALSE(r0.match.headers[1].second.matches("ml-data-eng"));
  CHECK(r0.match.rpcs == std::vector<std::string>{"ExecutePlan", "Config"});

  CHECK(c.routes[1].line == 48);
  CHECK(c.routes[1].cluster.empty());
  REQUIRE(c.routes[1].deny.has_value());
  CHECK(*c.routes[1].deny == "mallory is suspended");
  CHECK(c.routes[2].match.rpcs == std::vector<std::string>{"AnalyzePlan"});
  CHECK(c.routes[3].line == 52);
  CHECK(c.routes[3].match.users.empty());
  CHECK_FALSE(c.routes[3].match.client_type.has_value());

  CHECK(c.sessions.idle_timeout == std::chrono::minutes(30));
  CHECK(c.sessions.max_lifetime == std::chrono::hours(12));
  CHECK(c.sessions.store == Sessions::Store::kRedis);
  CHECK(c.sessions.redis.address.to_string() == "redis.ns.svc:6380");
  CHECK(c.sessions.redis.key_prefix == "sg:");
  CHECK(c.sessions.redis.timeout == std::chrono::milliseconds(250));
}

TEST_CASE("clusters, routes and sessions default when their keys are absent") {
  auto r = load_config_string(kMinimal, "min.yaml");
  INFO(all_errors(r));
  REQUIRE(r.config);
  const auto& c = *r.config;
  const auto& cl = c.clusters[0];
  CHECK(cl.placement == Placement::kLeastSessions);
  CHECK(cl.backends[0].weight == 1);
  CHECK(cl.dns_refresh == std::chrono::seconds(5));
  CHECK(cl.health_check.enabled);
  CHECK(cl.health_check.passive_failures == 3);
  CHECK(cl.health_check.retry_interval == std::chrono::milliseconds(100));
  CHECK(cl.health_check.retry_max_interval == std::chrono::seconds(1));
  CHECK(cl.panic_routing);
  CHECK_FALSE(cl.tls.has_value());
  CHECK_FALSE(cl.credentials.has_value());
  CHECK(c.routes[0].line == 8);
  CHECK_FALSE(c.routes[0].deny.has_value());
  CHECK(c.sessions.idle_timeout == std::chrono::minutes(60));
  CHECK(c.sessions.max_lifetime == std::chrono::milliseconds(0));
  CHECK(c.sessions.store == Sessions::Store::kMemory);
}

TEST_CASE("cluster errors carry the line and the reason") {
  const char* y = R"(listeners:
  - address: 127.0.0.1:15001
clusters:
  - name: a
    placement: fastest
    backends:
      - address: h:1
      - address: h:1
      - address: nohost
      - address: h:2
        weight: 0
        colour: red
    dns_refresh: 1s
    shape: round
  - name: a
    backends: []
  - name: b
    dns: b.svc:15002
    health_check:
      interval: 1s
      timeout: 1s
      jitter: 1
  - name: c
    credentials:
      token_env: A
      token_file: f
  - name: d
    dns: "d.svc:0"
    credentials: {}
routes:
  - cluster: a
)";
  auto r = load_config_string(y, "c.yaml");
  CHECK_FALSE(r.config);
  INFO(all_errors(r));
  CHECK(has_error(r, 5, "placement 'fastest' of cluster 'a' is not one of least_sessions, round_robin, rendezvous"));
  CHECK(has_error(r, 8, "duplicate backend 'h:1' in cluster 'a'"));
  CHECK(has_error(r, 9, "backend address 'nohost': expected host:port"));
  CHECK(has_error(r, 11, "backend weight must be between 1 and 1000"));
  CHECK(has_error(r, 12, "unknown key 'colour' in backend"));
  CHECK(has_error(r, 13, "dns_refresh of cluster 'a' is only allowed together with dns"));
  CHECK(has_error(r, 14, "unknown key 'shape' in cluster"));
  CHECK(has_error(r, 15, "duplicate cluster name 'a'"));
  CHECK(has_error(r, 16, "cluster 'a' needs a non-empty list of backends, or dns"));
  CHECK(has_error(r, 21, "health_check.timeout (1000ms) must be shorter than health_check.interval (1000ms)"));
  CHECK(has_error(r, 22, "unknown key 'jitter' in health_check"));
  CHECK(has_error(r, 23, "cluster 'c' needs a non-empty list of backends, or dns"));
  CHECK(has_error(r, 26, "cluster credentials: give one of token_env and token_file, not both"));
  CHECK(has_error(r, 28, "cluster dns 'd.svc:0' needs a non-zero port"));
  CHECK(has_error(r, 29, "cluster credentials: give token_env or token_file"));
  CHECK(r.errors.size() == 15);
}

TEST_CASE("route errors carry the line and the reason") {
  const char* y = R"(listeners:
  - address: 127.0.0.1:15001
clusters:
  - name: a
    backends: [{address: "a:1"}]
routes:
  - cluster: nowhere
  - cluster: a
    deny: "nope"
  - match: {users: [x]}
  - match:
      rpc: [ExecutePlan, Nope]
      client_type: "("
      headers:
        x-a: {regex: "[z"}
        ":path": /x
      colour: red
    cluster: a
  - match: {users: [y]}
    deny: ""
)";
  auto r = load_config_string(y, "r.yaml");
  CHECK_FALSE(r.config);
  INFO(all_errors(r));
  CHECK(has_error(r, 7, "route names unknown cluster 'nowhere' (clusters: a)"));
  CHECK(has_error(r, 8, "route has both cluster and deny"));
  CHECK(has_error(r, 10, "route needs a cluster or a deny message"));
  CHECK(has_error(r, 12, "unknown rpc 'Nope' in route match (valid: ExecutePlan, AnalyzePlan, Config,"));
  CHECK(has_error(r, 12, "GetStatus)"));
  CHECK(has_error(r, 13, "bad regex '(' in route match client_type: "));
  CHECK(has_error(r, 15, "bad regex '[z' in route match header 'x-a': "));
  CHECK(has_error(r, 16, "route match header ':path': pseudo-headers"));
  CHECK(has_error(r, 17, "unknown key 'colour' in route match"));
  CHECK(has_error(r, 20, "route deny message must not be empty"));
  CHECK(r.errors.size() == 9);
}

TEST_CASE("sessions errors carry the line and the reason") {
  std::string y = std::string(kMinimal) + R"(sessions:
  store: disk
  ttl: 5m
  redis:
    timeout: 5ms
    key_prefix: ""
)";
  auto r = load_config_string(y, "s.yaml");
  CHECK_FALSE(r.config);
  INFO(all_errors(r));
  CHECK(has_error(r, 12, "sessions.store 'disk' is not one of memory, redis"));
  CHECK(has_error(r, 13, "unknown key 'ttl' in sessions"));
  CHECK(has_error(r, 15, "sessions.redis.timeout must be at least 10ms (got 5ms)"));
  CHECK(has_error(r, 16, "sessions.redis.key_prefix must not be empty"));
  CHECK(r.errors.size() == 4);
}

TEST_CASE("credentials errors never show the token") {
  setenv("SPARKGATE_TEST_SECRET", "hunter2-secret", 1);
  setenv("SPARKGATE_TEST_EMPTY", "", 1);
  unsetenv("SPARKGATE_TEST_UNSET");
  TempDir dir;
  dir.write("empty-token", " \n");
  const char* y = R"(listeners:
  - address: 127.0.0.1:15001
clusters:
  - name: a
    backends: [{address: "a:1"}]
    credentials:
      token_env: SPARKGATE_TEST_SECRET
      token: hunter2-secret
  - name: b
    backends: [{address: "b:1"}]
    credentials: {token_env: SPARKGATE_TEST_UNSET}
  - name: c
    backends: [{address: "c:1"}]
    credentials: {token_env: SPARKGATE_TEST_EMPTY}
  - name: d
    backends: [{address: "d:1"}]
    credentials: {token_file: empty-token}
  - name: e
    backends: [{address: "e:1"}]
    credentials: {token_file: missing-token}
routes:
  - cluster: a
)";
  auto r = load_config_string(y, "t.yaml", dir.path.string());
  unsetenv("SPARKGATE_TEST_SECRET");
  unsetenv("SPARKGATE_TEST_EMPTY");
  CHECK_FALSE(r.config);
  INFO(all_errors(r));
  CHECK(has_error(r, 8, "unknown key 'token' in cluster credentials"));
  CHECK(has_error(r, 11, "environment variable 'SPARKGATE_TEST_UNSET' is not set or is empty"));
  CHECK(has_error(r, 14, "environment variable 'SPARKGATE_TEST_EMPTY' is not set or is empty"));
  CHECK(has_error(r, 17, "credentials.token_file '" + (dir.path / "empty-token").string() + "' is empty"));
  CHECK(has_error(r, 20, "credentials.token_file '" + (dir.path / "missing-token").string() + "' cannot be read"));
  CHECK(r.errors.size() == 5);
  CHECK(all_errors(r).find("hunter2") == std::string::npos);
}

// ---- auth, identity, quotas -------------------------------------------------------------

namespace {
const std::string kHashA = "sha256:" + std::string(64, 'a');
const std::string kHashB = "sha256:" + std::string(64, 'b');
}  // namespace

TEST_CASE("auth, identity and quotas load with their defaults") {
  TempDir dir;
  dir.write("tokens.yaml", "tokens:\n  - {sha256: \"" + kHashB + "\", user: bob}\n");
  std::string y = std::string(kMinimal) + R"(auth:
  tokens:
    - sha256: ")" + kHashA + R"("
      user: alice
      groups: [analysts, etl]
      tenant: acme
  tokens_file: tokens.yaml
quotas:
  default: {max_sessions: 5, requests_per_second: 2.5, max_artifact_bytes: 1GiB}
  groups: {etl: {max_sessions: 20}}
  tenants: {acme: {burst: 40}}
  users: {alice: {max_concurrent_operations: 3, max_message_bytes: 8MiB}}
)";
  auto r = load_config_string(y, "a.yaml", dir.path.string());
  INFO(all_errors(r));
  REQUIRE(r.config);
  const auto& c = *r.config;
  REQUIRE(c.auth.tokens.size() == 2);
  CHECK(c.auth.tokens[0].sha256 == std::string(32, '\xaa'));
  CHECK(c.auth.tokens[0].principal.user == "alice");
  CHECK(c.auth.tokens[0].principal.groups == std::vector<std::string>{"analysts", "etl"});
  CHECK(c.auth.tokens[0].principal.tenant == "acme");
  CHECK(c.auth.tokens[1].principal.user == "bob");
  CHECK(c.auth.enabled());
  CHECK_FALSE(c.auth.anonymous);
  CHECK_FALSE(c.auth.forward_client_credentials);  // with auth on
  CHECK(c.identity.mode == Identity::Mode::kEnforce);
  CHECK(c.quotas.defaults.max_sessions == 5u);
  CHECK(c.quotas.defaults.requests_per_second == 2.5);
  CHECK(c.quotas.defaults.max_artifact_bytes == (1ull << 30));
  REQUIRE(c.quotas.users.size() == 1);
  CHECK(c.quotas.users[0].second.max_message_bytes == (8ull << 20));
  CHECK(c.quotas.store == Quotas::Store::kMemory);
  CHECK(c.quotas.on_store_failure == Quotas::OnStoreFailure::kAllow);

  auto plain = load_config_string(kMinimal, "min.yaml");
  REQUIRE(plain.config);
  CHECK_FALSE(plain.config->auth.enabled());
  CHECK(plain.config->auth.forward_client_credentials);  // a transparent proxy without auth
  CHECK(plain.config->identity.mode == Identity::Mode::kOff);
  CHECK_FALSE(plain.config->quotas.any());
}

TEST_CASE("auth errors carry file, line and reason, and never echo a token") {
  TempDir dir;
  dir.write("tokens.yaml", "- {sha256: \"" + kHashA + "\"}\n- {sha256: bad, user: x}\n");
  std::string y = std::string(kMinimal) + R"(auth:
  tokens:
    - {sha256: "my-secret-token-value", user: alice}
    - {sha256: ")" + kHashA + R"(", user: alice}
    - {sha256: ")" + kHashA + R"(", user: carol}
    - {user: dave}
    - {sha256: ")" + kHashB + R"(", user: ""}
  tokens_file: tokens.yaml
  jwt:
    - issuer: https://idp
    - issuer: https://idp2
      algorithms: [none]
      secret_env: SPARKGATE_TEST_UNSET_JWT
  anonymous: maybe
identity:
  mode: sometimes
)";
  unsetenv("SPARKGATE_TEST_UNSET_JWT");
  auto r = load_config_string(y, "a.yaml", dir.path.string());
  INFO(all_errors(r));
  CHECK_FALSE(r.config);
  CHECK(has_error(r, 13, "auth.tokens.sha256 must be \"sha256:\" followed by 64 hex digits"));
  CHECK(has_error(r, 15, "the same token hash is already defined (line 14)"));
  CHECK(has_error(r, 16, "needs sha256"));
  CHECK(has_error(r, 17, "auth.tokens.user must not be empty"));
  CHECK(has_error(r, 20, "needs keys, jwks_file, secret_env/secret_file, discovery: true or jwks_uri"));
  CHECK(has_error(r, 22, "'none' is not one of HS256, RS256, ES256"));
  CHECK(has_error(r, 23, "environment variable 'SPARKGATE_TEST_UNSET_JWT' is not set"));
  CHECK(has_error(r, 24, "auth.anonymous 'maybe' is not one of allow, deny"));
  CHECK(has_error(r, 26, "identity.mode 'sometimes' is not one of enforce, rewrite, off"));
  // Errors inside the tokens file name that file.
  bool file_error = false;
  for (const auto& e : r.errors) {
    if (e.file == (dir.path / "tokens.yaml").string() && e.line == 1 && e.reason.find("needs a user") != std::string::npos)
      file_error = true;
    CHECK(e.reason.find("my-secret-token-value") == std::string::npos);
  }
  CHECK(file_error);
}

TEST_CASE("identity and mtls need what they rely on") {
  std::string y = std::string(kMinimal) + R"(auth:
  mtls: {user_from: subject_cn}
identity:
  mode: rewrite
)";
  auto r = load_config_string(y, "a.yaml");
  INFO(all_errors(r));
  CHECK(has_error(r, 12, "auth.mtls needs a listener with tls.client_ca"));

  std::string y2 = std::string(kMinimal) + R"(identity:
  mode: enforce
)";
  auto r2 = load_config_string(y2, "b.yaml");
  INFO(all_errors(r2));
  CHECK(has_error(r2, 12, "identity.mode enforce needs authentication"));
}

TEST_CASE("quota errors carry the line and the reason") {
  std::string y = std::string(kMinimal) + R"(quotas:
  default: {max_sessions: -1, requests_per_second: fast, burst: 0}
  users: {alice: {max_message_bytes: 3GiB, max_things: 2}}
  groups: [etl]
  store: disk
  on_store_failure: panic
)";
  auto r = load_config_string(y, "q.yaml");
  INFO(all_errors(r));
  CHECK_FALSE(r.config);
  CHECK(has_error(r, 12, "quotas.default.max_sessions"));
  CHECK(has_error(r, 12, "quotas.default.requests_per_second must be a number"));
  CHECK(has_error(r, 12, "quotas.default.burst must be between 1 and"));
  CHECK(has_error(r, 13, "quotas.users.alice.max_message_bytes must be between"));
  CHECK(has_error(r, 13, "unknown key 'max_things' in quotas.users.alice"));
  CHECK(has_error(r, 14, "quotas.groups must map names to limits"));
  CHECK(has_error(r, 15, "quotas.store 'disk' is not one of memory, redis"));
  CHECK(has_error(r, 16, "quotas.on_store_failure 'panic' is not one of allow, deny"));
}

TEST_CASE("listener client_ca for mTLS") {
  TempDir dir;
  dir.write("c.pem", "x");
  dir.write("k.pem", "x");
  dir.write("ca.pem", "x");
  const char* y = R"(listeners:
  - address: 127.0.0.1:15001
    tls: {cert: c.pem, key: k.pem, client_ca: ca.pem, require_client_cert: false}
  - address: 127.0.0.1:15003
    tls: {cert: c.pem, key: k.pem, require_client_cert: true}
clusters:
  - name: local
    backends: [{address: "127.0.0.1:15002"}]
routes:
  - cluster: local
)";
  auto r = load_config_string(y, "l.yaml", dir.path.string());
  INFO(all_errors(r));
  CHECK(has_error(r, 5, "require_client_cert needs client_ca"));
  REQUIRE(r.errors.size() == 1);
}

TEST_CASE("admin token and the access log switch") {
  setenv("SPARKGATE_TEST_ADMIN", "admin-secret", 1);
  // kMinimal without its admin section (8 lines).
  const std::string base = std::string(kMinimal).substr(0, std::string(kMinimal).find("admin:"));
  {
    auto r = load_config_string(base + "admin:\n  address: 127.0.0.1:9901\n  token_env: SPARKGATE_TEST_ADMIN\nlog:\n  access: false\n",
                                "a.yaml");
    INFO(all_errors(r));
    REQUIRE(r.config);
    REQUIRE(r.config->admin.token);
    CHECK(r.config->admin.token->token == "admin-secret");
    CHECK(r.config->admin.token->source.find("SPARKGATE_TEST_ADMIN") != std::string::npos);
    CHECK_FALSE(r.config->access_log);
  }
  {
    auto r = load_config_string(base, "b.yaml");
    REQUIRE(r.config);
    CHECK_FALSE(r.config->admin.token);
    CHECK(r.config->access_log);
  }
  {
    auto r = load_config_string(base + "admin:\n  token_env: SPARKGATE_TEST_UNSET_ADMIN\nlog:\n  access: maybe\n", "c.yaml");
    CHECK_FALSE(r.config);
    INFO(all_errors(r));
    CHECK(has_error(r, 10, "SPARKGATE_TEST_UNSET_ADMIN"));
    CHECK(has_error(r, 12, "log.access must be true or false"));
    for (const auto& e : r.errors) CHECK(e.reason.find("admin-secret") == std::string::npos);
  }
  unsetenv("SPARKGATE_TEST_ADMIN");
}

TEST_CASE("fast re-probe and panic routing keys: bad values are refused with their line") {
  auto r = load_config_string(R"(listeners:
  - address: 127.0.0.1:15001
clusters:
  - name: a
    backends: [{address: h:1}]
    health_check:
      retry_interval: 5ms
  - name: b
    backends: [{address: h:1}]
    health_check:
      retry_interval: 500ms
      retry_max_interval: 100ms
  - name: c
    backends: [{address: h:1}]
    panic_routing: sometimes
  - name: d
    backends: [{address: h:1}]
    health_check: {retry_interval: 0s}
routes:
  - cluster: a
)",
                              "retry.yaml");
  INFO(all_errors(r));
  CHECK(has_error(r, 7, "health_check.retry_interval must be 0 (off) or at least 10ms"));
  CHECK(has_error(r, 12, "health_check.retry_max_interval (100ms) must not be shorter than health_check.retry_interval (500ms)"));
  CHECK(has_error(r, 15, "panic_routing"));
  CHECK(r.errors.size() == 3);
}
