#include "routing/session_registry.h"

#include <algorithm>

namespace sparkgate::routing {

const char* end_reason_name(EndReason r) {
  switch (r) {
    case EndReason::kReleased: return "released";
    case EndReason::kExpiredIdle: return "expired";
    case EndReason::kExpiredLifetime: return "expired";
    case EndReason::kBackendLost: return "backend_lost";
    case EndReason::kBackendRemoved: return "backend_removed";
    case EndReason::kClosedByOperator: return "closed_by_operator";
    case EndReason::kUnplaced: return "unplaced";
  }
  return "?";
}

Session::Session(std::string user, std::string session, std::string cluster_name, BackendPtr backend_state,
                 uint64_t backend_epoch_at_start, Clock::time_point now)
    : user_id(std::move(user)),
      session_id(std::move(session)),
      cluster(std::move(cluster_name)),
      backend(std::move(backend_state)),
      backend_epoch(backend_epoch_at_start),
      created(now),
      created_wall(std::chrono::system_clock::now()),
      last_active_ns(now.time_since_epoch().count()) {}

std::string Session::server_side_session_id() const {
  return server_side_session_id_known_.load(std::memory_order_acquire) ? server_side_session_id_ : std::string();
}

bool Session::learn_server_side_session_id(std::string_view id) {
  if (id.empty()) return true;
  if (!server_side_session_id_known_.load(std::memory_order_acquire)) {
    std::lock_guard lock(mu_);
    if (!server_side_session_id_known_.load(std::memory_order_relaxed)) {
      server_side_session_id_ = id;
      server_side_session_id_known_.store(true, std::memory_order_release);
      return true;
    }
  }
  return server_side_session_id_ == id;  // never written again once known
}

void Session::add_operation(const std::string& operation_id) {
  std::lock_guard lock(mu_);
  if (std::find(operations_.begin(), operations_.end(), operation_id) != operations_.end()) return;
  operations_.push_back(operation_id);
  if (operations_.size() > kMaxOperations) operations_.pop_front();
}

bool Session::has_operation(const std::string& operation_id) const {
  std::lock_guard lock(mu_);
  return std::find(operations_.begin(), operations_.end(), operation_id) != operations_.end();
}

std::string Session::tenant() const {
  std::lock_guard lock(mu_);
  return tenant_;
}

void Session::set_tenant(const std::string& tenant) {
  std::lock_guard lock(mu_);
  tenant_ = tenant;
}

uint64_t Session::attach_stream(AttachedStream s) {
  std::lock_guard lock(mu_);
  uint64_t id = ++next_stream_id_;
  streams_.emplace_back(id, std::move(s));
  return id;
}

void Session::detach_stream(uint64_t id) {
  std::lock_guard lock(mu_);
  for (auto it = streams_.begin(); it != streams_.end(); ++it) {
    if (it->first == id) {
      streams_.erase(it);
      return;
    }
  }
}

std::vector<Session::AttachedStream> Session::attached_streams() const {
  std::lock_guard lock(mu_);
  std::vector<AttachedStream> out;
  out.reserve(streams_.size());
  for (const auto& [id, s] : streams_) out.push_back(s);
  return out;
}

std::string SessionRegistry::key(const std::string& user_id, const std::string& session_id) {
  // 0xff never occurs in UTF-8, so (user, session) pairs cannot collide.
  std::string k;
  k.reserve(user_id.size() + 1 + session_id.size());
  k.append(user_id).push_back('\xff');
  k.append(session_id);
  return k;
}

SessionRegistry::Shard& SessionRegistry::shard_for(const std::string& k) const {
  return shards_[std::hash<std::string>{}(k) % kShards];
}

void SessionRegistry::bury_locked(Shard& s, const std::string& k, Tombstone t) {
  // Expire old tombstones first, then cap the count.
  while (!s.dead_order.empty() &&
         (t.when - s.dead_order.front().second > kTombstoneTtl || s.dead_order.size() >= kMaxTombstonesPerShard)) {
    auto it = s.dead.find(s.dead_order.front().first);
    if (it != s.dead.end() && it->second.when == s.dead_order.front().second) s.dead.erase(it);
    s.dead_order.pop_front();
  }
  s.dead_order.emplace_back(k, t.when);
  s.dead[k] = std::move(t);
}

void SessionRegistry::count_user_locked_shard(const std::string& user_id, int delta) {
  std::lock_guard lock(users_.mu);
  if (delta > 0) {
    users_.live[user_id] += static_cast<uint32_t>(delta);
    return;
  }
  auto it = users_.live.find(user_id);
  if (it == users_.live.end()) return;
  auto d = static_cast<uint32_t>(-delta);
  if (it->second <= d) users_.live.erase(it);
  else it->second -= d;
}

uint32_t SessionRegistry::user_sessions(const std::string& user_id) const {
  std::lock_guard lock(users_.mu);
  auto it = users_.live.find(user_id);
  return it == users_.live.end() ? 0 : it->second;
}

SessionRegistry::Found SessionRegistry::find_or_create(const std::string& user_id, const std::string& session_id,
                                                       const std::string& cluster, Placer place,
                                                       Clock::time_point now, uint32_t max_per_user) {
  // The lookup key is built in a per-thread buffer that keeps its capacity: the usual
  // call finds a live session and allocates nothing. A new session copies it.
  thread_local std::string lookup;
  lookup.clear();
  lookup.append(user_id).push_back('\xff');
  lookup.append(session_id);
  auto& s = shard_for(lookup);
  std::lock_guard lock(s.mu);
  if (auto it = s.live.find(lookup); it != s.live.end()) return {it->second, std::nullopt};
  if (auto it = s.dead.find(lookup); it != s.dead.end()) {
    if (now - it->second.when <= kTombstoneTtl) return {nullptr, it->second};
    s.dead.erase(it);
  }
  if (!place) return {};
  std::string k = lookup;  // place() below may look up sessions on this thread too
  if (max_per_user > 0) {
    // Reserve the user's slot before placing, so that two workers creating sessions for
    // one user at once cannot both take the last one.
    std::lock_guard ulock(users_.mu);
    auto& n = users_.live[user_id];
    if (n >= max_per_user) {
      if (n == 0) users_.live.erase(user_id);
      Found f;
      f.over_user_limit = true;
      return f;
    }
    ++n;
  } else {
    count_user_locked_shard(user_id, +1);
  }
  uint64_t epoch = 0;
  BackendPtr backend = place(epoch);
  if (!backend) {
    count_user_locked_shard(user_id, -1);
    return {};
  }
  auto session = std::make_shared<Session>(user_id, session_id, cluster, backend, epoch, now);
  backend->sessions.fetch_add(1);
  s.live.emplace(std::move(k), session);
  created_.fetch_add(1, std::memory_order_relaxed);
  return {session, std::nullopt};
}

SessionPtr SessionRegistry::adopt(const std::string& user_id, const std::string& session_id,
                                  const std::string& cluster, BackendPtr backend, uint64_t epoch,
                                  Clock::time_point now) {
  auto k = key(user_id, session_id);
  auto& s = shard_for(k);
  std::lock_guard lock(s.mu);
  if (auto it = s.live.find(k); it != s.live.end()) return it->second;
  s.dead.erase(k);
  auto session = std::make_shared<Session>(user_id, session_id, cluster, backend, epoch, now);
  backend->sessions.fetch_add(1);
  count_user_locked_shard(user_id, +1);
  s.live.emplace(std::move(k), session);
  created_.fetch_add(1, std::memory_order_relaxed);
  return session;
}

SessionPtr SessionRegistry::find(const std::string& user_id, const std::string& session_id) const {
  auto k = key(user_id, session_id);
  auto& s = shard_for(k);
  std::lock_guard lock(s.mu);
  auto it = s.live.find(k);
  return it == s.live.end() ? nullptr : it->second;
}

SessionPtr SessionRegistry::end(const std::string& user_id, const std::string& session_id, EndReason reason,
                                std::string detail, Clock::time_point now) {
  auto k = key(user_id, session_id);
  auto& s = shard_for(k);
  SessionPtr session;
  {
    std::lock_guard lock(s.mu);
    if (auto it = s.live.find(k); it != s.live.end()) {
      session = it->second;
      s.live.erase(it);
      session->backend->sessions.fetch_sub(1);
      count_user_locked_shard(user_id, -1);
    }
    if (reason != EndReason::kReleased && reason != EndReason::kUnplaced) bury_locked(s, k, Tombstone{reason, std::move(detail), now});
  }
  notify_end(session, reason);
  return session;
}

void SessionRegistry::clear_tombstone(const std::string& user_id, const std::string& session_id) {
  auto k = key(user_id, session_id);
  auto& s = shard_for(k);
  std::lock_guard lock(s.mu);
  s.dead.erase(k);
}

std::vector<SessionPtr> SessionRegistry::reap(Clock::time_point now, std::chrono::milliseconds idle,
                                              std::chrono::milliseconds lifetime) {
  std::vector<SessionPtr> out;
  std::vector<EndReason> reasons;
  if (idle.count() == 0 && lifetime.count() == 0) return out;
  for (auto& s : shards_) {
    std::lock_guard lock(s.mu);
    for (auto it = s.live.begin(); it != s.live.end();) {
      const auto& session = it->second;
      bool idle_out = idle.count() > 0 && now - session->last_active() > idle;
      bool too_old = lifetime.count() > 0 && now - session->created > lifetime;
      if ((!idle_out && !too_old) || session->in_flight.load() > 0) {
        ++it;
        continue;
      }
      Tombstone t;
      t.when = now;
      if (too_old) {
        t.reason = EndReason::kExpiredLifetime;
        t.detail = "expired: it reached the maximum session lifetime of " +
                   std::to_string(std::chrono::duration_cast<std::chrono::seconds>(lifetime).count()) +
                   " s (sessions.max_lifetime)";
      } else {
        t.reason = EndReason::kExpiredIdle;
        t.detail = "expired: it was idle for more than " +
                   std::to_string(std::chrono::duration_cast<std::chrono::seconds>(idle).count()) +
                   " s (sessions.idle_timeout)";
      }
      t.detail += "; sparkgate released it on backend " + session->backend->name();
      session->backend->sessions.fetch_sub(1);
      count_user_locked_shard(session->user_id, -1);
      out.push_back(session);
      reasons.push_back(t.reason);
      std::string k = it->first;
      it = s.live.erase(it);
      bury_locked(s, k, std::move(t));
    }
  }
  for (size_t i = 0; i < out.size(); ++i) notify_end(out[i], reasons[i]);
  return out;
}

std::vector<SessionPtr> SessionRegistry::find_by_id(const std::string& session_id) const {
  std::vector<SessionPtr> out;
  for (auto& s : shards_) {
    std::lock_guard lock(s.mu);
    for (const auto& [k, session] : s.live) {
      if (session->session_id == session_id) out.push_back(session);
    }
  }
  return out;
}

void SessionRegistry::for_each(const std::function<void(const SessionPtr&)>& fn) const {
  for (auto& s : shards_) {
    std::lock_guard lock(s.mu);
    for (const auto& [k, session] : s.live) fn(session);
  }
}

size_t SessionRegistry::size() const {
  size_t n = 0;
  for (auto& s : shards_) {
    std::lock_guard lock(s.mu);
    n += s.live.size();
  }
  return n;
}

size_t SessionRegistry::tombstones() const {
  size_t n = 0;
  for (auto& s : shards_) {
    std::lock_guard lock(s.mu);
    n += s.dead.size();
  }
  return n;
}

}  // namespace sparkgate::routing
