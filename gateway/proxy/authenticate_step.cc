#include "proxy/authenticate_step.h"

#include <spdlog/spdlog.h>

#include "policy/authenticator.h"
#include "proxy/request_inspector.h"
#include "proxy/rpc_state.h"
#include "proxy/upstream_request.h"

namespace sparkgate::proxy {

void apply_message_quota(RpcState& state) {
  state.quota = policy::resolve_quota(state.ctx.config->quotas, state.principal);
  const uint64_t q = state.quota.max_message_bytes;
  if (q && q < state.ctx.config->limits.max_message_bytes) {
    state.inspector->set_max_message_bytes(q);
    state.upstream->set_max_response_bytes(q);
  }
}

StepStatus AuthenticateStep::run() {
  const auto& cfg = *state_.ctx.config;
  if (cfg.auth.enabled()) {
    auto r = policy::authenticate(cfg.auth, *state_.request_headers, state_.ctx.peer_cert.get(), std::chrono::system_clock::now());
    if (!r.ok()) {
      if (state_.ctx.metrics) state_.ctx.metrics->auth_failure(r.failure).Increment();
      spdlog::info("rpc={} peer={}: authentication failed ({}): {}", state_.rpc->name,
                   state_.peer ? *state_.peer : std::string("-"), policy::auth_failure_label(r.failure), r.message);
      return state_.stop(grpcwire::StatusCode::kUnauthenticated, r.message);
    }
    state_.principal = std::move(r.principal);
  }
  if (!cfg.auth.forward_client_credentials) {
    // The client's credential was for the gateway; the backend gets the cluster's own
    // (UpstreamStep) or none.
    state_.upstream_headers.remove("authorization");
    state_.upstream_headers.remove("authentication");
  }
  // Known before any body byte: the message size quota applies to the first message too.
  if (state_.principal.verified()) apply_message_quota(state_);
  return StepStatus::kContinue;
}

}  // namespace sparkgate::proxy
