// The live view of every cluster's backends: the configured and discovered addresses,
// and per backend its health, drain flag and session count.
//
// A BackendState outlives config reloads and DNS refreshes as long as its (cluster,
// address) stays: a reload keeps health and session counts. Readers take a Snapshot
// (immutable, swapped atomically); the per-backend fields are atomics, written by the
// health checker, the router and the admin API.
//
// Threading: every method is thread-safe.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.h"

namespace sparkgate::observe {
class ClusterMetrics;
}

namespace sparkgate::routing {

class BackendState {
 public:
  BackendState(std::string cluster, config::Endpoint address) : cluster_(std::move(cluster)), address_(std::move(address)), name_(address_.to_string()) {}

  const std::string& cluster() const { return cluster_; }
  const config::Endpoint& address() const { return address_; }
  const std::string& name() const { return name_; }  // "host:port"

  // Settings from the config (or discovery); replaced on reload.
  std::atomic<uint32_t> weight{1};
  std::atomic<uint32_t> max_sessions{0};
  std::atomic<bool> config_drain{false};  // `drain: true` in the config
  std::atomic<bool> dns_gone{false};      // discovered, and no longer in DNS
  // Left the config (or DNS, after draining): its sessions cannot follow it anywhere.
  std::atomic<bool> retired{false};
  // A Spark engine the gateway started (cluster engines:); retired when it stops.
  std::atomic<bool> engine{false};

  // Health: starts healthy so that a fresh gateway serves at once; the checker and
  // passive ejection move it.
  std::atomic<bool> healthy{true};
  // Increments each time the backend returns to healthy after connections to it were
  // refused while it was out (nothing listened: the process was gone), so its Spark
  // sessions from before are lost. A backend that only stalled (timeouts) keeps its epoch,
  // and a restart the checker missed is caught by the server-side session id instead.
  std::atomic<uint64_t> epoch{0};
  // Live sessions placed here (maintained by the session registry).
  std::atomic<int64_t> sessions{0};
  // The metric families of this backend's cluster, cached by the proxy on first use.
  std::atomic<observe::ClusterMetrics*> metrics{nullptr};

  // Drained through the admin API (BackendRegistry::drain_backend).
  bool admin_drained() const { return admin_drain_.load(); }

  // Takes new sessions: healthy and not drained by anything.
  bool accepts_sessions() const {
    return healthy.load() && !config_drain.load() && !admin_drain_.load() && !dns_gone.load();
  }
  bool draining() const { return config_drain.load() || admin_drain_.load() || dns_gone.load(); }
  // The epoch this backend will have once it is healthy again: one more if connections
  // to it were refused while it was out (it restarted). A session placed on it while it
  // is out (panic routing) lives on the restarted server, so it carries this epoch.
  uint64_t epoch_when_back() const { return epoch.load() + (refused_while_out_.load() ? 1 : 0); }

  // Why it is not serving, for error messages ("unhealthy: 3 consecutive connect failures").
  std::string unhealthy_reason() const;
  void set_unhealthy_reason(std::string reason);

  // Passive ejection: live traffic reports outcomes. Returns true when this call moved
  // the backend to unhealthy. Counted apart from the probes.
  bool report_failure(uint32_t threshold, const std::string& reason);
  void report_success() { consecutive_passive_failures_.store(0); }

  // Active health checks. Each returns true when the call changed `healthy`.
  bool probe_failed(uint32_t threshold, const std::string& reason);
  bool probe_succeeded(uint32_t threshold);

 private:
  friend class BackendRegistry;  // drain_backend
  std::string cluster_;
  config::Endpoint address_;
  std::atomic<bool> admin_drain_{false};
  std::string name_;
  void note_refused(const std::string& reason);

  std::atomic<uint32_t> consecutive_passive_failures_{0};
  std::atomic<uint32_t> consecutive_probe_failures_{0};
  std::atomic<uint32_t> consecutive_probe_successes_{0};
  std::atomic<bool> refused_while_out_{false};
  mutable std::mutex reason_mu_;
  std::string reason_;
};

using BackendPtr = std::shared_ptr<BackendState>;

// The backends of one cluster, as of one snapshot.
struct ClusterBackends {
  std::string name;
  std::vector<BackendPtr> backends;  // static ones first, in config order, then discovered
};

struct BackendSnapshot {
  std::map<std::string, ClusterBackends> clusters;  // by cluster name
  const ClusterBackends* find(const std::string& cluster) const;
  // nullptr if `cluster` has no backend with that address.
  BackendPtr find(const std::string& cluster, const std::string& address) const;
};

class BackendRegistry {
 public:
  std::shared_ptr<const BackendSnapshot> snapshot() const { return snapshot_.load(); }

  // Rebuilds the snapshot from `config` plus the discovered addresses, reusing the
  // BackendState of every (cluster, address) that stays.
  void apply_config(std::shared_ptr<const config::Config> config);
  // For a cluster with engines: the ready engines' addresses (engines::EngineManager).
  // The addresses a cluster's `dns` name resolves to now (host:port). Addresses that
  // disappear are kept, marked dns_gone (drained), until they have no sessions or fail
  // their health check.
  void apply_discovery(const std::string& cluster, const std::vector<config::Endpoint>& addresses);
  // Drops backends that are dns_gone and have neither sessions nor health.
  void prune();

  // Every backend of every cluster (for the health checker and the admin API).
  std::vector<BackendPtr> all() const;
  // The admin API's drain: sets (`drain`) or clears the admin drain of every backend whose
  // address is `address` (host:port), only in `cluster` when that is not null. A drained
  // backend takes no new sessions; its sessions continue. Returns the backends changed.
  std::vector<BackendPtr> drain_backend(const std::string& address, const std::string* cluster, bool drain);
  // True if some backend of some cluster is healthy (readiness).
  bool any_healthy() const;

 private:
  void rebuild_locked();

  mutable std::mutex mu_;
  std::shared_ptr<const config::Config> config_;  // the config last applied
  std::map<std::string, std::vector<config::Endpoint>> discovered_;  // by cluster
  std::map<std::pair<std::string, std::string>, BackendPtr> states_;  // (cluster, address)
  std::atomic<std::shared_ptr<const BackendSnapshot>> snapshot_{std::make_shared<BackendSnapshot>()};
};

}  // namespace sparkgate::routing
