// Pipeline step: may this user run this RPC now. The principal's quotas, in order: the
// request rate (requests_per_second), operations in flight (max_concurrent_operations,
// ExecutePlan and ReattachExecute) and, for CloneSession, the session count
// (max_sessions). Each refusal is RESOURCE_EXHAUSTED with a message naming the quota.
// The counts are the QuotaService's (memory or Redis, chosen at startup); when the store
// fails, quotas.on_store_failure decides.
//
// Holds what it admitted (an operation slot, a clone's reserved session slot) until
// release().
#pragma once

#include "base/cancellable.h"
#include "policy/quota_service.h"
#include "proxy/step.h"

namespace sparkgate::proxy {

struct RpcState;

class AdmitStep final : public Step, private policy::QuotaWaiter {
 public:
  AdmitStep(RpcState& state, StepDone& done) : state_(state), done_(done) {}
  ~AdmitStep() override { release(); }
  StepStatus run() override;
  void cancel() override { wait_.cancel(); }

  // The RPC is over: gives back the operation slot and an unused clone reservation.
  void release();
  // The CloneSession's response named the clone: it takes over the reserved slot.
  void clone_created(const std::string& new_session_id);

 private:
  enum class Check { kRate, kOperation, kClone, kDone };
  // Runs the checks from check_ on; stops at the first that waits or refuses.
  StepStatus next();
  // Starts check_; true when it answered at once, with `answer` filled.
  bool start(policy::QuotaAnswer& answer);
  // Applies a decision of check_: kContinue (and check_ advances) or kStop.
  StepStatus decide(const policy::QuotaDecision& d);
  void on_quota(const policy::QuotaDecision& d) override;

  RpcState& state_;
  StepDone& done_;
  Check check_ = Check::kRate;
  base::PendingWait wait_;
  policy::OperationLease lease_;
  policy::CloneReservation clone_;
};

// quotas.on_store_failure for a failed quota store: true to go on (allow), false with
// `state.reply` set (deny).
bool quota_store_ok(RpcState& state, const policy::QuotaDecision& d);

}  // namespace sparkgate::proxy
