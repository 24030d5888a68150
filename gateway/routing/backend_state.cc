#include "routing/backend_state.h"

#include <spdlog/spdlog.h>

#include <set>

namespace sparkgate::routing {

std::string BackendState::unhealthy_reason() const {
  std::lock_guard lock(reason_mu_);
  return reason_;
}

void BackendState::set_unhealthy_reason(std::string reason) {
  std::lock_guard lock(reason_mu_);
  reason_ = std::move(reason);
}

// A refused connection means nothing listens on the address: the Spark process is gone.
void BackendState::note_refused(const std::string& reason) {
  if (reason.find("onnection refused") != std::string::npos) refused_while_out_ = true;
}

bool BackendState::report_failure(uint32_t threshold, const std::string& reason) {
  if (threshold == 0) return false;
  uint32_t n = consecutive_passive_failures_.fetch_add(1) + 1;
  if (!healthy.load()) {
    note_refused(reason);
    return false;
  }
  if (n < threshold) return false;
  if (!healthy.exchange(false)) return false;
  refused_while_out_ = false;
  note_refused(reason);
  consecutive_probe_successes_ = 0;
  set_unhealthy_reason(std::to_string(n) + " consecutive failures of live traffic, last: " + reason);
  spdlog::warn("backend {} of cluster {} ejected: {}", name_, cluster_, unhealthy_reason());
  return true;
}

bool BackendState::probe_failed(uint32_t threshold, const std::string& reason) {
  consecutive_probe_successes_ = 0;
  uint32_t n = consecutive_probe_failures_.fetch_add(1) + 1;
  if (!healthy.load()) {
    note_refused(reason);
    set_unhealthy_reason("health check failed: " + reason);
    return false;
  }
  if (n < threshold) return false;
  if (!healthy.exchange(false)) return false;
  refused_while_out_ = false;
  note_refused(reason);
  set_unhealthy_reason("health check failed " + std::to_string(n) + " times, last: " + reason);
  spdlog::warn("backend {} of cluster {} is unhealthy: {}", name_, cluster_, unhealthy_reason());
  return true;
}

bool BackendState::probe_succeeded(uint32_t threshold) {
  consecutive_probe_failures_ = 0;
  if (healthy.load()) return false;
  uint32_t n = consecutive_probe_successes_.fetch_add(1) + 1;
  if (n < threshold) return false;
  consecutive_probe_successes_ = 0;
  consecutive_passive_failures_ = 0;
  bool restarted = refused_while_out_.exchange(false);
  if (restarted) epoch.fetch_add(1);
  set_unhealthy_reason({});
  healthy = true;
  spdlog::info("backend {} of cluster {} is healthy again{}", name_, cluster_,
               restarted ? " (it refused connections while out: its earlier sessions are lost)" : "");
  return true;
}

const ClusterBackends* BackendSnapshot::find(const std::string& cluster) const {
  auto it = clusters.find(cluster);
  return it == clusters.end() ? nullptr : &it->second;
}

BackendPtr BackendSnapshot::find(const std::string& cluster, const std::string& address) const {
  const auto* c = find(cluster);
  if (!c) return nullptr;
  for (const auto& b : c->backends) {
    if (b->name() == address) return b;
  }
  return nullptr;
}

void BackendRegistry::apply_config(std::shared_ptr<const config::Config> config) {
  std::lock_guard lock(mu_);
  config_ = std::move(config);
  // Discovery results of clusters that no longer use dns are dropped.
  for (auto it = discovered_.begin(); it != discovered_.end();) {
    const auto* c = config_->find_cluster(it->first);
    it = (c && (c->dns || c->engines)) ? std::next(it) : discovered_.erase(it);
  }
  rebuild_locked();
}

void BackendRegistry::apply_discovery(const std::string& cluster, const std::vector<config::Endpoint>& addresses) {
  std::lock_guard lock(mu_);
  discovered_[cluster] = addresses;
  rebuild_locked();
}

void BackendRegistry::prune() {
  std::lock_guard lock(mu_);
  rebuild_locked();
}

void BackendRegistry::rebuild_locked() {
  auto snap = std::make_shared<BackendSnapshot>();
  std::map<std::pair<std::string, std::string>, BackendPtr> next;
  if (!config_) {
    snapshot_.store(snap);
    return;
  }
  auto take = [&](const std::string& cluster, const config::Endpoint& address) -> BackendPtr {
    auto key = std::make_pair(cluster, address.to_string());
    if (auto it = next.find(key); it != next.end()) return nullptr;  // listed twice
    BackendPtr state;
    if (auto it = states_.find(key); it != states_.end()) state = it->second;
    else state = std::make_shared<BackendState>(cluster, address);
    next[key] = state;
    return state;
  };
  for (const auto& c : config_->clusters) {
    auto& out = snap->clusters[c.name];
    out.name = c.name;
    for (const auto& b : c.backends) {
      auto state = take(c.name, b.address);
      if (!state) continue;
      state->weight = std::max<uint32_t>(1, b.weight);
      state->max_sessions = b.max_sessions;
      state->config_drain = b.drain;
      state->dns_gone = false;
      out.backends.push_back(state);
    }
    if (c.engines) {
      // Exactly the engines that are ready now: a stopped or crashed engine's backend is
      // retired at once (below), so its sessions learn that it is gone.
      if (auto it = discovered_.find(c.name); it != discovered_.end()) {
        for (const auto& a : it->second) {
          auto state = take(c.name, a);
          if (!state) continue;
          state->engine = true;
          out.backends.push_back(state);
        }
      }
      continue;
    }
    if (!c.dns) continue;
    std::set<std::string> current;
    if (auto it = discovered_.find(c.name); it != discovered_.end()) {
      for (const auto& a : it->second) {
        current.insert(a.to_string());
        auto state = take(c.name, a);
        if (!state) continue;
        state->weight = 1;
        state->max_sessions = 0;
        state->config_drain = false;
        state->dns_gone = false;
        out.backends.push_back(state);
      }
    }
    // Addresses that left DNS stay, drained, while sessions still use them and they are
    // healthy; then they go.
    for (const auto& [key, state] : states_) {
      if (key.first != c.name || next.count(key)) continue;
      bool static_backend = false;
      for (const auto& b : c.backends) static_backend |= b.address.to_string() == key.second;
      if (static_backend) continue;
      if (state->sessions.load() > 0 && state->healthy.load()) {
        state->dns_gone = true;
        next[key] = state;
        out.backends.push_back(state);
      }
    }
  }
  for (const auto& [key, state] : states_) {
    if (!next.count(key)) state->retired = true;
  }
  states_ = std::move(next);
  snapshot_.store(snap);
}

std::vector<BackendPtr> BackendRegistry::drain_backend(const std::string& address, const std::string* cluster,
                                                       bool drain) {
  std::vector<BackendPtr> changed;
  for (const auto& b : all()) {
    if (b->name() != address || (cluster && b->cluster() != *cluster)) continue;
    b->admin_drain_.store(drain);
    changed.push_back(b);
  }
  return changed;
}

std::vector<BackendPtr> BackendRegistry::all() const {
  std::vector<BackendPtr> out;
  auto snap = snapshot();
  for (const auto& [name, c] : snap->clusters) out.insert(out.end(), c.backends.begin(), c.backends.end());
  return out;
}

bool BackendRegistry::any_healthy() const {
  auto snap = snapshot();
  for (const auto& [name, c] : snap->clusters) {
    for (const auto& b : c.backends) {
      if (b->healthy.load() && !b->retired.load()) return true;
    }
  }
  return false;
}

}  // namespace sparkgate::routing
