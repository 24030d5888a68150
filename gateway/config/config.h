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

#include "base/endpoint.h"
#include "base/https_url.h"
#include "base/jwt_keys.h"
#include "base/principal.h"

namespace sparkgate::config {

// A host:port pair as written in the config ("127.0.0.1:15001", "[::1]:15001",
// "spark-0.svc:15002").
using Endpoint = base::Endpoint;

struct TlsFiles {
  std::string cert;  // PEM certificate chain (absolute path after loading)
  std::string key;   // PEM private key (absolute path after loading)
  // mTLS: PEM CA bundle that client certificates must chain to (absolute path); empty:
  // client certificates are not requested.
  std::string client_ca;
  // With client_ca set: a client without a certificate is refused in the handshake
  // (true), or admitted and authenticated by other means (false).
  bool require_client_cert = true;
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
  // Fast re-probe: after a failed probe, and while a returning backend collects its
  // healthy_threshold good probes, the next probe goes out after retry_interval, doubling
  // with each consecutive failure up to retry_max_interval (never later than interval).
  // 0 turns it off: every probe waits interval.
  std::chrono::milliseconds retry_interval{100};
  std::chrono::milliseconds retry_max_interval{1000};
};

enum class Placement { kLeastSessions, kRoundRobin, kRendezvous };

// Engines on demand (docs/engines.md): the gateway starts a Spark Connect server per share
// key and stops it when idle, instead of routing to listed backends.
struct Engines {
  // Whose sessions share one engine: the principal's user, its first group, its tenant,
  // or everyone (one engine for the cluster).
  enum class Share { kUser, kGroup, kTenant, kCluster } share = Share::kUser;
  enum class Launcher { kLocal, kCommand } launcher = Launcher::kLocal;
  // launcher local: spark-submit of spark_home (empty: env SPARK_HOME at start time).
  std::string spark_home;
  std::string master = "local[1]";
  std::vector<std::pair<std::string, std::string>> conf;  // extra --conf, in file order
  // launcher command: the program and its arguments.
  std::vector<std::string> argv;
  uint32_t max_engines = 10;  // engines of this cluster at once
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(30)};
  std::chrono::milliseconds start_timeout{std::chrono::minutes(3)};
  // After SIGTERM, how long an engine may take to exit before SIGKILL.
  std::chrono::milliseconds stop_grace{std::chrono::seconds(10)};
};
std::string_view engine_share_name(Engines::Share s);
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
  // Panic routing: while no backend of the cluster is healthy, new sessions (and the
  // sessions pinned to its backends) try the backends that are not drained anyway,
  // instead of failing at once with UNAVAILABLE.
  bool panic_routing = true;
  std::optional<UpstreamTls> tls;
  std::optional<Credentials> credentials;
  // Set instead of backends/dns: the gateway starts the cluster's Spark servers itself.
  std::optional<Engines> engines;
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

// ---- Authentication (auth:) -----------------------------------------------------------

// A static bearer token: only its SHA-256 is kept.
struct StaticToken {
  std::string sha256;  // 32 raw bytes
  base::Principal principal;  // user, groups, tenant (authentication sets the method)
  int line = 0;        // where it was defined, for logs
};

// One trusted JWT issuer.
// Keys published by the issuer over HTTPS: OpenID Connect discovery
// ({issuer}/.well-known/openid-configuration names the jwks_uri) or a fixed jwks_uri.
// Fetched and refreshed by policy::JwksCache on the control thread.
struct RemoteJwks {
  bool discovery = false;
  std::string jwks_uri;  // set when discovery is false
  std::string ca_file;   // PEM bundle to trust; empty: the system trust store
  std::chrono::milliseconds refresh_interval{std::chrono::minutes(10)};
  // The soonest a token naming an unknown kid may trigger another fetch.
  std::chrono::milliseconds min_refresh_interval{std::chrono::seconds(30)};
  bool operator==(const RemoteJwks&) const = default;
};

