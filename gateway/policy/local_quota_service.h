// QuotaService over this process's counts (quotas.store: memory): the process-wide
// LocalQuotas for rates and operations, and the session registry's per-user count for
// sessions (the registry enforces max_sessions itself when it places a session). Every
// check answers at once.
//
// Threading: any number of these (one per worker) may share one LocalQuotas.
#pragma once

#include <functional>

#include "policy/quota.h"
#include "policy/quota_service.h"

namespace sparkgate::policy {

class LocalQuotaService final : public QuotaService {
 public:
  // Live sessions of a user, from the session registry. Thread-safe.
  using SessionCount = std::function<uint32_t(const std::string& user)>;
  // Both borrowed: they outlive this service.
  LocalQuotaService(LocalQuotas& quotas, SessionCount sessions) : quotas_(quotas), sessions_(std::move(sessions)) {}

  QuotaAnswer try_request(const std::string& user, double rate, uint32_t burst, QuotaWaiter& w) override;
  QuotaAnswer try_begin_operation(const std::string& user, uint32_t max, OperationLease& lease,
                                  QuotaWaiter& w) override;
  void end_operation(const std::string& user, OperationLease& lease) override;
  uint32_t registry_session_limit(uint32_t max_sessions) const override { return max_sessions; }
  QuotaAnswer try_add_session(const std::string&, const std::string&, uint32_t, std::chrono::milliseconds,
                              QuotaWaiter&) override {
    return {};  // the registry counted it when it placed the session
  }
  QuotaAnswer try_reserve_clone(const std::string& user, const std::string& source_session_id, uint32_t max,
                                CloneReservation& reservation, QuotaWaiter& w) override;
  void clone_created(const std::string&, CloneReservation&, const std::string&, std::chrono::milliseconds) override {}
  void release_clone(const std::string&, CloneReservation&) override {}
  void refresh_session(const std::string&, const std::string&, std::chrono::milliseconds) override {}
  void remove_session(const std::string&, const std::string&) override {}

 private:
  LocalQuotas& quotas_;
  SessionCount sessions_;
};

}  // namespace sparkgate::policy
