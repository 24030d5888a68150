#include "policy/quota.h"

#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

using namespace sparkgate;
using namespace sparkgate::policy;
using namespace std::chrono_literals;

namespace {

config::QuotaLimits limits(std::optional<uint32_t> sessions, std::optional<uint32_t> ops = std::nullopt,
                           std::optional<double> rate = std::nullopt, std::optional<uint32_t> burst = std::nullopt) {
  config::QuotaLimits l;
  l.max_sessions = sessions;
  l.max_concurrent_operations = ops;
  l.requests_per_second = rate;
  l.burst = burst;
  return l;
}

base::Principal principal(std::string user, std::vector<std::string> groups = {}, std::string tenant = "") {
  base::Principal p;
  p.user = std::move(user);
  p.groups = std::move(groups);
  p.tenant = std::move(tenant);
  return p;
}

// A fixed instant to count from: the fake clock.
const Clock::time_point kT0 = Clock::time_point{} + 1000h;

// Runs fn(i) on `threads` threads, all released at once.
template <class F>
void run_threads(int threads, F fn) {
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      while (!go.load()) std::this_thread::yield();
      fn(i);
    });
  }
  go = true;
  for (auto& t : pool) t.join();
}

}  // namespace

// ---- resolve_quota ----

TEST_CASE("resolve_quota: nothing configured is unlimited everywhere") {
  const EffectiveQuota e = resolve_quota(config::Quotas{}, principal("alice"));
  CHECK(e.max_sessions == 0);
  CHECK(e.max_concurrent_operations == 0);
  CHECK(e.requests_per_second == 0);
  CHECK(e.max_artifact_bytes == 0);
  CHECK(e.max_message_bytes == 0);
}

TEST_CASE("resolve_quota: users > tenants > groups > default") {
  config::Quotas q;
  q.defaults = limits(1);
  q.groups = {{"analysts", limits(2)}};
  q.tenants = {{"acme", limits(3)}};
  q.users = {{"alice", limits(4)}};

  CHECK(resolve_quota(q, principal("nobody")).max_sessions == 1);
  CHECK(resolve_quota(q, principal("bob", {"analysts"})).max_sessions == 2);
  CHECK(resolve_quota(q, principal("bob", {"analysts"}, "acme")).max_sessions == 3);
  CHECK(resolve_quota(q, principal("alice", {"analysts"}, "acme")).max_sessions == 4);
  CHECK(resolve_quota(q, principal("alice")).max_sessions == 4);
  // Matching is exact: no prefix or case folding.
  CHECK(resolve_quota(q, principal("Alice", {"Analysts"}, "acm")).max_sessions == 1);
}

TEST_CASE("resolve_quota: unset fields inherit field by field from less specific levels") {
  config::Quotas q;
  q.defaults = limits(10, 20, 30.0, 40);
  q.defaults.max_artifact_bytes = 1000;
  q.defaults.max_message_bytes = 2000;
  q.groups = {{"g", limits(std::nullopt, 21)}};
  q.tenants = {{"t", limits(std::nullopt, std::nullopt, 31.0)}};
  q.users = {{"u", limits(std::nullopt, std::nullopt, std::nullopt, 41)}};
  q.users[0].second.max_message_bytes = 2001;

  const EffectiveQuota e = resolve_quota(q, principal("u", {"g"}, "t"));
  CHECK(e.max_sessions == 10);               // default
  CHECK(e.max_concurrent_operations == 21);  // group
  CHECK(e.requests_per_second == 31.0);      // tenant
  CHECK(e.burst == 41);                      // user
  CHECK(e.max_artifact_bytes == 1000);       // default
  CHECK(e.max_message_bytes == 2001);        // user
}

TEST_CASE("resolve_quota: a more specific 0 means unlimited and overrides a limit") {
  config::Quotas q;
  q.defaults = limits(5, 5, 5.0);
  q.users = {{"root", limits(0, 0, 0.0)}};
  const EffectiveQuota e = resolve_quota(q, principal("root"));
  CHECK(e.max_sessions == 0);
  CHECK(e.max_concurrent_operations == 0);
  CHECK(e.requests_per_second == 0);
  CHECK(resolve_quota(q, principal("other")).max_sessions == 5);
}