struct JwtIssuer {
  std::string issuer;                  // the required `iss`
  std::vector<std::string> audiences;  // `aud` must contain one of them; empty: not checked
  std::vector<std::string> algorithms; // allowed `alg` values, from HS256, RS256, ES256
  std::chrono::seconds leeway{60};     // clock skew allowed on exp and nbf
  std::string user_claim = "sub";
  std::string groups_claim = "groups";  // a string array (or one string)
  std::string tenant_claim = "tenant";
  // Verification keys, loaded (and validated) with the config: PEM public keys or
  // certificates, a JWKS file, and/or an HMAC secret. Never null after loading; empty
  // when the keys are remote.
  std::shared_ptr<const base::JwtKeys> keys;
  // Set instead of local keys: the keys are fetched (policy::JwksCache).
  std::optional<RemoteJwks> remote;
  std::vector<std::string> key_sources;  // "file /etc/keys/a.pem", "jwks /etc/jwks.json", "secret env X"
};

enum class CertIdentity { kSubjectCn, kSanDns, kSanEmail, kSanUri };
std::string_view cert_identity_name(CertIdentity c);

struct Mtls {
  CertIdentity user_from = CertIdentity::kSubjectCn;
  // Optional: the subject's OU values become groups, its O the tenant.
  bool groups_from_ou = false;
  bool tenant_from_o = false;
};

struct Auth {
  std::vector<StaticToken> tokens;
  std::vector<JwtIssuer> jwt;
  std::optional<Mtls> mtls;
  // Requests without any credential are admitted with the user_id they carry
  // (principal method "anonymous"). A wrong credential is still refused.
  bool anonymous = false;
  // Pass the client's authorization/authentication header on to the backend when the
  // cluster has no credentials of its own. Default: true without auth, false with it.
  bool forward_client_credentials = true;

  // Any authentication configured at all.
  bool enabled() const { return !tokens.empty() || !jwt.empty() || mtls.has_value(); }
};

// ---- Identity (identity:) ----------------------------------------------------------------

struct Identity {
  // off: the request's user_id is passed on as it is; enforce: it must equal the
  // principal's user (else PERMISSION_DENIED); rewrite: the gateway writes the principal
  // into user_context. Default: enforce when auth is enabled, off otherwise.
  enum class Mode { kOff, kEnforce, kRewrite } mode = Mode::kOff;
};
std::string_view identity_mode_name(Identity::Mode m);

// ---- Quotas (quotas:) --------------------------------------------------------------------

// Limits at one level (default, a group, a tenant, a user). Unset fields inherit from
// the less specific levels; 0 means unlimited.
struct QuotaLimits {
  std::optional<uint32_t> max_sessions;               // live sessions per user
  std::optional<uint32_t> max_concurrent_operations;  // ExecutePlan/ReattachExecute in flight per user
  std::optional<double> requests_per_second;          // token bucket refill per user
  std::optional<uint32_t> burst;                      // bucket size (default: max(1, rate))
  std::optional<uint64_t> max_artifact_bytes;         // AddArtifacts bytes per session
  std::optional<uint64_t> max_message_bytes;          // largest gRPC message, either direction
};

struct Quotas {
  QuotaLimits defaults;
  std::vector<std::pair<std::string, QuotaLimits>> groups;
  std::vector<std::pair<std::string, QuotaLimits>> tenants;
  std::vector<std::pair<std::string, QuotaLimits>> users;
  // memory: per gateway replica; redis: sessions, concurrency and rate are global.
  enum class Store { kMemory, kRedis } store = Store::kMemory;
  Redis redis;
  enum class OnStoreFailure { kAllow, kDeny } on_store_failure = OnStoreFailure::kAllow;

