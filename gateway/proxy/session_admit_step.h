// Pipeline step: may the RPC use its session. A session this RPC just created must fit
// the user's max_sessions where the QuotaService counts sessions itself (quotas.store:
// redis; in memory the registry enforced it while placing), and AddArtifacts uploads
// must stay within max_artifact_bytes (checked again as request bytes arrive). Refusals
// are RESOURCE_EXHAUSTED; a refused new session is withdrawn from the registry.
//
// Once admitted, the RPC counts on its session (in flight, started) and keeps the
// session's shared entries alive; release() ends that when the RPC is over.
#pragma once

#include <cstdint>

#include "base/cancellable.h"
#include "grpcwire/status.h"
#include "policy/quota_service.h"
#include "proxy/step.h"

namespace sparkgate::proxy {

struct RpcState;

class SessionAdmitStep final : public Step, private policy::QuotaWaiter {
 public:
  SessionAdmitStep(RpcState& state, StepDone& done) : state_(state), done_(done) {}
  StepStatus run() override;
  void cancel() override { wait_.cancel(); }

  // Request bytes arrived after the RPC was admitted: false (RpcState::reply set) when
  // they take the session past max_artifact_bytes.
  bool on_request_bytes();
  // The session's backend is to be decided again (RouteStep::move_new_session): the RPC
  // no longer counts on it.
  void unbind();
  // The RPC is over, with `status` the client's grpc-status (if any): the session is
  // touched, and a ReleaseSession that succeeded ends it everywhere.
  void release(std::optional<grpcwire::StatusCode> status);

 private:
  StepStatus admitted();
  bool count_artifact_bytes();
  void on_quota(const policy::QuotaDecision& d) override;
  StepStatus decide(const policy::QuotaDecision& d);

  RpcState& state_;
  StepDone& done_;
  base::PendingWait wait_;
  bool quota_checked_ = false;
  bool bound_ = false;  // counted in the session's in_flight
  uint64_t artifact_bytes_counted_ = 0;
};

}  // namespace sparkgate::proxy