TEST_CASE("resolve_quota: among matching groups the most generous value of each field wins") {
  config::Quotas q;
  q.defaults = limits(1, 1, 1.0);
  q.groups = {
      {"small", limits(2, 50, 3.0)},
      {"big", limits(8, 10)},
      {"unlimited-rate", limits(std::nullopt, std::nullopt, 0.0)},
      {"not-mine", limits(100, 100, 100.0)},
  };
  const EffectiveQuota both = resolve_quota(q, principal("u", {"small", "big"}));
  CHECK(both.max_sessions == 8);                // big
  CHECK(both.max_concurrent_operations == 50);  // small
  CHECK(both.requests_per_second == 3.0);       // small; big leaves it unset
  CHECK(both.burst == 3);

  const EffectiveQuota with_zero = resolve_quota(q, principal("u", {"small", "unlimited-rate"}));
  CHECK(with_zero.requests_per_second == 0);  // 0 beats any number
  CHECK(with_zero.max_sessions == 2);

  // Group order in the principal does not matter.
  CHECK(resolve_quota(q, principal("u", {"big", "small"})) == both);
  // A tenant or user entry still beats the groups.
  q.tenants = {{"t", limits(1)}};
  CHECK(resolve_quota(q, principal("u", {"small", "big"}, "t")).max_sessions == 1);
}

TEST_CASE("resolve_quota: burst defaults to max(1, ceil(rate)) when no level sets it") {
  config::Quotas q;
  q.defaults.requests_per_second = 2.5;
  CHECK(resolve_quota(q, principal("u")).burst == 3);
  q.defaults.requests_per_second = 0.2;
  CHECK(resolve_quota(q, principal("u")).burst == 1);
  q.defaults.requests_per_second = 10;
  CHECK(resolve_quota(q, principal("u")).burst == 10);
  // A burst set at a less specific level is inherited even when the rate comes from a
  // more specific one.
  q.defaults.burst = 7;
  q.users = {{"u", limits(std::nullopt, std::nullopt, 100.0)}};
  const EffectiveQuota e = resolve_quota(q, principal("u"));
  CHECK(e.requests_per_second == 100.0);
  CHECK(e.burst == 7);
}

// ---- TokenBucket ----

TEST_CASE("TokenBucket starts full: exactly burst tokens at one instant") {
  TokenBucket b;
  for (int i = 0; i < 5; ++i) CHECK(b.try_take(1.0, 5, kT0));
  CHECK_FALSE(b.try_take(1.0, 5, kT0));
  CHECK_FALSE(b.try_take(1.0, 5, kT0));
  CHECK(b.tokens() == doctest::Approx(0.0));
}

TEST_CASE("TokenBucket refills at rate per second") {
  TokenBucket b;
  for (int i = 0; i < 2; ++i) REQUIRE(b.try_take(4.0, 2, kT0));
  REQUIRE_FALSE(b.try_take(4.0, 2, kT0));
  CHECK_FALSE(b.try_take(4.0, 2, kT0 + 249ms));  // 0.996 tokens
  CHECK(b.try_take(4.0, 2, kT0 + 250ms));        // exactly one
  CHECK_FALSE(b.try_take(4.0, 2, kT0 + 250ms));
  // Half a second refills two, the whole burst.
  CHECK(b.try_take(4.0, 2, kT0 + 750ms));
  CHECK(b.try_take(4.0, 2, kT0 + 750ms));
  CHECK_FALSE(b.try_take(4.0, 2, kT0 + 750ms));
}

TEST_CASE("TokenBucket handles fractional rates") {
  TokenBucket b;
  REQUIRE(b.try_take(0.5, 1, kT0));
  CHECK_FALSE(b.try_take(0.5, 1, kT0 + 1s));
  CHECK_FALSE(b.try_take(0.5, 1, kT0 + 1999ms));
  CHECK(b.try_take(0.5, 1, kT0 + 2s));
  CHECK_FALSE(b.try_take(0.5, 1, kT0 + 2s));

  // 1/3 token per second, refilled in three steps of a second: one whole token despite
  // the rounding of 1/3.
  TokenBucket third;
  REQUIRE(third.try_take(1.0 / 3, 1, kT0));
  CHECK_FALSE(third.try_take(1.0 / 3, 1, kT0 + 1s));
  CHECK_FALSE(third.try_take(1.0 / 3, 1, kT0 + 2s));
  CHECK(third.try_take(1.0 / 3, 1, kT0 + 3s));

  // 2.5/s over 2 s is 5 tokens; the burst of 10 does not cap them.
  TokenBucket many;
  for (int i = 0; i < 10; ++i) REQUIRE(many.try_take(2.5, 10, kT0));
  int taken = 0;
  while (many.try_take(2.5, 10, kT0 + 2s)) ++taken;
  CHECK(taken == 5);
}

