// Where a session's backend is shared with other gateway replicas, behind one interface:
// nowhere (LocalSessionStore, sessions.store: memory: the session registry of this
// process is all there is) or Redis (RedisSessionStore, sessions.store: redis). The
// gateway picks one at startup; callers never ask which.
//
// lookup and claim answer either at once (StoreAnswer::pending null) or later through
// the StoreWaiter, unless the caller cancels StoreAnswer::pending first
// (base/cancellable.h). A waiter is called at most once per call, never inside it.
//
// Threading: one store per worker; every call and completion on that worker's thread.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "base/cancellable.h"

namespace sparkgate::routing {

// What the store said. lookup: `backend` set if another replica placed the session.
// claim: `backend` is the winner (ours, or the one claimed first). `error` non-empty:
// the store failed and nothing is known.
struct StoreAnswer {
  std::optional<std::string> backend;
  std::string error;
  base::Cancellable* pending = nullptr;  // set: the answer goes to the waiter later
};

class StoreWaiter {
 public:
  virtual void on_store_answer(const StoreAnswer& answer) = 0;

 protected:
  ~StoreWaiter() = default;
};

class SessionStore {
 public:
  virtual ~SessionStore() = default;

  // True when a session unknown to this replica must be looked up before it is placed
  // (another replica may hold it); false when the registry's answer is final.
  virtual bool ask_before_placing() const = 0;
  // True when a placement nobody used yet may be moved to another backend (it was not
  // published to other replicas).
  virtual bool placements_movable() const = 0;

  // The backend stored for the session, if any.
  virtual StoreAnswer lookup(const std::string& user, const std::string& session_id, StoreWaiter& w) = 0;
  // Stores session → backend unless another replica stored one first; answers the
  // winner. `ttl` 0: no expiry.
  virtual StoreAnswer claim(const std::string& user, const std::string& session_id, const std::string& backend,
                            std::chrono::milliseconds ttl, StoreWaiter& w) = 0;
  // The session is still in use / was released. Fire and forget.
  virtual void refresh(const std::string& user, const std::string& session_id, std::chrono::milliseconds ttl) = 0;
  virtual void erase(const std::string& user, const std::string& session_id) = 0;
};

// sessions.store: memory. Nothing is shared: lookups find nothing, claims always win.
class LocalSessionStore final : public SessionStore {
 public:
  bool ask_before_placing() const override { return false; }
  bool placements_movable() const override { return true; }
  StoreAnswer lookup(const std::string&, const std::string&, StoreWaiter&) override { return {}; }
  StoreAnswer claim(const std::string&, const std::string&, const std::string& backend, std::chrono::milliseconds,
                    StoreWaiter&) override {
    return {backend, {}, nullptr};
  }
  void refresh(const std::string&, const std::string&, std::chrono::milliseconds) override {}
  void erase(const std::string&, const std::string&) override {}
};

}  // namespace sparkgate::routing
