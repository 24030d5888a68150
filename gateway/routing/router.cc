#include "routing/router.h"

#include <functional>

namespace sparkgate::routing {

namespace {
// Pins idle this long are dropped so that the table cannot grow without bound. Spark's
// own idle session timeout is shorter (60 minutes by default), so a pin never outlives a
// session a backend still holds.
constexpr auto kPinIdleLimit = std::chrono::hours(2);
}  // namespace

std::string Router::key(const std::string& user_id, const std::string& session_id) {
  // The separator cannot occur in a user id from a well-formed UTF-8 string.
  return user_id + '\xff' + session_id;
}

Router::Shard& Router::shard_for(const std::string& k) { return shards_[std::hash<std::string>{}(k) % kShards]; }

const config::Backend& Router::place(const config::Cluster& cluster) {
  std::lock_guard lock(counts_mu_);
  const config::Backend* best = &cluster.backends.front();
  size_t best_count = SIZE_MAX;
  for (const auto& b : cluster.backends) {
    size_t n = sessions_per_backend_[b.address.to_string()];
    if (n < best_count) {
      best = &b;
      best_count = n;
    }
  }
  ++sessions_per_backend_[best->address.to_string()];
  return *best;
}

grpc::Status Router::route(const config::Config& config, const spark::RpcInfo&, const spark::Envelope& envelope,
                           const http2::HeaderMap&, RouteDecision& out) {
  if (config.routes.empty()) {
    return {grpc::StatusCode::kPermissionDenied, "no route matches user '" + envelope.user_id + "'"};
  }
  const config::Cluster* cluster = config.find_cluster(config.routes.front().cluster);
  if (!cluster || cluster->backends.empty()) {
    return {grpc::StatusCode::kUnavailable, "cluster '" + config.routes.front().cluster + "' has no backends"};
  }
  out.cluster = cluster->name;
  auto k = key(envelope.user_id, envelope.session_id);
  auto& shard = shard_for(k);
  auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(shard.mu);
    auto it = shard.pins.find(k);
    if (it != shard.pins.end() && it->second.cluster == cluster->name) {
      for (const auto& b : cluster->backends) {
        if (b.address.to_string() == it->second.backend) {
          it->second.last_used = now;
          out.backend = b.address;
          return {};
        }
      }
      // The backend left the cluster; the session cannot follow it.
      return {grpc::StatusCode::kUnavailable, "the backend " + it->second.backend + " of session " +
                                                  envelope.session_id + " is no longer configured"};
    }
    // Sweep a few idle pins of this shard while we hold its lock.
    size_t budget = 8;
    for (auto p = shard.pins.begin(); p != shard.pins.end() && budget > 0; --budget) {
      if (now - p->second.last_used > kPinIdleLimit) {
        std::lock_guard counts(counts_mu_);
        auto& n = sessions_per_backend_[p->second.backend];
        if (n > 0) --n;
        p = shard.pins.erase(p);
      } else {
        ++p;
      }
    }
  }
  const auto& backend = place(*cluster);
  {
    std::lock_guard lock(shard.mu);
    auto [it, inserted] = shard.pins.try_emplace(k, Pin{cluster->name, backend.address.to_string(), now});
    if (!inserted) {
      // Another worker placed the same session first: follow it.
      std::lock_guard counts(counts_mu_);
      auto& n = sessions_per_backend_[backend.address.to_string()];
      if (n > 0) --n;
      for (const auto& b : cluster->backends) {
        if (b.address.to_string() == it->second.backend) out.backend = b.address;
      }
      return {};
    }
  }
  out.backend = backend.address;
  return {};
}

void Router::forget_session(const std::string& user_id, const std::string& session_id) {
  auto k = key(user_id, session_id);
  auto& shard = shard_for(k);
  std::lock_guard lock(shard.mu);
  auto it = shard.pins.find(k);
  if (it == shard.pins.end()) return;
  {
    std::lock_guard counts(counts_mu_);
    auto& n = sessions_per_backend_[it->second.backend];
    if (n > 0) --n;
  }
  shard.pins.erase(it);
}

size_t Router::session_count() const {
  size_t n = 0;
  for (const auto& s : shards_) {
    std::lock_guard lock(s.mu);
    n += s.pins.size();
  }
  return n;
}

}  // namespace sparkgate::routing
