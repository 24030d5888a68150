// The soak test's client load: `clients` threads, each with its own connection to the
// gateway, each looping over a weighted mix of actions (tally.h, Action) until stopped.
// Every RPC's outcome is judged (Verdict) against what the action asked for and against
// the fleet's restart record, and counted in the Tally.
//
// Threading: construct, start() and stop() on one thread; the Fleet and Tally are shared
// with the client threads and must outlive the Traffic.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "fleet.h"
#include "tally.h"

namespace sparkgate::soak {

struct TrafficOptions {
  std::string gateway_address;  // "127.0.0.1:PORT"
  int clients = 6;
  uint64_t seed = 1;
  // How long after a restarted backend is up again its errors are still excused: the
  // health checker needs healthy_threshold probes to take it back.
  std::chrono::milliseconds settle{5000};
  // Each client abandons one session (never releases it) this often; the gateway's
  // sessions.idle_timeout then expires it. Kept rare: each expiry leaves a tombstone that
  // the gateway keeps for 24 h (routing/session_registry.h), i.e. memory that grows with
  // the run by design.
  std::chrono::milliseconds abandon_every{30000};
  // Time zero of the run, for the times in the descriptions of unexpected outcomes.
  Clock::time_point epoch = Clock::now();
};

class Traffic {
 public:
  Traffic(TrafficOptions options, const Fleet& fleet, Tally& tally);
  ~Traffic();  // stops the threads if still running
  Traffic(const Traffic&) = delete;
  Traffic& operator=(const Traffic&) = delete;

  void start();
  // Asks every client to stop after its current action; each then releases its
  // long-lived session and closes its connection. Returns once all have.
  void stop();

 private:
  void run_client(int index);

  TrafficOptions options_;
  const Fleet& fleet_;
  Tally& tally_;
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> threads_;
};

}  // namespace sparkgate::soak
