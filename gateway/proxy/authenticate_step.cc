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

policy::AuthResult AuthenticateStep::verify(const http2::HeaderMap& headers) const {
  return policy::authenticate(state_.ctx.config->auth, headers, state_.ctx.peer_cert.get(),
                              std::chrono::system_clock::now(), state_.ctx.keys ? state_.ctx.keys->keys() : nullptr);
}

StepStatus AuthenticateStep::run() {
  if (!state_.ctx.config->auth.enabled()) return authenticated();
  auto r = verify(*state_.request_headers);
  if (r.ok()) {
    state_.principal = std::move(r.principal);
    return authenticated();
  }
  if (!r.refresh_issuer.empty() && state_.ctx.keys) {
    // The worker must not wait: the fetch runs on the control thread and its end comes
    // back here (on_keys_refreshed).
    auto a = state_.ctx.keys->refresh(r.refresh_issuer, *this);
    if (a.pending) {
      spdlog::debug("rpc={}: {}; waiting for a refresh of the issuer's keys", state_.rpc->name, r.message);
      headers_ = *state_.request_headers;
      wait_.start(a.pending);
      return StepStatus::kPaused;
    }
    if (a.outcome == policy::JwksCache::Refresh::kRateLimited) {
      r.message += "; the keys were refreshed too recently to refresh them again (min_refresh_interval)";
    }
  }
  return refuse(r);
}

StepStatus AuthenticateStep::refuse(const policy::AuthResult& r) {
  if (state_.ctx.metrics) state_.ctx.metrics->auth_failure(r.failure).Increment();
  spdlog::info("rpc={} peer={}: authentication failed ({}): {}", state_.rpc->name,
               state_.peer ? *state_.peer : std::string("-"), policy::auth_failure_label(r.failure), r.message);
  return state_.stop(grpcwire::StatusCode::kUnauthenticated, r.message);
}

StepStatus AuthenticateStep::authenticated() {
  if (!state_.ctx.config->auth.forward_client_credentials) {
    // The client's credential was for the gateway; the backend gets the cluster's own
    // (UpstreamStep) or none.
    state_.upstream_headers.remove("authorization");
    state_.upstream_headers.remove("authentication");
  }
  // Known before any body byte: the message size quota applies to the first message too.
  if (state_.principal.verified()) apply_message_quota(state_);
  return StepStatus::kContinue;
}

void AuthenticateStep::on_keys_refreshed() {
  wait_.done();
  // Once more, with whatever keys the fetch left; no second refresh.
  auto r = verify(headers_);
  headers_.clear();
  StepStatus s;
  if (!r.ok()) {
    s = refuse(r);
  } else {
    state_.principal = std::move(r.principal);
    s = authenticated();
    // Request messages that arrived during the wait were checked against the gateway's
    // limit only: the principal's max_message_bytes quota applies to them too.
    const auto& framer = state_.inspector->framer();
    const uint64_t q = state_.quota.max_message_bytes;
    if (state_.principal.verified() && q && framer.messages() >= 1 && framer.last_header().length > q) {
      state_.reply = too_large_reply("request", framer, state_);
      s = StepStatus::kStop;
    }
  }
  done_.step_done(s);
}

}  // namespace sparkgate::proxy
