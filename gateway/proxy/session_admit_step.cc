#include "proxy/session_admit_step.h"

#include "proxy/admit_step.h"
#include "proxy/request_inspector.h"
#include "proxy/rpc_state.h"
#include "routing/session_store.h"

namespace sparkgate::proxy {

StepStatus SessionAdmitStep::run() {
  const auto& route = state_.route;
  if (route.session && route.new_session && !quota_checked_ && state_.quota.max_sessions > 0) {
    quota_checked_ = true;
    auto a = state_.ctx.quotas->try_add_session(state_.principal.user, route.session->session_id,
                                                state_.quota.max_sessions, session_quota_ttl(state_), *this);
    if (a.pending) {
      wait_.start(a.pending);
      return StepStatus::kPaused;
    }
    if (decide(a.decision) == StepStatus::kStop) return StepStatus::kStop;
  }
  return admitted();
}

StepStatus SessionAdmitStep::decide(const policy::QuotaDecision& d) {
  auto& route = state_.route;
  if (d.allowed || d.store_failed) {
    if (quota_store_ok(state_, d)) return StepStatus::kContinue;
    state_.ctx.router->unplace(route.session);
    route.session.reset();
    return StepStatus::kStop;
  }
  state_.ctx.router->unplace(route.session);
  route.session.reset();
  return state_.stop_quota(observe::Metrics::Quota::kMaxSessions,
                           "quota max_sessions (" + std::to_string(state_.quota.max_sessions) +
                               ") reached for user '" + state_.principal.user +
                               "' across the gateway replicas; stop one (spark.stop()) or wait until an idle one "
                               "expires");
}

void SessionAdmitStep::on_quota(const policy::QuotaDecision& d) {
  wait_.done();
  auto s = decide(d);
  if (s == StepStatus::kContinue) s = admitted();
  done_.step_done(s);
}

StepStatus SessionAdmitStep::admitted() {
  auto& route = state_.route;
  state_.backend = route.backend->name();
  if (!route.session) return StepStatus::kContinue;
  route.session->in_flight.fetch_add(1);
  route.session->rpcs.fetch_add(1);
  bound_ = true;
  // Keep the shared entries (placement, session count) alive while the session is used;
  // at most every tenth of their TTL, so that a busy session costs the stores almost
  // nothing.
  const auto ttl = state_.ctx.config->sessions.idle_timeout;
  const auto now = routing::Clock::now();
  if (now - route.session->last_store_refresh() > ttl / 10) {
    route.session->set_last_store_refresh(now);
    const auto& user = state_.principal.user;
    const auto& id = route.session->session_id;
    state_.ctx.store->refresh(user, id, ttl);
    if (state_.quota.max_sessions > 0) state_.ctx.quotas->refresh_session(user, id, session_quota_ttl(state_));
  }
  if (!count_artifact_bytes()) return StepStatus::kStop;
  return StepStatus::kContinue;
}

bool SessionAdmitStep::on_request_bytes() { return !bound_ || count_artifact_bytes(); }

bool SessionAdmitStep::count_artifact_bytes() {
  const uint64_t max = state_.quota.max_artifact_bytes;
  if (!max || state_.rpc->rpc != spark::Rpc::kAddArtifacts) return true;
  auto& session = *state_.route.session;
  // The request body as received, gRPC framing included.
  const uint64_t seen = state_.inspector->bytes();
  const uint64_t n = seen - artifact_bytes_counted_;
  artifact_bytes_counted_ = seen;
  uint64_t total = session.artifact_bytes.fetch_add(n) + n;
  if (total <= max) return true;
  // The call is cut off and Spark discards what it staged: only completed uploads count.
  session.artifact_bytes.fetch_sub(artifact_bytes_counted_);
  state_.stop_quota(observe::Metrics::Quota::kMaxArtifactBytes,
                    "quota max_artifact_bytes (" + std::to_string(max) + ") exceeded by session " + session.session_id +
                        " of user '" + state_.principal.user + "': its AddArtifacts uploads would reach " +
                        std::to_string(total) + " bytes");
  return false;
}

void SessionAdmitStep::unbind() {
  if (!bound_) return;
  bound_ = false;
  state_.route.session->in_flight.fetch_sub(1);
}

void SessionAdmitStep::release(std::optional<grpcwire::StatusCode> status) {
  wait_.cancel();
  auto& route = state_.route;
  if (!route.session) return;
  if (state_.rpc->rpc == spark::Rpc::kReleaseSession && status == grpcwire::StatusCode::kOk) {
    const auto& user = state_.principal.user;
    state_.ctx.router->session_released(route.session);
    state_.ctx.quotas->remove_session(user, route.session->session_id);
    state_.ctx.store->erase(user, route.session->session_id);
  }
  route.session->touch(routing::Clock::now());
  if (bound_) route.session->in_flight.fetch_sub(1);
  bound_ = false;
  route.session.reset();
}

}  // namespace sparkgate::proxy
