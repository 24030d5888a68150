#include "routing/redis_session_store.h"

#include <memory>

#include "routing/router.h"

namespace sparkgate::routing {

namespace {

// One call in flight; lives in the store's callback. cancel() forgets the waiter.
struct PendingCall final : base::Cancellable {
  explicit PendingCall(StoreWaiter& w) : waiter(&w) {}
  void cancel() override { waiter = nullptr; }
  StoreWaiter* waiter;
};

void deliver(PendingCall& p, StoreAnswer answer) {
  if (auto* w = p.waiter) {
    p.waiter = nullptr;
    w->on_store_answer(answer);
  }
}

}  // namespace

StoreAnswer RedisSessionStore::lookup(const std::string& user, const std::string& session_id, StoreWaiter& w) {
  auto p = std::make_shared<PendingCall>(w);
  store_.lookup(Router::session_key(user, session_id),
                [p](std::optional<std::string> backend, const std::string& error) {
                  deliver(*p, {std::move(backend), error, nullptr});
                });
  StoreAnswer a;
  a.pending = p.get();
  return a;
}

StoreAnswer RedisSessionStore::claim(const std::string& user, const std::string& session_id,
                                     const std::string& backend, std::chrono::milliseconds ttl, StoreWaiter& w) {
  auto p = std::make_shared<PendingCall>(w);
  store_.claim(Router::session_key(user, session_id), backend, ttl,
               [p](const std::string& winner, const std::string& error) {
                 StoreAnswer a;
                 if (error.empty()) a.backend = winner;
                 a.error = error;
                 deliver(*p, std::move(a));
               });
  StoreAnswer a;
  a.pending = p.get();
  return a;
}

void RedisSessionStore::refresh(const std::string& user, const std::string& session_id,
                                std::chrono::milliseconds ttl) {
  store_.refresh(Router::session_key(user, session_id), ttl);
}

void RedisSessionStore::erase(const std::string& user, const std::string& session_id) {
  store_.erase(Router::session_key(user, session_id));
}

}  // namespace sparkgate::routing
