// When a remote JWK Set is fetched: at startup, every refresh_interval after a success,
// with a growing backoff after failures, and on demand (a token naming an unknown kid) at
// most once per min_refresh_interval. Plain arithmetic over a steady clock: no timers, no
// locking (its owner guards it), so the rate limit is unit-testable.
#pragma once

#include <chrono>

namespace sparkgate::policy {

class RefreshSchedule {
 public:
  using Clock = std::chrono::steady_clock;

  // The first retry after a failure waits this long; each further failure doubles it.
  static constexpr std::chrono::milliseconds kFirstBackoff{1000};
  // Retries are never further apart than this (nor than refresh_interval).
  static constexpr std::chrono::milliseconds kMaxBackoff{5 * 60 * 1000};

  RefreshSchedule(std::chrono::milliseconds refresh_interval, std::chrono::milliseconds min_refresh_interval)
      : refresh_interval_(refresh_interval), min_refresh_interval_(min_refresh_interval) {}

  // A fetch (scheduled or on demand) started at `now`.
  void started(Clock::time_point now);
  // The fetch that started last has ended at `now`.
  void finished(Clock::time_point now, bool ok);

  bool in_flight() const { return in_flight_; }
  bool ever_started() const { return ever_started_; }
  unsigned consecutive_failures() const { return failures_; }

  // The soonest an unknown kid may start a fetch: min_refresh_interval after the start
  // of the previous fetch, whatever started it (the epoch before any fetch).
  Clock::time_point on_demand_at() const;
  // An unknown kid may start a fetch now: none is running, and on_demand_at() is past.
  bool on_demand_allowed(Clock::time_point now) const { return !in_flight_ && now >= on_demand_at(); }

  // When the next scheduled fetch is due: at once before the first one;
  // refresh_interval after the last success ended; after n consecutive failures,
  // backoff() after the last one ended.
  Clock::time_point next_due() const;
  // min(kFirstBackoff * 2^(failures-1), kMaxBackoff, refresh_interval); zero without failures.
  std::chrono::milliseconds backoff() const;

 private:
  std::chrono::milliseconds refresh_interval_;
  std::chrono::milliseconds min_refresh_interval_;
  bool in_flight_ = false;
  bool ever_started_ = false;
  unsigned failures_ = 0;
  Clock::time_point last_start_{};
  Clock::time_point last_end_{};
};

}  // namespace sparkgate::policy
