#include "restarter.h"

#include <array>
#include <exception>

namespace sparkgate::soak {

Restarter::Restarter(Fleet& fleet, std::chrono::milliseconds every, std::chrono::milliseconds down,
                     std::function<void(const RestartRecord&)> on_restart)
    : fleet_(fleet), every_(every), down_(down), on_restart_(std::move(on_restart)), thread_([this] { run(); }) {}

Restarter::~Restarter() {
  stop();
  {
    std::lock_guard lock(mu_);
    exiting_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Restarter::stop() {
  std::unique_lock lock(mu_);
  stopping_ = true;
  cv_.notify_all();
  cv_.wait(lock, [this] { return !restarting_; });
}

std::string Restarter::error() const {
  std::lock_guard lock(mu_);
  return error_;
}

void Restarter::run() {
  static constexpr std::array<RestartMode, 3> kModes{RestartMode::kTerm, RestartMode::kKill, RestartMode::kGoaway};
  auto next = Clock::now() + every_;
  for (size_t n = 0;; ++n) {
    {
      std::unique_lock lock(mu_);
      if (every_.count() > 0) cv_.wait_until(lock, next, [this] { return stopping_; });
      if (stopping_ || every_.count() == 0) {
        cv_.wait(lock, [this] { return exiting_; });
        return;
      }
      restarting_ = true;
    }
    std::string error;
    try {
      const RestartRecord r = fleet_.restart(n % fleet_.size(), kModes[(n + n / fleet_.size()) % kModes.size()], down_);
      if (on_restart_) on_restart_(r);
    } catch (const std::exception& e) {
      error = e.what();
    }
    {
      std::lock_guard lock(mu_);
      restarting_ = false;
      if (!error.empty()) {
        error_ = error;
        stopping_ = true;  // no more restarts; the thread waits for the destructor
      }
    }
    cv_.notify_all();
    next += every_;
  }
}

}  // namespace sparkgate::soak
