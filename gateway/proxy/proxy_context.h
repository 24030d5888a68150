// What one RPC borrows from its worker and the process: every pointer outlives the RPC.
#pragma once

#include <atomic>
#include <memory>
#include <string_view>

#include "config/config.h"

namespace sparkgate::upstream {
class PoolSet;
}
namespace sparkgate::routing {
class Router;
class SessionStore;
}  // namespace sparkgate::routing
namespace sparkgate::policy {
class KeySource;
class QuotaService;
struct PeerCertificate;
}  // namespace sparkgate::policy
namespace sparkgate::observe {
class Metrics;
class AccessLog;
}  // namespace sparkgate::observe
namespace sparkgate::trace {
class SpanQueue;
}
namespace sparkgate::engines {
class WorkerEngines;
}

namespace sparkgate::proxy {

// Served by the gateway itself on the main listener (Kubernetes gRPC probes).
inline constexpr std::string_view kHealthCheckPath = "/grpc.health.v1.Health/Check";

struct ProxyContext {
  std::shared_ptr<const config::Config> config;  // the snapshot this stream started with
  routing::Router* router = nullptr;             // process-wide
  upstream::PoolSet* pools = nullptr;            // the worker's
  routing::SessionStore* store = nullptr;        // the worker's (sessions.store, chosen at startup)
  policy::QuotaService* quotas = nullptr;        // the worker's (quotas.store, chosen at startup)
  observe::Metrics* metrics = nullptr;           // process-wide, or null
  observe::AccessLog* access_log = nullptr;      // process-wide; null: no access log
  // Process-wide: set once the gateway drains (grpc.health.v1.Health/Check answers
  // NOT_SERVING then).
  const std::atomic<bool>* draining = nullptr;
  // The connection's verified client certificate (mTLS), or null.
  std::shared_ptr<const policy::PeerCertificate> peer_cert;
  // The worker's view of the JWT issuers' remote keys (discovery/jwks_uri); null: none.
  policy::KeySource* keys = nullptr;
  // Process-wide: where finished spans go (tracing.otlp); null: no tracing at all.
  trace::SpanQueue* spans = nullptr;
  // The worker's view of the engines on demand (clusters with engines:); null: none.
  engines::WorkerEngines* engines = nullptr;
};

}  // namespace sparkgate::proxy
