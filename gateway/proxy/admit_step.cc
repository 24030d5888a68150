#include "proxy/admit_step.h"

#include <spdlog/spdlog.h>

#include "proxy/rpc_state.h"

namespace sparkgate::proxy {

namespace {

// "2.5" rather than "2.500000".
std::string format_rate(double v) {
  std::string s = std::to_string(v);
  s.erase(s.find_last_not_of('0') + 1);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

bool is_operation(spark::Rpc rpc) { return rpc == spark::Rpc::kExecutePlan || rpc == spark::Rpc::kReattachExecute; }

}  // namespace

bool quota_store_ok(RpcState& state, const policy::QuotaDecision& d) {
  if (!d.store_failed) return true;
  const auto& user = state.principal.user;
  if (state.ctx.config->quotas.on_store_failure == config::Quotas::OnStoreFailure::kAllow) {
    spdlog::warn("quota store unavailable ({}); admitting {} of user '{}' (quotas.on_store_failure: allow)", d.error,
                 state.rpc->name, user);
    return true;
  }
  spdlog::warn("quota store unavailable ({}); refusing {} of user '{}' (quotas.on_store_failure: deny)", d.error,
               state.rpc->name, user);
  state.stop(grpcwire::StatusCode::kUnavailable, "sparkgate cannot check quotas: the quota store is unavailable (" +
                                                 d.error + ") and quotas.on_store_failure is deny");
  return false;
}

StepStatus AdmitStep::run() { return next(); }

StepStatus AdmitStep::next() {
  while (check_ != Check::kDone) {
    policy::QuotaAnswer a;
    if (!start(a)) {
      check_ = static_cast<Check>(static_cast<int>(check_) + 1);  // does not apply
      continue;
    }
    if (a.pending) {
      wait_.start(a.pending);
      return StepStatus::kPaused;
    }
    if (decide(a.decision) == StepStatus::kStop) return StepStatus::kStop;
  }
  return StepStatus::kContinue;
}

bool AdmitStep::start(policy::QuotaAnswer& a) {
  auto& quotas = *state_.ctx.quotas;
  const auto& q = state_.quota;
  const auto& user = state_.principal.user;
  switch (check_) {
    case Check::kRate:
      if (q.requests_per_second <= 0) return false;
      a = quotas.try_request(user, q.requests_per_second, q.burst, *this);
      return true;
    case Check::kOperation:
      if (!is_operation(state_.rpc->rpc) || q.max_concurrent_operations == 0) return false;
      a = quotas.try_begin_operation(user, q.max_concurrent_operations, lease_, *this);
      return true;
    case Check::kClone:
      // CloneSession creates a session too: it must fit the user's max_sessions like any
      // other new session.
      if (state_.rpc->rpc != spark::Rpc::kCloneSession || q.max_sessions == 0) return false;
      a = quotas.try_reserve_clone(user, state_.envelope().session_id, q.max_sessions, clone_, *this);
      return true;
    case Check::kDone:
      break;
  }
  return false;
}

StepStatus AdmitStep::decide(const policy::QuotaDecision& d) {
  if (!quota_store_ok(state_, d)) return StepStatus::kStop;
  const auto& q = state_.quota;
  const auto& user = state_.principal.user;
  if (!d.allowed) {
    switch (check_) {
      case Check::kRate:
        return state_.stop_quota(observe::Metrics::Quota::kRequestsPerSecond,
                                 "quota requests_per_second (" + format_rate(q.requests_per_second) + ", burst " +
                                     std::to_string(q.burst) + ") exceeded by user '" + user + "'");
      case Check::kOperation:
        return state_.stop_quota(observe::Metrics::Quota::kMaxConcurrentOperations,
                                 "quota max_concurrent_operations (" + std::to_string(q.max_concurrent_operations) +
                                     ") reached for user '" + user + "': wait for a running query to finish");
      case Check::kClone:
        return state_.stop_quota(observe::Metrics::Quota::kMaxSessions,
                                 "quota max_sessions (" + std::to_string(q.max_sessions) + ") reached for user '" +
                                     user +
                                     "': CloneSession would create another session; stop one (spark.stop()) first");
      case Check::kDone:
        break;
    }
  }
  check_ = static_cast<Check>(static_cast<int>(check_) + 1);
  return StepStatus::kContinue;
}

void AdmitStep::on_quota(const policy::QuotaDecision& d) {
  wait_.done();
  auto s = decide(d);
  if (s == StepStatus::kContinue) s = next();
  if (s != StepStatus::kPaused) done_.step_done(s);
}

void AdmitStep::release() {
  wait_.cancel();
  if (!state_.ctx.quotas) return;
  state_.ctx.quotas->end_operation(state_.principal.user, lease_);
  state_.ctx.quotas->release_clone(state_.principal.user, clone_);
}

void AdmitStep::clone_created(const std::string& new_session_id) {
  state_.ctx.quotas->clone_created(state_.principal.user, clone_, new_session_id, session_quota_ttl(state_));
}

}  // namespace sparkgate::proxy
