// SessionStore over RedisAffinityStore (sessions.store: redis): a session's backend is
// claimed in Redis, so every replica sends it to the same backend. A call cancelled
// while Redis works is dropped when the answer comes.
//
// Threading: one per worker, on that worker's thread, like the store it borrows.
#pragma once

#include "routing/redis_store.h"
#include "routing/session_store.h"

namespace sparkgate::routing {

class RedisSessionStore final : public SessionStore {
 public:
  // `store` is borrowed: it outlives this object.
  explicit RedisSessionStore(RedisAffinityStore& store) : store_(store) {}

  bool ask_before_placing() const override { return true; }
  bool placements_movable() const override { return false; }  // claimed for every replica to see
  StoreAnswer lookup(const std::string& user, const std::string& session_id, StoreWaiter& w) override;
  StoreAnswer claim(const std::string& user, const std::string& session_id, const std::string& backend,
                    std::chrono::milliseconds ttl, StoreWaiter& w) override;
  void refresh(const std::string& user, const std::string& session_id, std::chrono::milliseconds ttl) override;
  void erase(const std::string& user, const std::string& session_id) override;

 private:
  RedisAffinityStore& store_;
};

}  // namespace sparkgate::routing
