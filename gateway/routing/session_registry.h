// The session registry: (user_id, session_id) → the backend that holds the Spark
// session, plus what the gateway knows about it (server-side session id, activity,
// operations). Ended sessions leave a tombstone for a while so that the client's next
// call gets a clear error instead of silently creating a fresh session somewhere.
//
// Threading: thread-safe; sharded, one mutex per shard (held for one hash lookup on the
// hot path; workers contend only when they look up sessions of one shard at once). Session
// fields that change after creation are atomics or guarded by the session's own
// mutex; the server-side session id, set once, is read without it.
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

#include <boost/asio/any_io_executor.hpp>

#include "base/function_ref.h"
#include "observe/session_stats.h"
#include "routing/backend_state.h"

namespace sparkgate::routing {

using Clock = std::chrono::steady_clock;

// Why a session ended. kUnplaced: the entry was withdrawn before any RPC of it reached a
// backend (another replica placed the session first, or a quota refused it).
enum class EndReason {
  kReleased,
  kExpiredIdle,
  kExpiredLifetime,
  kBackendLost,
  kBackendRemoved,
  kClosedByOperator,
  kUnplaced
};
const char* end_reason_name(EndReason r);  // "released", "expired", ...

// A stream of a session in flight, as the admin API sees it: something an operator can
// cut. Implemented by the proxy's per-RPC object.
class SessionStream {
 public:
  virtual ~SessionStream() = default;
  // Ends the RPC with `message` (its upstream stream is reset). Called on the stream's
  // own executor, outside any nghttp2 callback.
  virtual void close_by_operator(const std::string& message) = 0;
};

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
  observe::SessionStats stats;              // for the admin API and the session summary line

  // The principal's tenant, recorded by the first RPC that knows it.
  std::string tenant() const;
  void set_tenant(const std::string& tenant);

  // Streams in flight, so that DELETE /v1/sessions/{id} can cut them. attach_stream
  // returns an id for detach_stream; both are cheap (one lock, a short vector).
  struct AttachedStream {
    boost::asio::any_io_executor executor;  // where close_by_operator must run
    std::weak_ptr<SessionStream> stream;
  };
  uint64_t attach_stream(AttachedStream s);
  void detach_stream(uint64_t id);
  std::vector<AttachedStream> attached_streams() const;

  // When the shared store's TTL of this session was last refreshed.
  Clock::time_point last_store_refresh() const { return Clock::time_point(Clock::duration(store_refresh_ns_.load())); }
  void set_last_store_refresh(Clock::time_point t) { store_refresh_ns_.store(t.time_since_epoch().count()); }

  Clock::time_point last_active() const { return Clock::time_point(Clock::duration(last_active_ns.load())); }
  void touch(Clock::time_point now) { last_active_ns.store(now.time_since_epoch().count()); }

  // The backend's server_side_session_id, once a response carried it.
  std::string server_side_session_id() const;
  // Records `id` from a response. Returns false if a different id was known: the backend
  // no longer has this session (it restarted). Once known, the id never changes, so the
  // usual call (every response carries it) compares without a lock.
  bool learn_server_side_session_id(std::string_view id);

  // Recent operation ids (ExecutePlan), newest last, at most kMaxOperations.
  void add_operation(const std::string& operation_id);
  bool has_operation(const std::string& operation_id) const;
  static constexpr size_t kMaxOperations = 256;

 private:
  std::atomic<int64_t> store_refresh_ns_{0};
  // Written once, under mu_, then only read: published by the flag (release).
  std::atomic<bool> server_side_session_id_known_{false};
  std::string server_side_session_id_;
  mutable std::mutex mu_;
  std::string tenant_;
  std::deque<std::string> operations_;
  uint64_t next_stream_id_ = 0;
  std::vector<std::pair<uint64_t, AttachedStream>> streams_;
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
  // `place` is called, if at all, during the call and never kept.
  using Placer = base::FunctionRef<BackendPtr(uint64_t& epoch)>;
  Found find_or_create(const std::string& user_id, const std::string& session_id, const std::string& cluster,
                       Placer place, Clock::time_point now, uint32_t max_per_user = 0);

  // Live sessions of `user_id` (the max_sessions quota).
  uint32_t user_sessions(const std::string& user_id) const;

  // Called after a session left the registry for any reason (released, expired, lost,
  // closed, unplaced), outside every registry lock, on the thread that ended it. Add them
  // at start-up, before any traffic; each is called in the order added.
  using EndListener = std::function<void(const SessionPtr&, EndReason)>;
  void add_end_listener(EndListener fn) { end_listeners_.push_back(std::move(fn)); }

  // Live entries ever created here (placed, adopted or cloned), for
  // sparkgate_sessions_created_total.
  uint64_t created_total() const { return created_.load(std::memory_order_relaxed); }

  // Every live session with this id (one per user that has it).
  std::vector<SessionPtr> find_by_id(const std::string& session_id) const;

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
    if (!session) return;
    for (const auto& fn : end_listeners_) fn(session, reason);
  }

  mutable std::array<Shard, kShards> shards_;
  UserCounts users_;
  std::vector<EndListener> end_listeners_;
  std::atomic<uint64_t> created_{0};
};

}  // namespace sparkgate::routing
