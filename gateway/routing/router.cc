#include "routing/router.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "routing/route_match.h"

namespace sparkgate::routing {

namespace {

// RPCs that never create a Spark session on the backend. For an unknown session they are
// routed (rendezvous over the cluster, so replicas agree) but not registered.
bool creates_session(spark::Rpc rpc) {
  switch (rpc) {
    case spark::Rpc::kReleaseSession:
    case spark::Rpc::kReattachExecute:
    case spark::Rpc::kReleaseExecute:
    case spark::Rpc::kInterrupt:
    case spark::Rpc::kFetchErrorDetails:
      return false;
    default:
      return true;
  }
}

std::string describe_unavailable(const ClusterBackends& c) {
  std::string s;
  for (const auto& b : c.backends) {
    if (!s.empty()) s += "; ";
    s += b->name();
    if (!b->healthy.load()) {
      auto why = b->unhealthy_reason();
      s += " unhealthy" + (why.empty() ? std::string() : " (" + why + ")");
    } else if (b->draining()) {
      s += " draining";
    } else {
      s += " full";
    }
  }
  return s;
}

// Panic routing: the cluster has no healthy backend (and has some), and its config asks
// to try the backends anyway.
bool panicking(const config::Cluster& cluster, const ClusterBackends& c) {
  if (!cluster.panic_routing || c.backends.empty()) return false;
  return std::none_of(c.backends.begin(), c.backends.end(), [](const BackendPtr& b) { return b->healthy.load(); });
}

}  // namespace

std::string ended_session_message(const std::string& session_id, const Tombstone& t) {
  return "session " + session_id + " " + t.detail + "; start a new Spark session";
}

BackendPtr Router::place(const config::Cluster& cluster, const ClusterBackends& backends, const std::string& key,
                         const BackendState* avoid, grpcwire::Status& status) {
  std::vector<Candidate> candidates;
  std::vector<const BackendPtr*> index;
  bool any_accepting = false;
  for (const auto& b : backends.backends) {
    if (!b->accepts_sessions() || b.get() == avoid) continue;
    any_accepting = true;
    uint32_t max = b->max_sessions.load();
    int64_t n = b->sessions.load();
    if (max != 0 && n >= static_cast<int64_t>(max)) continue;
    candidates.push_back({b->name(), b->weight.load(), n});
    index.push_back(&b);
  }
  if (candidates.empty() && !any_accepting && panicking(cluster, backends)) {
    // No backend is healthy: try those that are only unhealthy (not drained, not gone),
    // as Envoy's panic threshold does. A backend that is back serves at once; one that is
    // still down fails the connect, and the call gets UNAVAILABLE as it would have.
    for (const auto& b : backends.backends) {
      if (b->draining() || b->retired.load() || b.get() == avoid) continue;
      uint32_t max = b->max_sessions.load();
      int64_t n = b->sessions.load();
      if (max != 0 && n >= static_cast<int64_t>(max)) continue;
      candidates.push_back({b->name(), b->weight.load(), n});
      index.push_back(&b);
    }
    if (!candidates.empty())
      spdlog::debug("cluster '{}' has no healthy backend: panic routing tries them anyway", cluster.name);
  }
  if (candidates.empty()) {
    if (backends.backends.empty()) {
      status = {grpcwire::StatusCode::kUnavailable,
                "cluster '" + cluster.name + "' has no backends" +
                    (cluster.dns ? " (dns " + cluster.dns->to_string() + " resolved to no address yet)" : "")};
    } else if (any_accepting) {
      status = {grpcwire::StatusCode::kResourceExhausted,
                "cluster '" + cluster.name + "' is full: every available backend is at its max_sessions (" +
                    describe_unavailable(backends) + ")"};
    } else {
      status = {grpcwire::StatusCode::kUnavailable, "cluster '" + cluster.name +
                                                    "' has no healthy backend for a new session: " +
                                                    describe_unavailable(backends)};
    }
    return nullptr;
  }
  int pick = -1;
  switch (cluster.placement) {
    case config::Placement::kLeastSessions:
      pick = pick_least_sessions(candidates);
      break;
    case config::Placement::kRoundRobin: {
      std::lock_guard lock(rr_mu_);
      pick = round_robin_[cluster.name].pick(candidates);
      break;
    }
    case config::Placement::kRendezvous:
      pick = pick_rendezvous(candidates, key);
      break;
  }
  return *index[static_cast<size_t>(pick)];
}

grpcwire::Status Router::check_sticky(const config::Config& config, const SessionPtr& session, RouteDecision& out) {
  const auto& b = session->backend;
  auto now = Clock::now();
  if (b->retired.load() && b->engine.load()) {
    Tombstone t{EndReason::kBackendLost,
                "was lost: its Spark engine " + b->name() + " of cluster '" + session->cluster +
                    "' stopped (crashed, idle or stopped by an operator), and a Spark session does not outlive its "
                    "engine; the next session starts a new engine",
                now};
    sessions_.end(session->user_id, session->session_id, t.reason, t.detail, now);
    return {grpcwire::StatusCode::kFailedPrecondition, ended_session_message(session->session_id, t)};
  }
  if (b->retired.load()) {
    Tombstone t{EndReason::kBackendRemoved,
                "was on backend " + b->name() + ", which is no longer part of cluster '" + session->cluster + "'",
                now};
    sessions_.end(session->user_id, session->session_id, t.reason, t.detail, now);
    return {grpcwire::StatusCode::kNotFound, ended_session_message(session->session_id, t)};
  }
  auto snap = backends_.snapshot();
  const config::Cluster* cluster = config.find_cluster(session->cluster);
  const ClusterBackends* cluster_backends = snap->find(session->cluster);
  const bool panic = cluster && cluster_backends && panicking(*cluster, *cluster_backends);
  // A session placed while its backend was out (panic routing) carries the epoch the
  // backend gets when it is back: it was made on the restarted server.
  const bool placed_while_out = !b->healthy.load() && session->backend_epoch == b->epoch_when_back();
  if (b->epoch.load() != session->backend_epoch && !placed_while_out) {
    Tombstone t{EndReason::kBackendLost,
                "was lost: its backend " + b->name() +
                    " went down (it refused connections) and came back since the session started, and a restarted "
                    "Spark Connect server keeps no sessions",
                now};
    sessions_.end(session->user_id, session->session_id, t.reason, t.detail, now);
    return {grpcwire::StatusCode::kNotFound, ended_session_message(session->session_id, t)};
  }
  if (!b->healthy.load() && !panic) {
    auto why = b->unhealthy_reason();
    return {grpcwire::StatusCode::kUnavailable, "backend " + b->name() + " of session " + session->session_id +
                                                " is unhealthy" + (why.empty() ? "" : " (" + why + ")") +
                                                "; the session stays pinned to it: calls resume if the backend "
                                                "recovers with its sessions, and fail if it restarted"};
  }
  out.cluster = cluster;
  if (!out.cluster) {
    Tombstone t{EndReason::kBackendRemoved, "was on cluster '" + session->cluster + "', which is no longer configured",
                now};
    sessions_.end(session->user_id, session->session_id, t.reason, t.detail, now);
    return {grpcwire::StatusCode::kNotFound, ended_session_message(session->session_id, t)};
  }
  out.backend = b;
  out.session = session;
  return {};
}

grpcwire::Status Router::route(const config::Config& config, const RouteRequest& req, RouteDecision& out,
                           bool defer_unknown) {
  const auto& env = *req.envelope;
  const auto& principal = *req.principal;
  RequestFacts facts;
  facts.user = principal.user;
  facts.groups = &principal.groups;
  facts.tenant = principal.tenant;
  facts.client_type = env.client_type ? std::string_view(*env.client_type) : std::string_view();
  facts.rpc = req.rpc->name;
  facts.headers = req.headers;
  const config::Route* route = match_route(config, facts);
  if (!route) {
    return {grpcwire::StatusCode::kPermissionDenied,
            "no route allows user '" + principal.user + "' (" + std::string(req.rpc->name) + "): sparkgate denies requests that no route matches"};
  }
  if (route->deny) return {grpcwire::StatusCode::kPermissionDenied, *route->deny};
  const config::Cluster* cluster = config.find_cluster(route->cluster);
  auto snap = backends_.snapshot();
  const ClusterBackends* backends = cluster ? snap->find(cluster->name) : nullptr;
  if (!cluster || !backends) {
    return {grpcwire::StatusCode::kUnavailable, "cluster '" + route->cluster + "' is not ready"};
  }

  auto now = Clock::now();
  grpcwire::Status placement_status;
  bool deferred = false;
  auto defer = [&](uint64_t&) -> BackendPtr {
    deferred = true;
    return nullptr;
  };
  auto place_here = [&](uint64_t& epoch) {
    auto b = place(*cluster, *backends, Router::session_key(principal.user, env.session_id), req.avoid,
                   placement_status);
    if (b) epoch = b->healthy.load() ? b->epoch.load() : b->epoch_when_back();
    return b;
  };
  // A cluster of engines places nothing itself: the caller asks the EngineManager for the
  // share key's engine and adopts the session there.
  if (cluster->engines) defer_unknown = true;
  SessionRegistry::Placer placer;
  if (creates_session(req.rpc->rpc)) placer = defer_unknown ? SessionRegistry::Placer(defer) : place_here;
  auto found =
      sessions_.find_or_create(principal.user, env.session_id, cluster->name, placer, now, req.max_user_sessions);
  if (found.over_user_limit) {
    out.over_session_quota = true;
    return {grpcwire::StatusCode::kResourceExhausted,
            "quota max_sessions (" + std::to_string(req.max_user_sessions) + ") reached for user '" + principal.user +
                "': " + std::to_string(sessions_.user_sessions(principal.user)) +
                " live sessions; stop one (spark.stop()) or wait until an idle one expires"};
  }
  if (found.tombstone) {
    return {grpcwire::StatusCode::kNotFound, ended_session_message(env.session_id, *found.tombstone)};
  }
  if (found.session) {
    if (found.session->rpcs.load() == 0 && found.session->created == now) out.new_session = true;
    auto status = check_sticky(config, found.session, out);
    if (!status.ok()) return status;
    found.session->touch(now);
    if (req.rpc->rpc == spark::Rpc::kExecutePlan && env.operation_id) found.session->add_operation(*env.operation_id);
    return {};
  }
  if (deferred || cluster->engines) {
    out.cluster = cluster;
    out.ask_store = true;
    return {};
  }
  if (!placement_status.ok()) return placement_status;
  // An RPC that creates no session, for a session the gateway does not know: send it
  // where the session would be placed by rendezvous (replicas agree), unregistered. The
  // backend answers with its own error if it has no such session.
  std::vector<Candidate> candidates;
  const bool panic = panicking(*cluster, *backends);
  for (const auto& b : backends->backends) {
    if (b->healthy.load() || (panic && !b->draining() && !b->retired.load()))
      candidates.push_back({b->name(), b->weight.load(), 0});
  }
  int pick = pick_rendezvous(candidates, Router::session_key(principal.user, env.session_id));
  if (pick < 0) {
    return {grpcwire::StatusCode::kUnavailable,
            "cluster '" + cluster->name + "' has no healthy backend: " + describe_unavailable(*backends)};
  }
  out.cluster = cluster;
  out.backend = snap->find(cluster->name, std::string(candidates[static_cast<size_t>(pick)].name));
  return {};
}

grpcwire::Status Router::adopt(const config::Config& config, const RouteRequest& req, const std::string& backend,
                           RouteDecision& out) {
  const auto& env = *req.envelope;
  const auto& user = req.principal->user;
  if (!out.cluster) return {grpcwire::StatusCode::kInternal, "adopt without a cluster"};
  auto b = backends_.snapshot()->find(out.cluster->name, backend);
  if (!b) {
    return {grpcwire::StatusCode::kNotFound,
            "session " + env.session_id + " was placed on backend " + backend + " by another sparkgate replica, and " +
                backend + " is not part of cluster '" + out.cluster->name + "' here; start a new Spark session"};
  }
  out.ask_store = false;
  auto session = sessions_.adopt(user, env.session_id, out.cluster->name, b, b->epoch.load(), Clock::now());
  auto status = check_sticky(config, session, out);
  if (!status.ok()) return status;
  session->touch(Clock::now());
  if (req.rpc->rpc == spark::Rpc::kExecutePlan && env.operation_id) session->add_operation(*env.operation_id);
  return {};
}

void Router::unplace(const SessionPtr& session) {
  sessions_.end(session->user_id, session->session_id, EndReason::kUnplaced, {}, Clock::now());
}

void Router::learn_server_side_session_id(const SessionPtr& session, std::string_view id) {
  if (session->learn_server_side_session_id(id)) return;
  auto old = session->server_side_session_id();
  spdlog::warn("backend {} answered session {} with server-side session id {} instead of {}: the backend lost "
               "the session (restart?); ending it",
               session->backend->name(), session->session_id, id, old);
  sessions_.end(session->user_id, session->session_id, EndReason::kBackendLost,
                "was lost: its backend " + session->backend->name() +
                    " no longer has it (the server-side session id changed from " + old + " to " + std::string(id) +
                    ", so the backend restarted)",
                Clock::now());
}

void Router::session_cloned(const SessionPtr& source, std::string_view new_session_id,
                            std::string_view new_server_side_session_id) {
  if (new_session_id.empty()) return;
  auto clone = sessions_.adopt(source->user_id, std::string(new_session_id), source->cluster, source->backend,
                               source->backend_epoch, Clock::now());
  clone->learn_server_side_session_id(new_server_side_session_id);
  clone->set_tenant(source->tenant());
}

void Router::session_released(const SessionPtr& session) {
  sessions_.end(session->user_id, session->session_id, EndReason::kReleased, {}, Clock::now());
}

}  // namespace sparkgate::routing