  bool any() const {
    return !groups.empty() || !tenants.empty() || !users.empty() || defaults.max_sessions ||
           defaults.max_concurrent_operations || defaults.requests_per_second || defaults.max_artifact_bytes ||
           defaults.max_message_bytes;
  }
};

struct Admin {
  Endpoint address{"127.0.0.1", 9901};
  // admin.token_env / admin.token_file: the bearer token the /v1/ API requires; unset,
  // the API is open to whoever reaches the admin address.
  std::optional<Credentials> token;
};

struct Limits {
  // Largest gRPC message accepted in either direction; Spark's default is 128 MiB.
  uint64_t max_message_bytes = 128ull << 20;
  // Sum of the header names and values of one request.
  uint32_t max_header_list_bytes = 64u << 10;
  // Largest prefix of the first request message held while looking for the routing
  // envelope (session_id, user_context). Never larger than the stream window.
  uint32_t max_envelope_scan_bytes = 1u << 20;
  // A client connection must deliver the HTTP/2 preface and its SETTINGS, and each
  // request its complete header block, within this time of starting it; else the
  // connection is closed (slowloris).
  std::chrono::milliseconds header_timeout{10000};
  // A client connection without open streams for this long gets a GOAWAY and is closed;
  // 0 never. gRPC clients reconnect on their own.
  std::chrono::milliseconds idle_timeout{std::chrono::hours(1)};
  // Client connections open at once over all listeners; past it, new connections get a
  // GOAWAY (ENHANCE_YOUR_CALM) and are closed, existing ones are unaffected. 0: what the
  // open file limit allows (the limit minus 1024 for backends and the rest).
  uint32_t max_connections = 0;
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
  // A backend stream that moves no bytes either way for this long is cancelled and the
  // client gets UNAVAILABLE; 0 never. Spark's reattachable execution ends a silent
  // ExecutePlan stream after 2 minutes (senderMaxStreamDuration), so the default leaves
  // room for that while bounding a backend that stalls forever.
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(10)};
};

struct Drain {
  std::chrono::milliseconds timeout{30000};
};

// ---- Tracing (tracing:) ------------------------------------------------------------------

// One header sent with every OTLP export request. The value is a secret (an API key):
// never logged, and /v1/config shows only its source.
struct OtlpHeader {
  std::string name;    // lower case
  std::string value;   // the value itself, read at load time
  std::string source;  // "literal", "env OTLP_KEY", "file /run/key"
};

struct Tracing {
  // tracing.otlp.endpoint as written; empty: tracing is off (no span is made).
  std::string endpoint;
  base::HttpsUrl url;  // the endpoint with /v1/traces appended to its path
  std::vector<OtlpHeader> headers;
  std::string ca_file;  // https:// only: PEM bundle to trust; empty: the system trust store
  std::chrono::milliseconds timeout{10000};  // one export request, connect to answer
  // The share of RPCs without a valid client traceparent that are traced; a valid
  // parent's sampled flag decides for the others.
  double sample_ratio = 1.0;
  std::string service_name = "sparkgate";
  uint32_t queue_size = 2048;  // finished spans waiting for export; past it they are dropped
  uint32_t batch_size = 512;   // spans per export request
  std::chrono::milliseconds flush_interval{5000};  // the longest a span waits for a batch

  bool enabled() const { return !endpoint.empty(); }
};

struct Config {
  std::string source_path;  // the file this was loaded from
  std::vector<Listener> listeners;
  std::vector<Cluster> clusters;
  std::vector<Route> routes;
  Sessions sessions;
  Auth auth;
  Identity identity;
  Quotas quotas;
  Admin admin;
  Limits limits;
  Http2 http2;
  Upstream upstream;
  Drain drain;
  Tracing tracing;
  std::string log_level = "info";
  // log.access: one JSON line per RPC and per ended session on stdout.
  bool access_log = true;

  // nullptr if no cluster has that name.
  const Cluster* find_cluster(const std::string& name) const;
};

}  // namespace sparkgate::config
