// Route selection and session affinity: which cluster serves a request, and which
// backend of that cluster holds the request's Spark session.
//
//   route match (first match wins; deny) → session registry (sticky backend, tombstones,
//   backend health and restarts) → placement policy for a new session.
//
// Threading: one Router for the process, shared by all workers; thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/principal.h"
#include "config/config.h"
#include "grpcwire/status.h"
#include "http2/header_map.h"
#include "routing/backend_state.h"
#include "routing/placement.h"
#include "routing/session_registry.h"
#include "spark/inspector.h"
#include "spark/rpc.h"

namespace sparkgate::routing {

struct RouteRequest {
  const spark::RpcInfo* rpc = nullptr;
  const spark::Envelope* envelope = nullptr;
  const http2::HeaderMap* headers = nullptr;
  // Who is asking: authenticated (policy/), or without auth the request's own user_id.
  const base::Principal* principal = nullptr;
  // A backend that a new session must not be placed on (it just failed to connect).
  const BackendState* avoid = nullptr;
  // The principal's max_sessions quota (0: unlimited): a new session beyond it is
  // refused with RESOURCE_EXHAUSTED.
  uint32_t max_user_sessions = 0;
};

struct RouteDecision {
  const config::Cluster* cluster = nullptr;  // in the config snapshot passed to route()
  BackendPtr backend;
  SessionPtr session;  // null when the RPC neither has nor creates a session entry
  bool new_session = false;
  // Set by route(..., defer_unknown = true) for a session this replica does not know:
  // the caller asks the shared store, then calls adopt() or route() again.
  bool ask_store = false;
  // Set when route() refused a new session over the principal's max_sessions quota.
  bool over_session_quota = false;
};

class Router {
 public:
  explicit Router(BackendRegistry& backends) : backends_(backends) {}

  // Decides where a request goes. On failure returns the status for the client. With
  // `defer_unknown`, a session-creating RPC for an unknown session is not placed: the
  // decision comes back with ask_store set (and cluster filled in).
  grpcwire::Status route(const config::Config& config, const RouteRequest& request, RouteDecision& out,
                     bool defer_unknown = false);
  // Registers the request's session on `backend` (a name from the shared store: another
  // replica placed it) and fills `out` as route() would.
  grpcwire::Status adopt(const config::Config& config, const RouteRequest& request, const std::string& backend,
                     RouteDecision& out);
  // Drops the local entry of a session that was placed here but lost the race in the
  // shared store to another replica's placement (nothing was sent to the backend yet).
  void unplace(const SessionPtr& session);

  // The registry and store key of a session.
  static std::string session_key(const std::string& user, const std::string& session_id) {
    return user + '\xff' + session_id;
  }

  // A response carried the backend's server_side_session_id for `session`. A different
  // id than before means the backend lost the session: it is ended, and later calls get
  // a clear error.
  void learn_server_side_session_id(const SessionPtr& session, std::string_view id);
  // CloneSession of `source` created `new_session_id` on the same backend: register it
  // there (with its server-side id, if the response carried one).
  void session_cloned(const SessionPtr& source, std::string_view new_session_id,
                      std::string_view new_server_side_session_id);
  // A ReleaseSession for the session succeeded on its backend.
  void session_released(const SessionPtr& session);

  SessionRegistry& sessions() { return sessions_; }
  BackendRegistry& backends() { return backends_; }

 private:
  // Picks a backend of `cluster` for a new session keyed `key`, or null with `status`.
  BackendPtr place(const config::Cluster& cluster, const ClusterBackends& backends, const std::string& key,
                   const BackendState* avoid, grpcwire::Status& status);
  grpcwire::Status check_sticky(const config::Config& config, const SessionPtr& session, RouteDecision& out);

  BackendRegistry& backends_;
  SessionRegistry sessions_;
  std::mutex rr_mu_;
  std::map<std::string, RoundRobin> round_robin_;  // by cluster
};

// The message a client gets for a call on an ended session.
std::string ended_session_message(const std::string& session_id, const Tombstone& t);

}  // namespace sparkgate::routing
