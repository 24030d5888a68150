#include "policy/local_quota_service.h"

namespace sparkgate::policy {

namespace {
QuotaAnswer answer(bool allowed) {
  QuotaAnswer a;
  a.decision.allowed = allowed;
  return a;
}
}  // namespace

QuotaAnswer LocalQuotaService::try_request(const std::string& user, double rate, uint32_t burst, QuotaWaiter&) {
  return answer(quotas_.try_request(user, rate, burst, Clock::now()));
}

QuotaAnswer LocalQuotaService::try_begin_operation(const std::string& user, uint32_t max, OperationLease& lease,
                                                   QuotaWaiter&) {
  if (!quotas_.try_begin_operation(user, max)) return answer(false);
  lease.held = true;
  lease.id.clear();
  return answer(true);
}

void LocalQuotaService::end_operation(const std::string& user, OperationLease& lease) {
  if (!lease.held) return;
  lease.held = false;
  quotas_.end_operation(user);
}

QuotaAnswer LocalQuotaService::try_reserve_clone(const std::string& user, const std::string&, uint32_t max,
                                                 CloneReservation&, QuotaWaiter&) {
  // Not reserved: the clone is registered (and counted) before its response reaches the
  // client.
  return answer(max == 0 || sessions_(user) < max);
}

}  // namespace sparkgate::policy