TEST_CASE("TokenBucket caps a long idle period at burst") {
  TokenBucket b;
  for (int i = 0; i < 3; ++i) REQUIRE(b.try_take(100.0, 3, kT0));
  const auto later = kT0 + 24h;
  for (int i = 0; i < 3; ++i) CHECK(b.try_take(100.0, 3, later));
  CHECK_FALSE(b.try_take(100.0, 3, later));
}

TEST_CASE("TokenBucket: unlimited rate, burst 0, a smaller burst, time going backwards") {
  TokenBucket unlimited;
  for (int i = 0; i < 1000; ++i) REQUIRE(unlimited.try_take(0.0, 1, kT0));
  CHECK_FALSE(unlimited.used());

  TokenBucket dflt;  // burst 0: max(1, ceil(2.5)) = 3
  int n = 0;
  while (dflt.try_take(2.5, 0, kT0)) ++n;
  CHECK(n == 3);

  TokenBucket shrink;  // saved tokens above a new, smaller burst are capped
  REQUIRE(shrink.try_take(1.0, 10, kT0));
  n = 0;
  while (shrink.try_take(1.0, 2, kT0)) ++n;
  CHECK(n == 2);

  TokenBucket back;
  REQUIRE(back.try_take(1.0, 1, kT0 + 10s));
  CHECK_FALSE(back.try_take(1.0, 1, kT0));        // earlier: no refill, no crash
  CHECK_FALSE(back.try_take(1.0, 1, kT0 + 10s));  // the earlier call gave nothing either
  CHECK(back.try_take(1.0, 1, kT0 + 11s));
}

// ---- LocalQuotas ----

TEST_CASE("LocalQuotas rate: admits burst, refuses one past it, users are separate") {
  LocalQuotas q;
  for (int i = 0; i < 3; ++i) CHECK(q.try_request("alice", 1.0, 3, kT0));
  CHECK_FALSE(q.try_request("alice", 1.0, 3, kT0));
  CHECK(q.try_request("bob", 1.0, 3, kT0));
  CHECK(q.try_request("alice", 1.0, 3, kT0 + 1s));
  CHECK_FALSE(q.try_request("alice", 1.0, 3, kT0 + 1s));
  // Unlimited creates no state.
  CHECK(q.try_request("carol", 0.0, 0, kT0));
  CHECK(q.tracked_users() == 2);
}

TEST_CASE("LocalQuotas rate: 10,000 requests from many threads admit exactly burst with time frozen") {
  LocalQuotas q;
  constexpr int kThreads = 16;
  constexpr int kPerThread = 625;  // 10,000 in all
  constexpr uint32_t kBurst = 1234;
  std::atomic<int> admitted{0};
  std::atomic<int> other_admitted{0};
  run_threads(kThreads, [&](int t) {
    for (int i = 0; i < kPerThread; ++i) {
      if (q.try_request("hot", 5.0, kBurst, kT0)) ++admitted;
      // Many other users, in every shard, at the same time.
      if (q.try_request("user-" + std::to_string(t) + "-" + std::to_string(i % 50), 1.0, 1, kT0)) ++other_admitted;
    }
  });
  CHECK(admitted.load() == static_cast<int>(kBurst));
  CHECK(other_admitted.load() == kThreads * 50);  // each of those users had one token
  CHECK_FALSE(q.try_request("hot", 5.0, kBurst, kT0));
  CHECK(q.tracked_users() == 1 + kThreads * 50);
}

TEST_CASE("LocalQuotas concurrency: at the limit, one past it, end frees a slot") {
  LocalQuotas q;
  CHECK(q.try_begin_operation("alice", 2));
  CHECK(q.try_begin_operation("alice", 2));
  CHECK_FALSE(q.try_begin_operation("alice", 2));
  CHECK(q.operations("alice") == 2);
  CHECK(q.try_begin_operation("bob", 2));
  q.end_operation("alice");
  CHECK(q.operations("alice") == 1);
  CHECK(q.try_begin_operation("alice", 2));
  CHECK_FALSE(q.try_begin_operation("alice", 2));
  // max 0 is unlimited but still counted.
  CHECK(q.try_begin_operation("alice", 0));
  CHECK(q.operations("alice") == 3);
  // Extra ends are ignored; a user with nothing in flight and no bucket is forgotten.
  for (int i = 0; i < 5; ++i) q.end_operation("alice");
  CHECK(q.operations("alice") == 0);
  q.end_operation("nobody");
  CHECK(q.operations("nobody") == 0);
  CHECK(q.tracked_users() == 1);  // bob
}

