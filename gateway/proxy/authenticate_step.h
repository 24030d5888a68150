// Pipeline step: who is asking. Checks the request's credential (bearer token, JWT, mTLS
// certificate; policy/authenticator.h) from the headers alone, refuses the RPC with
// UNAUTHENTICATED when it fails, and resolves the principal's quotas (the message size
// limit applies from the first message on). Drops the client's credential from the
// upstream request unless auth.forward_client_credentials.
//
// A JWT of an issuer with remote keys (discovery/jwks_uri) whose kid is not in the
// fetched set (or whose issuer has no keys yet) pauses the step while the worker's
// KeySource fetches that issuer's keys (policy/key_source.h; the fetch may be one that
// another RPC started). The step keeps a copy of the request headers and the wait's
// handle; request DATA arriving meanwhile is held by the UpstreamRequest and inspected
// for framing, not routed. When the fetch ends the token is verified once more, without
// another refresh: kContinue, or kStop with UNAUTHENTICATED. A refresh refused because
// the keys were fetched within min_refresh_interval refuses the RPC at once.
// cancel() (the client went away, or the RPC was answered) drops the wait; its
// completion never reaches the step.
//
// Without auth (or anonymous) the principal stays unverified; IdentityStep then takes the
// request's own user_id.
#pragma once

#include "base/cancellable.h"
#include "http2/header_map.h"
#include "policy/auth_result.h"
#include "policy/key_source.h"
#include "proxy/step.h"

namespace sparkgate::proxy {

struct RpcState;

class AuthenticateStep final : public Step, private policy::KeyRefreshWaiter {
 public:
  AuthenticateStep(RpcState& state, StepDone& done) : state_(state), done_(done) {}
  // Reads RpcState::request_headers (it runs while they are there).
  StepStatus run() override;
  void cancel() override { wait_.cancel(); }
  bool waiting() const { return wait_.waiting(); }

 private:
  policy::AuthResult verify(const http2::HeaderMap& headers) const;
  // Counts and logs the failure; kStop with UNAUTHENTICATED.
  StepStatus refuse(const policy::AuthResult& r);
  // The credential checked out (or auth is off): credentials, quotas; kContinue.
  StepStatus authenticated();
  void on_keys_refreshed() override;

  RpcState& state_;
  StepDone& done_;
  base::PendingWait wait_;
  http2::HeaderMap headers_;  // the request headers, kept while waiting for keys
};

// Applies the principal's max_message_bytes quota to both directions, if it is below the
// gateway's limit.
void apply_message_quota(RpcState& state);

}  // namespace sparkgate::proxy
