// Immutable, validated gateway configuration. Plain data: built by the loader
// (config_loader.h), then shared read-only between workers as a
// std::shared_ptr<const Config> snapshot.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sparkgate::config {

// A host:port pair as written in the config ("127.0.0.1:15001", "[::1]:15001",
// "spark-0.svc:15002").
struct Endpoint {
  std::string host;
  uint16_t port = 0;

  std::string to_string() const;
};

struct TlsFiles {
  std::string cert;  // PEM certificate chain (absolute path after loading)
  std::string key;   // PEM private key (absolute path after loading)
};

struct Listener {
  Endpoint address;
  std::optional<TlsFiles> tls;
};

struct Backend {
  Endpoint address;
  // Share of new sessions relative to the cluster's other backends (placement).
  uint32_t weight = 1;
  // Live sessions this backend accepts; 0 means no limit.
  uint32_t max_sessions = 0;
  // No new sessions; existing ones continue (`drain: true`).
  bool drain = false;
};

// TLS from the gateway to a cluster's backends.
struct UpstreamTls {
  std::string ca;           // PEM CA bundle (absolute path); empty: the system trust store
  std::string server_name;  // SNI and the name verified; empty: the backend's host
  std::string cert;         // optional client certificate (absolute path) ...
  std::string key;          // ... and its key
};

// A bearer token the gateway sends to a cluster's backends instead of the client's
// credential (Spark 4's spark.connect.authenticate.token).
struct Credentials {
  std::string token;   // the secret itself, read at load time; never logged or shown
  std::string source;  // where it came from, for messages: "env SPARK_TOKEN", "file /run/t"
};

struct HealthCheck {
  bool enabled = true;
  std::chrono::milliseconds interval{5000};
  std::chrono::milliseconds timeout{2000};
  uint32_t unhealthy_threshold = 2;  // consecutive failed probes before ejection
  uint32_t healthy_threshold = 2;    // consecutive good probes before return
  // Passive ejection: consecutive connect failures or UNAVAILABLE replies seen by live
  // traffic before the backend is marked unhealthy. 0 turns it off.
  uint32_t passive_failures = 3;
};

enum class Placement { kLeastSessions, kRoundRobin, kRendezvous };
std::string_view placement_name(Placement p);

struct Cluster {
  std::string name;
  std::vector<Backend> backends;  // static addresses (may be empty when dns is set)
  // Discovery: a name resolved every dns_refresh; each address becomes a backend with
  // port dns->port, weight 1 and no session limit.
  std::optional<Endpoint> dns;
  std::chrono::milliseconds dns_refresh{5000};
  Placement placement = Placement::kLeastSessions;
  HealthCheck health_check;
  std::optional<UpstreamTls> tls;
  std::optional<Credentials> credentials;
};

// An exact string, or a regular expression that must match the whole value.
struct StringMatcher {
  std::string text;                         // the exact value, or the pattern
  std::shared_ptr<const std::regex> regex;  // set for a regex matcher
  bool matches(std::string_view value) const;
};

// Every condition present must hold; an empty list or absent matcher matches anything.
struct RouteMatch {
  std::vector<std::string> users;
  std::vector<std::string> groups;   // any of the principal's groups
  std::vector<std::string> tenants;
  std::optional<StringMatcher> client_type;  // always a regex
  // Header name (lower case) → matcher. A header that is absent does not match.
  std::vector<std::pair<std::string, StringMatcher>> headers;
  std::vector<std::string> rpcs;  // method names, e.g. "ExecutePlan" (validated)
};

struct Route {
  int line = 0;  // where the route starts in the file, for logs
  RouteMatch match;
  std::string cluster;              // set for `cluster: NAME` (validated)
  std::optional<std::string> deny;  // set for `deny: "message"`
};

struct Redis {
  Endpoint address{"127.0.0.1", 6379};
  std::string key_prefix = "sparkgate:";
  std::chrono::milliseconds timeout{1000};
};

struct Sessions {
  // A session with no RPC for this long is released on its backend and forgotten;
  // 0 turns reaping off. Spark's own default is 60 minutes.
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(60)};
  // Sessions older than this are released too; 0 means no limit.
  std::chrono::milliseconds max_lifetime{0};
  enum class Store { kMemory, kRedis } store = Store::kMemory;
  Redis redis;  // used when store is kRedis
};

struct Admin {
  Endpoint address{"127.0.0.1", 9901};
};

struct Limits {
  // Largest gRPC message accepted in either direction; Spark's default is 128 MiB.
  uint64_t max_message_bytes = 128ull << 20;
  // Sum of the header names and values of one request.
  uint32_t max_header_list_bytes = 64u << 10;
  // Largest prefix of the first request message held while looking for the routing
  // envelope (session_id, user_context). Never larger than the stream window.
  uint32_t max_envelope_scan_bytes = 1u << 20;
};

struct Http2 {
  // Per-stream receive window, both sides. This bounds the bytes buffered per stream in
  // each direction: the gateway only reopens the window after forwarding.
  uint32_t stream_window_bytes = 1u << 20;
  // Per-connection receive window, both sides.
  uint32_t connection_window_bytes = 16u << 20;
  // SETTINGS_MAX_CONCURRENT_STREAMS advertised to clients.
  uint32_t max_concurrent_streams = 1000;
};

struct Upstream {
  std::chrono::milliseconds connect_timeout{5000};
  // Upper bound of HTTP/2 connections one worker opens to one backend.
  uint32_t max_connections_per_backend = 64;
};

struct Drain {
  std::chrono::milliseconds timeout{30000};
};

struct Config {
  std::string source_path;  // the file this was loaded from
  std::vector<Listener> listeners;
  std::vector<Cluster> clusters;
  std::vector<Route> routes;
  Sessions sessions;
  Admin admin;
  Limits limits;
  Http2 http2;
  Upstream upstream;
  Drain drain;
  std::string log_level = "info";

  // nullptr if no cluster has that name.
  const Cluster* find_cluster(const std::string& name) const;
};

}  // namespace sparkgate::config
