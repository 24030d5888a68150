// QuotaService over RedisQuotas (quotas.store: redis): every count is shared by the
// gateway replicas. Each check is one Redis round trip (answered later, through the
// waiter); a check cancelled while Redis works is dropped when the answer comes, and an
// operation admitted meanwhile is ended at once.
//
// Threading: one per worker, on that worker's thread, like the RedisQuotas it borrows.
#pragma once

#include "policy/quota_service.h"
#include "policy/redis_quotas.h"

namespace sparkgate::policy {

class RedisQuotaService final : public QuotaService {
 public:
  // `quotas` is borrowed: it outlives this service. `clone_ttl`: how long a clone's
  // reserved slot counts if the gateway never learns the clone's id.
  explicit RedisQuotaService(RedisQuotas& quotas, std::chrono::milliseconds clone_ttl = std::chrono::minutes(1))
      : quotas_(quotas), clone_ttl_(clone_ttl) {}

  QuotaAnswer try_request(const std::string& user, double rate, uint32_t burst, QuotaWaiter& w) override;
  QuotaAnswer try_begin_operation(const std::string& user, uint32_t max, OperationLease& lease,
                                  QuotaWaiter& w) override;
  void end_operation(const std::string& user, OperationLease& lease) override;
  uint32_t registry_session_limit(uint32_t) const override { return 0; }  // counted in Redis
  QuotaAnswer try_add_session(const std::string& user, const std::string& session_id, uint32_t max,
                              std::chrono::milliseconds ttl, QuotaWaiter& w) override;
  QuotaAnswer try_reserve_clone(const std::string& user, const std::string& source_session_id, uint32_t max,
                                CloneReservation& reservation, QuotaWaiter& w) override;
  void clone_created(const std::string& user, CloneReservation& reservation, const std::string& new_session_id,
                     std::chrono::milliseconds ttl) override;
  void release_clone(const std::string& user, CloneReservation& reservation) override;
  void refresh_session(const std::string& user, const std::string& session_id,
                       std::chrono::milliseconds ttl) override;
  void remove_session(const std::string& user, const std::string& session_id) override;

 private:
  RedisQuotas& quotas_;
  std::chrono::milliseconds clone_ttl_;
};

}  // namespace sparkgate::policy