TEST_CASE("LocalQuotas concurrency: counts stay exact across threads") {
  LocalQuotas q;
  SUBCASE("begin/end pairs leave nothing in flight") {
    // Four users shared by all threads; each user's state is created and forgotten
    // over and over as its count goes from 0 to 1 and back.
    std::atomic<int> refused{0};
    run_threads(8, [&](int t) {
      for (int i = 0; i < 5000; ++i) {
        const std::string user = "u" + std::to_string((t + i) % 4);
        if (!q.try_begin_operation(user, 0)) ++refused;
        if (!q.try_begin_operation(user, 0)) ++refused;
        q.end_operation(user);
        q.end_operation(user);
      }
    });
    CHECK(refused.load() == 0);
    for (int u = 0; u < 4; ++u) CHECK(q.operations("u" + std::to_string(u)) == 0);
    CHECK(q.tracked_users() == 0);
  }
  SUBCASE("10,000 attempts at max 100 admit exactly 100") {
    std::atomic<int> admitted{0};
    run_threads(10, [&](int) {
      for (int i = 0; i < 1000; ++i) {
        if (q.try_begin_operation("alice", 100)) ++admitted;
      }
    });
    CHECK(admitted.load() == 100);
    CHECK(q.operations("alice") == 100);
  }
  SUBCASE("admitted operations that end make room for others, never more than max at once") {
    std::atomic<int> in_flight{0};
    std::atomic<int> peak{0};
    std::atomic<int> admitted{0};
    run_threads(8, [&](int) {
      for (int i = 0; i < 1250; ++i) {
        if (!q.try_begin_operation("alice", 3)) continue;
        ++admitted;
        const int now = ++in_flight;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        --in_flight;
        q.end_operation("alice");
      }
    });
    CHECK(peak.load() <= 3);
    CHECK(admitted.load() >= 3);
    CHECK(q.operations("alice") == 0);
  }
}

TEST_CASE("LocalQuotas prune forgets idle buckets and idle users, keeps users in flight") {
  LocalQuotas q;
  REQUIRE(q.try_request("idle", 1.0, 1, kT0));
  REQUIRE(q.try_request("busy", 1.0, 1, kT0));
  REQUIRE(q.try_begin_operation("busy", 1));
  REQUIRE(q.try_request("recent", 1.0, 1, kT0 + 50s));
  REQUIRE(q.tracked_users() == 3);

  q.prune(kT0 + 59s, 60s);  // nothing idle for 60 s yet
  CHECK(q.tracked_users() == 3);
  CHECK_FALSE(q.try_request("idle", 1.0, 1, kT0));  // still the same, empty bucket

  q.prune(kT0 + 60s, 60s);
  CHECK(q.tracked_users() == 2);            // "idle" gone; "busy" has an operation in flight
  CHECK(q.operations("busy") == 1);
  CHECK(q.try_request("busy", 1.0, 1, kT0));  // its bucket was dropped: full again

  q.end_operation("busy");
  q.prune(kT0 + 200s, 60s);
  CHECK(q.tracked_users() == 0);
}

TEST_CASE("LocalQuotas prune keeps a bucket that has not refilled yet") {
  LocalQuotas q;
  // 100 tokens at 0.1 per second: 1000 s to refill from empty.
  for (int i = 0; i < 100; ++i) REQUIRE(q.try_request("slow", 0.1, 100, kT0));
  REQUIRE_FALSE(q.try_request("slow", 0.1, 100, kT0));
  q.prune(kT0 + 600s, 60s);  // idle for 10 minutes, but only 60 tokens back
  CHECK(q.tracked_users() == 1);
  int admitted = 0;
  while (q.try_request("slow", 0.1, 100, kT0 + 600s)) ++admitted;
  CHECK(admitted == 60);
  q.prune(kT0 + 1200s + 600s, 60s);  // full again by then
  CHECK(q.tracked_users() == 0);
}
