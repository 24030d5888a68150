#include "policy/refresh_schedule.h"

#include <algorithm>

namespace sparkgate::policy {

void RefreshSchedule::started(Clock::time_point now) {
  in_flight_ = true;
  ever_started_ = true;
  last_start_ = now;
}

void RefreshSchedule::finished(Clock::time_point now, bool ok) {
  in_flight_ = false;
  last_end_ = now;
  failures_ = ok ? 0 : failures_ + 1;
}

RefreshSchedule::Clock::time_point RefreshSchedule::on_demand_at() const {
  if (!ever_started_) return Clock::time_point{};
  return last_start_ + min_refresh_interval_;
}

std::chrono::milliseconds RefreshSchedule::backoff() const {
  if (failures_ == 0) return std::chrono::milliseconds(0);
  auto cap = std::min(kMaxBackoff, refresh_interval_);
  auto delay = kFirstBackoff;
  for (unsigned i = 1; i < failures_ && delay < cap; ++i) delay *= 2;
  return std::min(delay, cap);
}

RefreshSchedule::Clock::time_point RefreshSchedule::next_due() const {
  if (!ever_started_) return Clock::time_point{};
  return last_end_ + (failures_ ? backoff() : refresh_interval_);
}

}  // namespace sparkgate::policy
