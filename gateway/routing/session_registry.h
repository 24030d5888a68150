// The session registry: (user_id, session_id) → the backend that holds the Spark
// session, plus what the gateway knows about it (server-side session id, activity,
// operations). Ended sessions leave a tombstone for a while so that the client's next
// call gets a clear error instead of silently creating a fresh session somewhere.
//
// Threading: thread-safe; sharded, one mutex per shard. Session fields that change after
// creation are atomics or guarded by the session's own mutex.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "routing/backend_state.h"

namespace sparkgate::routing {

using Clock = std::chrono::steady_clock;

// Why a session ended.
enum class EndReason { kReleased, kExpiredIdle, kExpiredLifetime, kBackendLost, kBackendRemoved, kClosedByOperator };
const char* end_reason_name(EndReason r);  // "released", "expired", ...

struct Session {
  Session(std::string user, std::string session, std::string cluster_name, BackendPtr backend_state,
          uint64_t backend_epoch_at_start, Clock::time_point now);

  const std::string user_id;
  const std::string session_id;
  const std::string cluster;
  const BackendPtr backend;
  const uint64_t backend_epoch;  // the backend's epoch when the session was placed
  const Clock::time_point created;
  const std::chrono::system_clock::time_point created_wall;

  std::atomic<int64_t> last_active_ns;  // Clock ticks (ns) of the last RPC start or end
  std::atomic<int32_t> in_flight{0};    // RPCs running now
  std::atomic<uint64_t> rpcs{0};        // RPCs started
  std::atomic<uint64_t> artifact_bytes{0};  // AddArtifacts request bytes (max_artifact_bytes quota)

  // When the shared store's TTL of this session was last refreshed.
  Clock::time_point last_store_refresh() const { return Clock::time_point(Clock::duration(store_refresh_ns_.load())); }
  void set_last_store_refresh(Clock::time_point t) { store_refresh_ns_.store(t.time_since_epoch().count()); }

  Clock::time_point last_active() const { return Clock::time_point(Clock::duration(last_active_ns.load())); }
  void touch(Clock::time_point now) { last_active_ns.store(now.time_since_epoch().count()); }

  // The backend's server_side_session_id, once a response carried it.
  std::string server_side_session_id() const;
  // Records `id` from a response. Returns false if a different id was known: the backend
  // no longer has this session (it restarted).
  bool learn_server_side_session_id(const std::string& id);

  // Recent operation ids (ExecutePlan), newest last, at most kMaxOperations.
  void add_operation(const std::string& operation_id);
  bool has_operation(const std::string& operation_id) const;
  static constexpr size_t kMaxOperations = 256;

 private:
  std::atomic<int64_t> store_refresh_ns_{0};
  mutable std::mutex mu_;
  std::string server_side_session_id_;
  std::deque<std::string> operations_;
};

using SessionPtr = std::shared_ptr<Session>;

struct Tombstone {
  EndReason reason;
  std::string detail;  // the sentence the client sees after "session <id> ..."
  Clock::time_point when;
};

class SessionRegistry {
 public:
  struct Found {
    SessionPtr session;                 // set if the session is live
    std::optional<Tombstone> tombstone;  // set if it ended recently
    // Set when the session is new and its user already has `max_per_user` live sessions;
    // nothing was placed or registered.
    bool over_user_limit = false;
  };
  // Looks the session up; if unknown (and not tombstoned) and `place` is given, calls it
  // under the shard lock to choose a backend and registers the new session (so two
  // workers never place one session twice). `place` returns null with `error` set when
  // no backend can take it; then nothing is registered. With `max_per_user` > 0, a new
  // session is refused (over_user_limit) while the user has that many live sessions.
  using Placer = std::function<BackendPtr(uint64_t& epoch)>;
  Found find_or_create(const std::string& user_id, const std::string& session_id, const std::string& cluster,
                       const Placer& place, Clock::time_point now, uint32_t max_per_user = 0);

  // Live sessions of `user_id` (the max_sessions quota).
  uint32_t user_sessions(const std::string& user_id) const;

  // Called after a session left the registry for any reason (released, expired, lost,
  // closed), outside every registry lock, on the thread that ended it. Set once at
  // start-up, before any traffic.
  using EndListener = std::function<void(const SessionPtr&, EndReason)>;
  void set_end_listener(EndListener fn) { end_listener_ = std::move(fn); }

  // Registers a session whose backend was decided elsewhere (e.g. by a shared store).
  // Returns the live entry (an existing one wins).
  SessionPtr adopt(const std::string& user_id, const std::string& session_id, const std::string& cluster,
                   BackendPtr backend, uint64_t epoch, Clock::time_point now);

  SessionPtr find(const std::string& user_id, const std::string& session_id) const;

  // Ends a session: forgets it and leaves a tombstone (except for kReleased, which the
  // backend tombstones itself and the client asked for). Returns the entry if it was live.
  SessionPtr end(const std::string& user_id, const std::string& session_id, EndReason reason, std::string detail,
                 Clock::time_point now);

  // Forgets a tombstone (the session turned out to be alive elsewhere).
  void clear_tombstone(const std::string& user_id, const std::string& session_id);

  // Sessions to reap now: idle longer than `idle` (if non-zero) or older than `lifetime`
  // (if non-zero), with no RPC in flight. They are ended (tombstoned) before return; the
  // caller releases them on their backends.
  std::vector<SessionPtr> reap(Clock::time_point now, std::chrono::milliseconds idle,
                               std::chrono::milliseconds lifetime);

  // Calls `fn` for every live session (under each shard's lock: keep it short).
  void for_each(const std::function<void(const SessionPtr&)>& fn) const;

  size_t size() const;
  size_t tombstones() const;

  // Tombstones are kept this long, and at most this many per shard (oldest dropped).
  static constexpr auto kTombstoneTtl = std::chrono::hours(24);
  static constexpr size_t kMaxTombstonesPerShard = 16384;

 private:
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, SessionPtr> live;
    std::unordered_map<std::string, Tombstone> dead;
    std::deque<std::pair<std::string, Clock::time_point>> dead_order;  // for expiry
  };
  static constexpr size_t kShards = 32;
  static std::string key(const std::string& user_id, const std::string& session_id);
  Shard& shard_for(const std::string& key) const;
  void bury_locked(Shard& s, const std::string& key, Tombstone t);

  // Per-user live session counts; locked after (inside) a shard lock, never before.
  struct UserCounts {
    mutable std::mutex mu;
    std::unordered_map<std::string, uint32_t> live;
  };
  void count_user_locked_shard(const std::string& user_id, int delta);
  void notify_end(const SessionPtr& session, EndReason reason) const {
    if (end_listener_ && session) end_listener_(session, reason);
  }

  mutable std::array<Shard, kShards> shards_;
  UserCounts users_;
  EndListener end_listener_;
};

}  // namespace sparkgate::routing
