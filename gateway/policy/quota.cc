#include "policy/quota.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <type_traits>

namespace sparkgate::policy {

namespace {

// Refills computed from durations in doubles can land a hair under a whole token (e.g.
// 3 × (1/3 s) at 1/s); without this slack such a bucket would wait for one more tick.
constexpr double kTokenSlack = 1e-9;

// Calls f(a.field, b.field) for every field of QuotaLimits.
template <class F>
void for_each_field(config::QuotaLimits& a, const config::QuotaLimits& b, F f) {
  f(a.max_sessions, b.max_sessions);
  f(a.max_concurrent_operations, b.max_concurrent_operations);
  f(a.requests_per_second, b.requests_per_second);
  f(a.burst, b.burst);
  f(a.max_artifact_bytes, b.max_artifact_bytes);
  f(a.max_message_bytes, b.max_message_bytes);
}

void overlay(config::QuotaLimits& acc, const config::QuotaLimits& more_specific) {
  for_each_field(acc, more_specific, [](auto& a, const auto& b) {
    if (b) a = b;
  });
}

// 0 is unlimited, so it beats every number.
void merge_most_generous(config::QuotaLimits& acc, const config::QuotaLimits& other) {
  for_each_field(acc, other, [](auto& a, const auto& b) {
    using T = typename std::decay_t<decltype(a)>::value_type;
    if (!b) return;
    if (!a) {
      a = b;
    } else if (*a == 0 || *b == 0) {
      a = T{0};
    } else {
      a = std::max(*a, *b);
    }
  });
}

}  // namespace

EffectiveQuota resolve_quota(const config::Quotas& q, const base::Principal& p) {
  config::QuotaLimits acc = q.defaults;

  config::QuotaLimits groups;
  for (const auto& [name, limits] : q.groups) {
    if (std::find(p.groups.begin(), p.groups.end(), name) != p.groups.end()) merge_most_generous(groups, limits);
  }
  overlay(acc, groups);
  for (const auto& [name, limits] : q.tenants) {
    if (!p.tenant.empty() && name == p.tenant) overlay(acc, limits);
  }
  for (const auto& [name, limits] : q.users) {
    if (name == p.user) overlay(acc, limits);
  }

  EffectiveQuota e;
  e.max_sessions = acc.max_sessions.value_or(0);
  e.max_concurrent_operations = acc.max_concurrent_operations.value_or(0);
  e.requests_per_second = acc.requests_per_second.value_or(0);
  e.burst = acc.burst.value_or(0);
  if (e.burst == 0) e.burst = static_cast<uint32_t>(std::max(1.0, std::ceil(e.requests_per_second)));
  e.max_artifact_bytes = acc.max_artifact_bytes.value_or(0);
  e.max_message_bytes = acc.max_message_bytes.value_or(0);
  return e;
}

// ---- TokenBucket ----

bool TokenBucket::try_take(double rate, uint32_t burst, Clock::time_point now) {
  if (!(rate > 0)) return true;
  const double capacity = burst > 0 ? static_cast<double>(burst) : std::max(1.0, std::ceil(rate));
  rate_ = rate;
  capacity_ = capacity;
  if (!used_) {
    used_ = true;
    tokens_ = capacity;
    last_ = now;
  } else if (now > last_) {
    tokens_ += rate * std::chrono::duration<double>(now - last_).count();
    last_ = now;
  }
  tokens_ = std::min(tokens_, capacity);
  if (tokens_ + kTokenSlack < 1.0) return false;
  tokens_ = std::max(0.0, tokens_ - 1.0);
  return true;
}

bool TokenBucket::full_at(Clock::time_point now) const {
  if (!used_) return true;
  double elapsed = now > last_ ? std::chrono::duration<double>(now - last_).count() : 0.0;
  return tokens_ + rate_ * elapsed >= capacity_;
}

// ---- LocalQuotas ----

LocalQuotas::Shard& LocalQuotas::shard(const std::string& user) {
  return shards_[std::hash<std::string>{}(user) % kShards];
}

const LocalQuotas::Shard& LocalQuotas::shard(const std::string& user) const {
  return shards_[std::hash<std::string>{}(user) % kShards];
}

bool LocalQuotas::try_request(const std::string& user, double rate, uint32_t burst, Clock::time_point now) {
  if (!(rate > 0)) return true;
  Shard& s = shard(user);
  std::lock_guard lock(s.mu);
  return s.users[user].bucket.try_take(rate, burst, now);
}

bool LocalQuotas::try_begin_operation(const std::string& user, uint32_t max) {
  Shard& s = shard(user);
  std::lock_guard lock(s.mu);
  UserState& u = s.users[user];
  if (max > 0 && u.in_flight >= max) return false;
  ++u.in_flight;
  return true;
}

void LocalQuotas::end_operation(const std::string& user) {
  Shard& s = shard(user);
  std::lock_guard lock(s.mu);
  auto it = s.users.find(user);
  if (it == s.users.end() || it->second.in_flight == 0) return;
  // A user with no bucket and nothing left in flight has no state worth keeping.
  if (--it->second.in_flight == 0 && !it->second.bucket.used()) s.users.erase(it);
}

uint32_t LocalQuotas::operations(const std::string& user) const {
  const Shard& s = shard(user);
  std::lock_guard lock(s.mu);
  auto it = s.users.find(user);
  return it == s.users.end() ? 0 : it->second.in_flight;
}

void LocalQuotas::prune(Clock::time_point now, Clock::duration idle) {
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    for (auto it = s.users.begin(); it != s.users.end();) {
      UserState& u = it->second;
      // Only a bucket that has refilled completely: a forgotten bucket comes back full.
      if (u.bucket.used() && now - u.bucket.last_update() >= idle && u.bucket.full_at(now)) u.bucket = TokenBucket{};
      if (!u.bucket.used() && u.in_flight == 0) {
        it = s.users.erase(it);
      } else {
        ++it;
      }
    }
  }
}

size_t LocalQuotas::tracked_users() const {
  size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    n += s.users.size();
  }
  return n;
}

}  // namespace sparkgate::policy
