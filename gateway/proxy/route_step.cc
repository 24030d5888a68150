#include "proxy/route_step.h"

#include <spdlog/spdlog.h>

#include "policy/quota_service.h"
#include "proxy/rpc_state.h"

namespace sparkgate::proxy {

routing::RouteRequest RouteStep::request() const {
  routing::RouteRequest r{state_.rpc, &state_.envelope(), &state_.upstream_headers, &state_.principal};
  // Where the quota service counts sessions itself, the registry does not (SessionAdmitStep).
  r.max_user_sessions = state_.ctx.quotas->registry_session_limit(state_.quota.max_sessions);
  return r;
}

StepStatus RouteStep::refuse(const grpcwire::Status& status) {
  if (state_.route.over_session_quota) return state_.stop_quota(observe::Metrics::Quota::kMaxSessions, status.message);
  return state_.stop(status.code, status.message);
}

StepStatus RouteStep::run() {
  auto& store = *state_.ctx.store;
  auto status = state_.ctx.router->route(*state_.ctx.config, request(), state_.route, store.ask_before_placing());
  if (!status.ok()) return refuse(status);
  if (state_.route.cluster && state_.route.cluster->engines) return route_engine();
  if (!state_.route.ask_store) return StepStatus::kContinue;
  // A session this replica does not know: another replica may have placed it.
  auto a = store.lookup(state_.principal.user, state_.envelope().session_id, *this);
  if (a.pending) {
    waiting_for_ = Wait::kLookup;
    wait_.start(a.pending);
    return StepStatus::kPaused;
  }
  return on_lookup(a);
}

StepStatus RouteStep::on_lookup(const routing::StoreAnswer& a) {
  const auto& env = state_.envelope();
  auto& route = state_.route;
  grpcwire::Status status;
  if (a.backend) {
    status = state_.ctx.router->adopt(*state_.ctx.config, request(), *a.backend, route);
  } else {
    if (!a.error.empty()) spdlog::warn("session store unavailable ({}); placing session {} locally", a.error, env.session_id);
    status = state_.ctx.router->route(*state_.ctx.config, request(), route);
  }
  if (!status.ok()) return refuse(status);
  if (a.backend || !a.error.empty() || !route.session) return StepStatus::kContinue;
  // Placed here: claim it in the store; a replica that claimed it first wins.
  auto c = state_.ctx.store->claim(state_.principal.user, env.session_id, route.backend->name(),
                                   state_.ctx.config->sessions.idle_timeout, *this);
  if (c.pending) {
    waiting_for_ = Wait::kClaim;
    wait_.start(c.pending);
    return StepStatus::kPaused;
  }
  return on_claim(c);
}

StepStatus RouteStep::on_claim(const routing::StoreAnswer& a) {
  auto& route = state_.route;
  if (!a.error.empty()) {
    spdlog::warn("session store unavailable ({}); session {} stays placed locally", a.error,
                 state_.envelope().session_id);
  } else if (a.backend && *a.backend != route.backend->name()) {
    state_.ctx.router->unplace(route.session);
    route.session.reset();
    auto status = state_.ctx.router->adopt(*state_.ctx.config, request(), *a.backend, route);
    if (!status.ok()) return state_.stop(status.code, status.message);
  }
  return StepStatus::kContinue;
}

void RouteStep::on_store_answer(const routing::StoreAnswer& a) {
  wait_.done();
  auto was = waiting_for_;
  waiting_for_ = Wait::kNone;
  auto s = was == Wait::kLookup ? on_lookup(a) : on_claim(a);
  if (s != StepStatus::kPaused) done_.step_done(s);
}

StepStatus RouteStep::route_engine() {
  auto& route = state_.route;
  const auto& cluster = *route.cluster;
  if (!state_.ctx.engines) return state_.stop(grpcwire::StatusCode::kUnavailable, "engines are not available");
  if (route.backend) {
    // A session placed before: its engine must still be the one it was made on.
    auto t = state_.ctx.engines->find(cluster.name, route.backend->name());
    if (!t) {
      return state_.stop(grpcwire::StatusCode::kFailedPrecondition,
                         "session " + state_.envelope().session_id + " was lost: its Spark engine " +
                             route.backend->name() + " of cluster '" + cluster.name +
                             "' is gone (it crashed or was stopped); start a new Spark session");
    }
    state_.engine_token = std::move(t->token);
    return StepStatus::kContinue;
  }
  auto key = engines::share_key(cluster.engines->share, state_.principal);
  if (key.empty()) {
    return state_.stop(grpcwire::StatusCode::kPermissionDenied,
                       "cluster '" + cluster.name + "' starts one engine per " +
                           std::string(config::engine_share_name(cluster.engines->share)) + ", and user '" +
                           state_.principal.user + "' has no " +
                           std::string(config::engine_share_name(cluster.engines->share)));
  }
  // The wait is bounded by start_timeout (the manager) and by the client's own deadline.
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (const auto t = state_.upstream_headers.find("grpc-timeout")) {
    if (auto d = engines::parse_grpc_timeout(*t)) {
      deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(*d);
    }
  }
  auto a = state_.ctx.engines->acquire(cluster, key, *this, deadline);
  if (!a.status.ok()) return state_.stop(a.status.code, a.status.message);
  if (a.target) return on_engine_target(*a.target);
  waiting_for_ = Wait::kEngine;
  wait_.start(a.pending);
  return StepStatus::kPaused;
}

StepStatus RouteStep::on_engine_target(const engines::EngineTarget& t) {
  auto& route = state_.route;
  auto status = state_.ctx.router->adopt(*state_.ctx.config, request(), t.address.to_string(), route);
  if (!status.ok()) return state_.stop(status.code, status.message);
  if (route.session && route.session->rpcs.load() == 0) route.new_session = true;
  state_.engine_token = t.token;
  return StepStatus::kContinue;
}

void RouteStep::on_engine(const grpcwire::Status& status, const engines::EngineTarget* target) {
  wait_.done();
  waiting_for_ = Wait::kNone;
  auto s = target ? on_engine_target(*target) : state_.stop(status.code, status.message);
  if (s != StepStatus::kPaused) done_.step_done(s);
}

bool RouteStep::can_move() const {
  const auto& route = state_.route;
  if (route.cluster && route.cluster->engines) return false;  // its engine is the only place
  // Only a session created by this very call, placed here by this replica, and only once:
  // nothing has reached any backend yet, so placing it elsewhere is safe.
  if (moved_ || !route.new_session || !route.session || route.session->rpcs.load() != 1) return false;
  return state_.ctx.store->placements_movable();
}

bool RouteStep::move_new_session(const std::string& error) {
  auto& route = state_.route;
  moved_ = true;
  auto failed = route.backend;
  auto cluster = route.cluster;
  state_.ctx.router->unplace(route.session);
  route = {};
  auto req = request();
  req.avoid = failed.get();
  auto status = state_.ctx.router->route(*state_.ctx.config, req, route);
  if (!status.ok() || !route.backend || route.backend == failed) {
    if (route.session) state_.ctx.router->unplace(route.session);
    route = {};
    route.cluster = cluster;  // for the message
    route.backend = failed;
    state_.backend = failed->name();
    return false;
  }
  spdlog::info("backend {} is unreachable ({}); new session {} placed on {} instead", failed->name(), error,
               state_.envelope().session_id, route.backend->name());
  return true;
}

}  // namespace sparkgate::proxy
