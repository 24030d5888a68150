// Pipeline step: who is asking. Checks the request's credential (bearer token, JWT, mTLS
// certificate; policy/authenticator.h) from the headers alone, refuses the RPC with
// UNAUTHENTICATED when it fails, and resolves the principal's quotas (the message size
// limit applies from the first message on). Drops the client's credential from the
// upstream request unless auth.forward_client_credentials.
//
// Without auth (or anonymous) the principal stays unverified; IdentityStep then takes the
// request's own user_id.
#pragma once

#include "proxy/step.h"

namespace sparkgate::proxy {

struct RpcState;

class AuthenticateStep final : public Step {
 public:
  explicit AuthenticateStep(RpcState& state) : state_(state) {}
  // Reads RpcState::request_headers (it runs while they are there).
  StepStatus run() override;

 private:
  RpcState& state_;
};

// Applies the principal's max_message_bytes quota to both directions, if it is below the
// gateway's limit.
void apply_message_quota(RpcState& state);

}  // namespace sparkgate::proxy
