// Per-user quotas kept in this process (quotas.store: memory): which limits apply to a
// principal (resolve_quota), a token bucket for the request rate (TokenBucket), and the
// process-wide per-user state shared by every worker (LocalQuotas). The Redis-backed,
// cross-replica variant is RedisQuotas (redis_quotas.h).
//
// Threading: resolve_quota and TokenBucket are plain values, usable anywhere (a
// TokenBucket must not be shared between threads without a lock). LocalQuotas is
// thread-safe: every method may be called from any thread.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "base/principal.h"
#include "config/config.h"

namespace sparkgate::policy {

using Clock = std::chrono::steady_clock;

// The limits that apply to one principal. 0 means unlimited, in every field.
struct EffectiveQuota {
  uint32_t max_sessions = 0;
  uint32_t max_concurrent_operations = 0;
  double requests_per_second = 0;
  uint32_t burst = 0;  // bucket size; meaningful only when requests_per_second > 0
  uint64_t max_artifact_bytes = 0;
  uint64_t max_message_bytes = 0;

  bool operator==(const EffectiveQuota&) const = default;
};

// The limits for `p`. Field by field, the most specific level that sets a field wins:
// users (entry named p.user) > tenants (entry named p.tenant; none if p.tenant is
// empty) > groups (entries named in p.groups) > defaults; a field no level sets is 0 (unlimited). When several group
// entries match, each field takes the most generous value among the entries that set
// it (0, unlimited, beats any number); entries that leave a field unset take no part
// for that field. If no level sets burst (or it resolves to 0), burst is
// max(1, ceil(requests_per_second)). Entries are matched by exact, case-sensitive name;
// if a name appears twice at one level, the later entry's set fields win.
EffectiveQuota resolve_quota(const config::Quotas& q, const base::Principal& p);

// A token bucket of capacity `burst` refilled at `rate` tokens per second, starting
// full. rate and burst are passed on each call so that a config reload applies at once;
// a smaller burst caps the tokens already saved. Pure arithmetic on the times it is
// given: not thread-safe, never reads a clock.
class TokenBucket {
 public:
  // Refills for the time since the last call, then takes one token if there is one.
  // rate <= 0 means unlimited: always true, the bucket untouched. burst 0 means
  // max(1, ceil(rate)). A `now` earlier than an earlier call's counts as no time
  // passing (threads may read the clock in one order and lock in another).
  bool try_take(double rate, uint32_t burst, Clock::time_point now);
  // Tokens left after the last call (not refilled up to any later time); a bucket
  // never used reports 0 but starts full.
  double tokens() const { return tokens_; }
  // The latest `now` seen; Clock::time_point{} if never used.
  Clock::time_point last_update() const { return last_; }
  bool used() const { return used_; }
  // True when the bucket would be full at `now` under the rate and burst of its last use:
  // forgetting it then gives the user nothing extra.
  bool full_at(Clock::time_point now) const;

 private:
  double tokens_ = 0;
  Clock::time_point last_{};
  bool used_ = false;
  double rate_ = 0;      // of the last try_take
  double capacity_ = 0;  // of the last try_take
};

// Process-wide per-user quota state: a token bucket and an in-flight operation count
// per user, in 16 shards each behind its own mutex. Thread-safe; no call blocks on
// anything but a shard mutex. Memory grows with the users seen; prune() bounds it.
class LocalQuotas {
 public:
  static constexpr size_t kShards = 16;

  // Rate limit: true if a token was taken from `user`'s bucket (see TokenBucket for
  // rate and burst). rate <= 0 (unlimited) is always true and creates no state.
  bool try_request(const std::string& user, double rate, uint32_t burst, Clock::time_point now);
  // Concurrency: true if fewer than `max` operations of `user` are in flight, and then
  // the new one is counted; false counts nothing. max 0 is unlimited: always true, still
  // counted. Every true must be matched by one end_operation(user).
  bool try_begin_operation(const std::string& user, uint32_t max);
  // Ends one operation counted by try_begin_operation. Extra calls (nothing in flight)
  // are ignored.
  void end_operation(const std::string& user);
  // Operations of `user` in flight now.
  uint32_t operations(const std::string& user) const;
  // Forgets the bucket of every user whose bucket was last used before now - idle and has
  // refilled completely by now (a forgotten bucket comes back full, so nobody gains
  // tokens), and every user then left with no bucket and nothing in flight. Called
  // periodically, from any thread (the control thread does).
  void prune(Clock::time_point now, Clock::duration idle);
  // Users with any state (a bucket or operations in flight), for tests and metrics.
  size_t tracked_users() const;

 private:
  struct UserState {
    TokenBucket bucket;
    uint32_t in_flight = 0;
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, UserState> users;
  };
  Shard& shard(const std::string& user);
  const Shard& shard(const std::string& user) const;

  std::array<Shard, kShards> shards_;
};

}  // namespace sparkgate::policy
