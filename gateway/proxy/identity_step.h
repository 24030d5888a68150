// Pipeline step: which user the backend sees. Without a verified principal the request's
// own user_context.user_id is the user (and its quotas apply from here). With one,
// identity.mode decides: off (nothing), enforce (a different user_id is refused with
// PERMISSION_DENIED) or rewrite (the principal is spliced into user_context, every other
// request byte unchanged).
#pragma once

#include "proxy/step.h"

namespace sparkgate::proxy {

struct RpcState;

class IdentityStep final : public Step {
 public:
  explicit IdentityStep(RpcState& state) : state_(state) {}
  StepStatus run() override;

 private:
  StepStatus rewrite();
  RpcState& state_;
};

}  // namespace sparkgate::proxy
