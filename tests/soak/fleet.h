// The soak test's backends: N fake Spark Connect servers (tests/fakes/fake_spark_server)
// on fixed ports, one of which the restarter stops and starts again now and then, and the
// record of those restarts that decides which client errors they excuse.
//
// Each fake process answers with its own random server_side_session_id, so a response
// tells which backend (and which incarnation of it) served the call.
//
// Threading: restart() on one thread (the restarter); every other member from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "harness.h"

namespace sparkgate::soak {

using Clock = std::chrono::steady_clock;

// How a backend is taken down.
enum class RestartMode {
  kTerm,    // SIGTERM: the fake stops gracefully (in-flight calls get 200 ms)
  kKill,    // SIGKILL: connections die at once
  kGoaway,  // an x-fake-goaway call: GOAWAY, in-flight calls get 1 s, then it exits
};
const char* restart_mode_name(RestartMode mode);

struct RestartRecord {
  size_t backend = 0;  // index into the fleet
  RestartMode mode = RestartMode::kTerm;
  Clock::time_point down_at;  // just before it was told to stop
  Clock::time_point up_at;    // the new process serves and its session id is known;
                              // Clock::time_point::max() while the restart is under way
};

// The server_side_session_id in `response`, the first response message of `rpc`; "" if
// it has none or cannot be read.
std::string server_side_session_id(std::string_view rpc, const std::string& response);

class Fleet {
 public:
  // Starts `n` fakes on kernel-chosen ports. Throws std::runtime_error if one cannot start.
  explicit Fleet(size_t n);

  size_t size() const { return slots_.size(); }
  // "127.0.0.1:PORT" of backend i; fixed for the fleet's life.
  const std::string& address(size_t i) const { return slots_[i].address; }
  std::set<uint16_t> ports() const;

  // The backend whose current or any earlier process answers with `ssid`.
  std::optional<size_t> backend_of_ssid(const std::string& ssid) const;
  // The backend whose address appears in `message` (the gateway names the backend in the
  // errors it makes).
  std::optional<size_t> backend_named_in(std::string_view message) const;

  // Takes backend i down with `mode`, keeps it down for `down`, then starts a new process
  // on the same port and learns its session id. Returns the completed record. Throws
  // std::runtime_error if the new process does not start.
  RestartRecord restart(size_t i, RestartMode mode, std::chrono::milliseconds down);

  // True if [start, end] overlaps a restart of backend i, from down_at to `settle` after
  // up_at (the health checker needs that long to see it healthy again).
  bool restart_overlaps(size_t i, Clock::time_point start, Clock::time_point end, Clock::duration settle) const;
  // The same for any backend.
  bool any_restart_overlaps(Clock::time_point start, Clock::time_point end, Clock::duration settle) const;
  // True if a restart of backend i began before `t`.
  bool restarted_before(size_t i, Clock::time_point t) const;

  std::vector<RestartRecord> restarts() const;

 private:
  struct Slot {
    std::unique_ptr<itest::FakeServer> server;
    std::string address;
    uint16_t port = 0;
  };
  // Asks backend i directly (not through the gateway) for its session id.
  std::string ask_ssid(size_t i) const;
  void start(size_t i);

  std::vector<Slot> slots_;  // the vector never changes size; `server` only in restart()
  mutable std::mutex mu_;
  std::map<std::string, size_t> ssid_to_backend_;  // every incarnation's id
  std::vector<RestartRecord> restarts_;
};

}  // namespace sparkgate::soak
