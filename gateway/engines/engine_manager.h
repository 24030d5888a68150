// Engines on demand (docs/engines.md): one Spark Connect server per (cluster, share key),
// started by the first session that needs it, stopped when it has had no session for the
// cluster's idle_timeout, replaced when it crashed.
//
// States: starting -> ready -> stopping (then gone); a start that fails or times out, and
// an engine that exits by itself, is gone at once (the next acquire starts a new one).
// Concurrent acquires of one key share one start: each waits (a base::Cancellable) in the
// engine's waiter list, and every waiter's completion is posted to its own executor.
//
// Launches, readiness polls, child reaping and stops all run on the manager's own
// thread, never on a worker.
//
// Threading: thread-safe; waiter completions run on the executor given to acquire().
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/cancellable.h"
#include "base/principal.h"
#include "config/config.h"
#include "engines/engine_coordinator.h"
#include "engines/launcher.h"
#include "grpcwire/status.h"

namespace sparkgate::observe {
class Metrics;
class AccessLog;
}  // namespace sparkgate::observe

namespace sparkgate::engines {

// What a session of an engines cluster is routed to.
struct EngineTarget {
  config::Endpoint address;
  std::string token;  // sent as authorization: Bearer <token>; never logged
};

struct EngineAnswer {
  grpcwire::Status status;               // not ok: refused (max_engines, start failed)
  std::optional<EngineTarget> target;    // ready now
  base::Cancellable* pending = nullptr;  // starting: the waiter is called later
};

class EngineWaiter {
 public:
  // The start ended: ok with the target, or the reason it failed.
  virtual void on_engine(const grpcwire::Status& status, const EngineTarget* target) = 0;

 protected:
  ~EngineWaiter() = default;
};

struct EngineInfo {
  std::string cluster, key, state, address;
  int64_t pid = 0;
  int64_t sessions = 0;
  bool remote = false;  // started by another replica (sessions.store: redis): no process here
  std::chrono::system_clock::time_point started;
  std::optional<std::chrono::system_clock::time_point> idle_since;
};

// A gRPC grpc-timeout value ("30S", "1500m", "2M") as a duration; nullopt if malformed.
std::optional<std::chrono::nanoseconds> parse_grpc_timeout(std::string_view value);

// The share key of `principal` in a cluster shared `share` ("" when it has none, e.g. no
// group: the caller refuses).
std::string share_key(config::Engines::Share share, const base::Principal& principal);

class EngineManager {
 public:
  struct Hooks {
    // The ready engines of `cluster` changed: the addresses sessions may be pinned to.
    std::function<void(const std::string& cluster, const std::vector<config::Endpoint>& ready)> publish;
    // Live sessions on the engine at `address` (host:port) of `cluster`.
    std::function<int64_t(const std::string& cluster, const std::string& address)> sessions;
  };
  EngineManager(std::unique_ptr<Launcher> launcher, Hooks hooks, observe::Metrics* metrics = nullptr,
                observe::AccessLog* access_log = nullptr,
                std::chrono::milliseconds tick = std::chrono::milliseconds(100),
                std::unique_ptr<EngineCoordinator> coordinator = nullptr);
  ~EngineManager();
  EngineManager(const EngineManager&) = delete;
  EngineManager& operator=(const EngineManager&) = delete;

  // The engine of (cluster, key): ready now, refused, or pending (`w` is called on `ex`
  // unless the caller cancels first).
  // `client_deadline` (from the request's grpc-timeout) bounds this one wait: past it the
  // waiter gets DEADLINE_EXCEEDED while the start goes on for the others.
  EngineAnswer acquire(const config::Cluster& cluster, const std::string& key, EngineWaiter& w,
                       boost::asio::any_io_executor ex,
                       std::optional<std::chrono::steady_clock::time_point> client_deadline = std::nullopt);
  // The token of the ready engine at `address` of `cluster` (nullopt: no such engine, it
  // stopped or crashed).
  std::optional<EngineTarget> find(const std::string& cluster, const std::string& address) const;

