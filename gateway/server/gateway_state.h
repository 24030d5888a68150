// Process-wide state shared by all workers: the current config snapshot, the router and
// its session table, the TLS contexts of the listeners.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include <boost/asio/ssl.hpp>

#include "config/config.h"
#include "engines/engine_manager.h"
#include "observe/access_log.h"
#include "observe/metrics.h"
#include "policy/jwks_cache.h"
#include "policy/quota.h"
#include "routing/router.h"
#include "trace/span_queue.h"

namespace sparkgate::server {

struct GatewayState {
  // Swapped atomically on reload; a stream keeps the snapshot it started with.
  std::atomic<std::shared_ptr<const config::Config>> config;
  routing::BackendRegistry backends;
  routing::Router router{backends};
  observe::Metrics metrics;
  observe::AccessLog access_log;  // JSON lines on stdout (log.access)
  // Finished spans on their way to the exporter (tracing:); sized by the config.
  trace::SpanQueue spans{2048, &metrics.spans_dropped(observe::Metrics::SpanDrop::kQueueFull)};
  // The keys of JWT issuers with discovery/jwks_uri; fetched by the control thread.
  policy::JwksCache jwks;
  policy::LocalQuotas quotas;  // per-user rate buckets and operation counts (quotas.store: memory)
  // Engines on demand (clusters with engines:); made in main, stopped after the drain.
  std::unique_ptr<engines::EngineManager> engines;
  // One entry per listener of the startup config; null for plain h2c listeners.
  std::vector<std::shared_ptr<boost::asio::ssl::context>> tls;
  std::atomic<bool> draining{false};
  // Client connections open now, all workers, from accept (TLS handshakes included) to
  // close; checked against limits.max_connections.
  std::atomic<uint32_t> open_connections{0};
  // What limits.max_connections: 0 means, from the open file limit at startup.
  uint32_t fd_connection_limit = 50000;
};

}  // namespace sparkgate::server
