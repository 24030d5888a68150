#include "proxy/identity_step.h"

#include <spdlog/spdlog.h>

#include "proxy/authenticate_step.h"
#include "proxy/request_inspector.h"
#include "proxy/rpc_state.h"
#include "proxy/upstream_request.h"
#include "spark/user_context.h"

namespace sparkgate::proxy {

StepStatus IdentityStep::run() {
  const auto& env = state_.envelope();
  auto& principal = state_.principal;
  if (!principal.verified()) {
    // No authentication (or anonymous): the request's own user_id is all there is.
    principal.user = env.user_id;
    apply_message_quota(state_);
    const auto& framer = state_.inspector->framer();
    if (state_.quota.max_message_bytes && framer.max_message_bytes() == state_.quota.max_message_bytes &&
        framer.last_header().length > state_.quota.max_message_bytes) {
      state_.reply = too_large_reply("request", framer, state_);
      return StepStatus::kStop;
    }
    return StepStatus::kContinue;
  }
  const auto mode = state_.ctx.config->identity.mode;
  if (mode == config::Identity::Mode::kOff) return StepStatus::kContinue;
  if (mode == config::Identity::Mode::kEnforce) {
    if (env.user_id == principal.user) return StepStatus::kContinue;
    if (state_.ctx.metrics) state_.ctx.metrics->identity_rejections().Increment();
    spdlog::info("rpc={} session={}: user_id '{}' refused for authenticated user '{}' ({})", state_.rpc->name,
                 env.session_id, env.user_id, principal.user, base::auth_method_name(principal.method));
    return state_.stop(grpcwire::StatusCode::kPermissionDenied,
                       "user_id '" + env.user_id + "' does not match authenticated user '" + principal.user + "'");
  }
  if (env.user_id == principal.user && env.user_name == principal.user) return StepStatus::kContinue;
  return rewrite();
}

StepStatus IdentityStep::rewrite() {
  // The head of the stream (prefix + first message so far) is still held, unforwarded.
  // Splice the principal into user_context; every other byte stays.
  const auto& env = state_.envelope();
  const auto& user = state_.principal.user;
  auto& up = *state_.upstream;
  std::string head = up.take_request_head();
  auto spliced = spark::splice_user_context(head, state_.inspector->scanner().user_context_spans(), user, user);
  if (!spliced.ok()) {
    up.put_request_head(head, 0);
    return state_.stop(grpcwire::StatusCode::kInvalidArgument,
                       "cannot rewrite user_context of " + std::string(state_.rpc->name) + ": " + spliced.error);
  }
  up.put_request_head(spliced.head, spliced.delta);
  spdlog::debug("rpc={} session={}: user_context user_id '{}' rewritten to '{}'", state_.rpc->name, env.session_id,
                env.user_id, user);
  return StepStatus::kContinue;
}

}  // namespace sparkgate::proxy
