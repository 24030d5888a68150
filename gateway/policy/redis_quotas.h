// Quotas shared by every gateway replica through Redis (quotas.store: redis): the
// request rate, operations in flight and live sessions of each user are counted once
// for the whole fleet. Each check is one Lua script, so it is atomic in Redis; scripts
// read the Redis server's clock (TIME), so the replicas' clocks do not matter.
//
// Keys (K = config key_prefix, U = the user's bytes in lower-case hex, so any user
// string is safe):
//   K + "quota:rate:" + U      hash {tokens, ts}: the token bucket; expires once it
//                              would be full again
//   K + "quota:ops:" + U       sorted set: member = lease id, score = lease expiry (ms)
//   K + "quota:sessions:" + U  sorted set: member = session id, score = expiry (ms)
// The sorted sets expire with their last member.
//
// Threading: one RedisQuotas per worker, on that worker's executor; every call on that
// executor's thread, and every callback runs there too — always posted, never inside
// the call that asked for it, so a callback may call back into RedisQuotas. Owns one
// RedisClient (one pipelined connection). Callbacks are never run once the RedisQuotas
// is destroyed (destruction drops them unrun).
//
// Failures: a transport error, a timeout (config::Redis::timeout), an error reply or an
// unexpected reply gives QuotaDecision{allowed = true, store_failed = true, error}; the
// caller applies quotas.on_store_failure. Error texts are RedisClient's, "redis: " + the
// server's error reply, "redis: unexpected reply to SCRIPT" or "closed" (after stop()).
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "config/config.h"
#include "policy/quota_service.h"

namespace sparkgate::policy {

using QuotaCallback = std::function<void(const QuotaDecision&)>;
// lease_id is non-empty only when the operation was admitted and is counted in Redis.
using LeaseCallback = std::function<void(const QuotaDecision&, const std::string& lease_id)>;

class RedisQuotas {
 public:
  static constexpr std::chrono::milliseconds kDefaultLease{30000};

  // Connects lazily to redis.address, with redis.timeout per command; keys start with
  // redis.key_prefix + "quota:". `lease` is how long an operation stays counted unless
  // renewed (see try_begin_operation).
  RedisQuotas(boost::asio::any_io_executor ex, const config::Redis& redis,
              std::chrono::milliseconds lease = kDefaultLease);
  // Drops pending callbacks unrun; leases held are not released (they expire in Redis
  // within one lease).
  ~RedisQuotas();
  RedisQuotas(const RedisQuotas&) = delete;
  RedisQuotas& operator=(const RedisQuotas&) = delete;

  // Changes the lease of operations admitted from now on, and the renewal period
  // (lease / 3) from the next renewal. Clamped to at least 3 ms.
  void set_lease(std::chrono::milliseconds lease);
  std::chrono::milliseconds lease() const;

  // Rate limit: takes one token from `user`'s bucket (capacity `burst`, refilled at
  // `rate` per second, starting full; burst 0 means max(1, ceil(rate))). allowed =
  // whether a token was taken. rate <= 0 (unlimited) is allowed without asking Redis.
  void try_request(const std::string& user, double rate, uint32_t burst, QuotaCallback cb);

  // Concurrency: admits an operation of `user` if fewer than `max` of theirs are in
  // flight in the fleet (leases past their expiry do not count), and counts it under a
  // new lease id (this instance's random id + a counter). cb(decision, lease_id):
  // - admitted: allowed, lease_id non-empty. This RedisQuotas now holds the lease and
  //   renews it every lease / 3 until end_operation(user, lease_id) or stop(); if a
  //   renewal finds it already expired (Redis was unreachable for a whole lease) it is
  //   added back, because the operation is still running.
  // - refused: allowed = false, lease_id empty.
  // - store failed: allowed, store_failed, lease_id empty; the operation is not counted
  //   (a best-effort ZREM undoes the script in case it ran before the failure).
  // max 0 (unlimited) is allowed without asking Redis, with an empty lease_id.
  void try_begin_operation(const std::string& user, uint32_t max, LeaseCallback cb);
  // Ends an operation: stops renewing its lease and removes it (ZREM). Fire and forget;
  // an empty lease_id is ignored, so it may be called after any admitted operation.
  void end_operation(const std::string& user, const std::string& lease_id);

  // Sessions: admits `session_id` if it is already one of `user`'s live sessions (its
  // expiry is then pushed to now + ttl) or if `user` has fewer than `max` live sessions
  // (it is then added, expiring at now + ttl). ttl 0: never expires. max 0 (unlimited)
  // is allowed without asking Redis and records nothing.
  void try_add_session(const std::string& user, const std::string& session_id, uint32_t max,
                       std::chrono::milliseconds ttl, QuotaCallback cb);
  // Pushes the session's expiry to now + ttl (0: never), adding it back if it had
  // expired. Fire and forget: failures are only logged (debug).
  void refresh_session(const std::string& user, const std::string& session_id, std::chrono::milliseconds ttl);
  // Removes the session (ZREM). Fire and forget.
  void remove_session(const std::string& user, const std::string& session_id);

  // Stops for good: cancels lease renewal, forgets the leases held (they expire in
  // Redis within one lease) and closes the connection. The callbacks of calls still
  // pending DO run (posted), with store_failed and error "closed", and so do those of
  // later calls that need Redis; fire-and-forget calls after stop() do nothing.
  void stop();

  // Leases this instance holds and renews; for tests and metrics.
  size_t held_leases() const;
  // The Redis keys of `user`, for tests and operators.
  std::string rate_key(const std::string& user) const;
  std::string operations_key(const std::string& user) const;
  std::string sessions_key(const std::string& user) const;

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace sparkgate::policy
