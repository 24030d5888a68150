// The quota checks of one RPC, behind one interface whatever keeps the counts: this
// process (LocalQuotaService, quotas.store: memory) or Redis for the whole fleet
// (RedisQuotaService, quotas.store: redis). The gateway picks one at startup; callers
// never ask which.
//
// Every check answers either at once (QuotaAnswer::pending null, the decision in
// QuotaAnswer::decision) or later: then the answer goes to the QuotaWaiter given, unless
// the caller cancels QuotaAnswer::pending first (base/cancellable.h). A waiter is called
// at most once per check, never inside the call that started it.
//
// Threading: one service per worker (the local one shares process-wide counts); every
// call and every completion on that worker's thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "base/cancellable.h"

namespace sparkgate::policy {

struct QuotaDecision {
  bool allowed = true;
  bool store_failed = false;
  std::string error;  // why the store failed; empty unless store_failed
};

class QuotaWaiter {
 public:
  virtual void on_quota(const QuotaDecision& decision) = 0;

 protected:
  ~QuotaWaiter() = default;
};

struct QuotaAnswer {
  QuotaDecision decision;                 // meaningful when pending is null
  base::Cancellable* pending = nullptr;  // set: the decision goes to the waiter later
};

// An admitted operation, held by the caller until end_operation.
struct OperationLease {
  bool held = false;
  std::string id;  // the Redis lease; empty for a local count
};

// The slot a CloneSession holds for the session it is about to create.
struct CloneReservation {
  std::string id;  // empty: nothing reserved
};

class QuotaService {
 public:
  virtual ~QuotaService() = default;

  // Rate limit: one request of `user` against a bucket of `burst` refilled at `rate` per
  // second. rate <= 0 is unlimited.
  virtual QuotaAnswer try_request(const std::string& user, double rate, uint32_t burst, QuotaWaiter& w) = 0;

  // Concurrency: admits an operation if fewer than `max` of the user's are in flight.
  // When admitted, `lease` is filled before the decision is delivered; a check cancelled
  // after the store admitted it gives the slot back by itself. Every admitted lease is
  // ended with end_operation (extra calls are ignored).
  virtual QuotaAnswer try_begin_operation(const std::string& user, uint32_t max, OperationLease& lease,
                                          QuotaWaiter& w) = 0;
  virtual void end_operation(const std::string& user, OperationLease& lease) = 0;

  // The max_sessions quota the session registry enforces itself when it places a new
  // session (atomically, in this process), or 0 when this service counts sessions
  // elsewhere and checks them in try_add_session.
  virtual uint32_t registry_session_limit(uint32_t max_sessions) const = 0;
  // A session this RPC just created counts against the user's `max` (0: unlimited),
  // for `ttl` unless refreshed.
  virtual QuotaAnswer try_add_session(const std::string& user, const std::string& session_id, uint32_t max,
                                      std::chrono::milliseconds ttl, QuotaWaiter& w) = 0;
  // CloneSession of `source_session_id` will create a session: admitted if the user is
  // below `max`. `reservation` holds the slot until clone_created or release_clone.
  virtual QuotaAnswer try_reserve_clone(const std::string& user, const std::string& source_session_id, uint32_t max,
                                        CloneReservation& reservation, QuotaWaiter& w) = 0;
  // The clone exists as `new_session_id`: it takes over the reserved slot.
  virtual void clone_created(const std::string& user, CloneReservation& reservation,
                             const std::string& new_session_id, std::chrono::milliseconds ttl) = 0;
  // Gives a reserved slot back (idempotent).
  virtual void release_clone(const std::string& user, CloneReservation& reservation) = 0;

  // The session is still in use / was released. Fire and forget.
  virtual void refresh_session(const std::string& user, const std::string& session_id,
                               std::chrono::milliseconds ttl) = 0;
  virtual void remove_session(const std::string& user, const std::string& session_id) = 0;
};

}  // namespace sparkgate::policy
