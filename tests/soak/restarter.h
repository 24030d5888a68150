// Restarts one backend of the fleet every `every`, round robin over the backends and over
// the modes SIGTERM, SIGKILL, GOAWAY, each kept down for `down`, on a thread of its own.
//
// The thread lives until the Restarter is destroyed, not only until stop(): the harness
// starts each fake with PR_SET_PDEATHSIG, which kills a child when the *thread* that
// forked it ends, so the backends it restarted die with it.
//
// Threading: construct, stop() and error() on one thread; the Fleet must outlive it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "fleet.h"

namespace sparkgate::soak {

class Restarter {
 public:
  // `on_restart` is called on the restarter's thread after each completed restart.
  // every == 0: never restarts (the thread only waits for stop()).
  Restarter(Fleet& fleet, std::chrono::milliseconds every, std::chrono::milliseconds down,
            std::function<void(const RestartRecord&)> on_restart);
  ~Restarter();  // stop()s
  Restarter(const Restarter&) = delete;
  Restarter& operator=(const Restarter&) = delete;

  // No restart begins after this; one under way is completed first.
  void stop();
  // Why a restart failed (the new process did not start), or "" if none did.
  std::string error() const;

 private:
  void run();

  Fleet& fleet_;
  const std::chrono::milliseconds every_;
  const std::chrono::milliseconds down_;
  std::function<void(const RestartRecord&)> on_restart_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool restarting_ = false;  // a restart is under way
  bool exiting_ = false;     // the destructor runs: the thread may end
  std::string error_;
  std::thread thread_;
};

}  // namespace sparkgate::soak
