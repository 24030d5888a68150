#include "policy/redis_quota_service.h"

#include <atomic>
#include <memory>

namespace sparkgate::policy {

namespace {

// Process-wide, so that two workers cloning one session never share a placeholder.
std::atomic<uint64_t> clone_counter{0};

// One check in flight. Lives in the RedisQuotas callback; cancel() only forgets the
// waiter, so the answer, when it comes, is dropped.
struct PendingCheck final : base::Cancellable {
  explicit PendingCheck(QuotaWaiter& w) : waiter(&w) {}
  void cancel() override { waiter = nullptr; }
  QuotaWaiter* waiter;
};

QuotaAnswer pending(const std::shared_ptr<PendingCheck>& p) {
  QuotaAnswer a;
  a.pending = p.get();
  return a;
}

// Delivers `d` unless cancelled; the waiter learns first that the wait is over.
void deliver(PendingCheck& p, const QuotaDecision& d) {
  if (auto* w = p.waiter) {
    p.waiter = nullptr;
    w->on_quota(d);
  }
}

}  // namespace

QuotaAnswer RedisQuotaService::try_request(const std::string& user, double rate, uint32_t burst, QuotaWaiter& w) {
  auto p = std::make_shared<PendingCheck>(w);
  quotas_.try_request(user, rate, burst, [p](const QuotaDecision& d) { deliver(*p, d); });
  return pending(p);
}

QuotaAnswer RedisQuotaService::try_begin_operation(const std::string& user, uint32_t max, OperationLease& lease,
                                                   QuotaWaiter& w) {
  auto p = std::make_shared<PendingCheck>(w);
  quotas_.try_begin_operation(user, max, [this, p, user, &lease](const QuotaDecision& d, const std::string& id) {
    if (!p->waiter) {
      // The caller left while Redis answered (`lease` may be gone): give the slot back.
      if (d.allowed && !id.empty()) quotas_.end_operation(user, id);
      return;
    }
    if (d.allowed && !id.empty()) {
      lease.held = true;
      lease.id = id;
    }
    deliver(*p, d);
  });
  return pending(p);
}

void RedisQuotaService::end_operation(const std::string& user, OperationLease& lease) {
  if (!lease.held) return;
  lease.held = false;
  quotas_.end_operation(user, lease.id);
  lease.id.clear();
}

QuotaAnswer RedisQuotaService::try_add_session(const std::string& user, const std::string& session_id, uint32_t max,
                                               std::chrono::milliseconds ttl, QuotaWaiter& w) {
  auto p = std::make_shared<PendingCheck>(w);
  quotas_.try_add_session(user, session_id, max, ttl, [p](const QuotaDecision& d) { deliver(*p, d); });
  return pending(p);
}

QuotaAnswer RedisQuotaService::try_reserve_clone(const std::string& user, const std::string& source_session_id,
                                                 uint32_t max, CloneReservation& reservation, QuotaWaiter& w) {
  // A placeholder member holds the slot until the response names the clone.
  reservation.id = "clone-pending:" + source_session_id + ":" + std::to_string(clone_counter.fetch_add(1) + 1);
  auto p = std::make_shared<PendingCheck>(w);
  quotas_.try_add_session(user, reservation.id, max, clone_ttl_, [p, &reservation](const QuotaDecision& d) {
    if (!p->waiter) return;  // the caller released the reservation when it left
    if (!d.allowed || d.store_failed) reservation.id.clear();
    deliver(*p, d);
  });
  return pending(p);
}

void RedisQuotaService::clone_created(const std::string& user, CloneReservation& reservation,
                                      const std::string& new_session_id, std::chrono::milliseconds ttl) {
  if (reservation.id.empty()) return;
  // The reserved slot becomes the clone's own entry in the shared count.
  quotas_.refresh_session(user, new_session_id, ttl);
  quotas_.remove_session(user, reservation.id);
  reservation.id.clear();
}

void RedisQuotaService::release_clone(const std::string& user, CloneReservation& reservation) {
  if (reservation.id.empty()) return;
  quotas_.remove_session(user, reservation.id);
  reservation.id.clear();
}

void RedisQuotaService::refresh_session(const std::string& user, const std::string& session_id,
                                        std::chrono::milliseconds ttl) {
  quotas_.refresh_session(user, session_id, ttl);
}

void RedisQuotaService::remove_session(const std::string& user, const std::string& session_id) {
  quotas_.remove_session(user, session_id);
}

}  // namespace sparkgate::policy