  std::vector<EngineInfo> list() const;
  // Stops the engine of `key` (in any cluster, or only `cluster` when not empty). False
  // if there is none.
  bool stop(const std::string& key, const std::string& cluster = {});
  // Stops every engine and waits for them to exit (SIGKILL after their grace). Called at
  // shutdown; later acquires are refused.
  void shutdown();

 private:
  using Clock = std::chrono::steady_clock;
  enum class State { kStarting, kReady, kStopping };
  struct Wait;
  struct Engine {
    std::string cluster, key;
    config::Engines spec;
    State state = State::kStarting;
    std::string token;
    uint16_t port = 0;
    std::unique_ptr<EngineProcess> proc;
    std::optional<EngineTarget> target;
    std::chrono::steady_clock::time_point launched, deadline, idle_since_steady;
    mutable std::chrono::steady_clock::time_point last_acquire;
    std::chrono::system_clock::time_point started;
    std::optional<std::chrono::system_clock::time_point> idle_since;
    int64_t sessions = 0;
    std::string stop_reason;
    // With a coordinator (one engine per key across replicas):
    bool remote = false;     // another replica's engine (or its start): no process here
    bool claimed = false;    // our start claim holds: we own the engine and its Redis key
    bool asking = false;     // a Redis call for it is in flight
    Clock::time_point next_redis{};
    std::string redis_value;  // ours: what we stored; remote: what we saw ("ready ...")
    int64_t remote_users = 0; // owner: other replicas with a live use lease
    Clock::time_point users_at{};  // owner: when remote_users was last counted
    std::vector<std::shared_ptr<Wait>> waiters;
  };
  using EnginePtr = std::shared_ptr<Engine>;

  void run();
  void expire_waiters_locked(Engine& e, Clock::time_point now);
  void ready_locked(const EnginePtr& e, Clock::time_point now);
  // The coordinated start of a key we do not own (yet): claim, or poll the owner's value.
  void remote_start_locked(const EnginePtr& e, Clock::time_point now);
  void on_redis_value_locked(const EnginePtr& e, const std::optional<std::string>& value, bool claiming);
  bool live_locked(const EnginePtr& e) const;
  void redis_failed_locked(const EnginePtr& e, const std::string& error);
  void tick_locked();
  void fail_waiters_locked(Engine& e, const grpcwire::Status& status);
  void begin_stop_locked(const EnginePtr& e, const std::string& reason);
  void publish_locked(const std::string& cluster);
  void update_gauges_locked();
  void log(const char* event, const Engine& e, const std::string& reason, double start_s = -1);

  std::unique_ptr<Launcher> launcher_;
  Hooks hooks_;
  observe::Metrics* metrics_;
  observe::AccessLog* access_log_;
  std::chrono::milliseconds tick_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_all_ = false;
  bool thread_done_ = false;
  std::map<std::pair<std::string, std::string>, EnginePtr> engines_;  // (cluster, key): starting or ready
  std::list<EnginePtr> stopping_;                                     // after SIGTERM, until they exit
  std::set<uint16_t> used_ports_;  // never handed out twice, so that an old session cannot reach a new engine
  std::unique_ptr<EngineCoordinator> coord_;  // null: engines are per replica
  std::thread thread_;
};

// The process's EngineManager seen from one worker: completions are posted to `worker`.
class WorkerEngines {
 public:
  WorkerEngines(EngineManager& m, boost::asio::any_io_executor worker) : m_(m), worker_(std::move(worker)) {}
  EngineAnswer acquire(const config::Cluster& cluster, const std::string& key, EngineWaiter& w,
                       std::optional<std::chrono::steady_clock::time_point> client_deadline = std::nullopt) {
    return m_.acquire(cluster, key, w, worker_, client_deadline);
  }
  std::optional<EngineTarget> find(const std::string& cluster, const std::string& address) const {
    return m_.find(cluster, address);
  }

 private:
  EngineManager& m_;
  boost::asio::any_io_executor worker_;
};

}  // namespace sparkgate::engines
