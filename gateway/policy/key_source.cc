#include "policy/key_source.h"

#include <boost/asio/post.hpp>

#include <memory>

namespace sparkgate::policy {

namespace {

// One refresh waited for. Shared by the cache's callback and the post to the worker;
// `waiter` is only touched on the worker's thread, so cancel() only forgets it and the
// completion, when it comes, is dropped.
struct PendingRefresh final : base::Cancellable {
  explicit PendingRefresh(KeyRefreshWaiter& w) : waiter(&w) {}
  void cancel() override { waiter = nullptr; }
  KeyRefreshWaiter* waiter;
};

}  // namespace

KeyRefreshAnswer JwksKeySource::refresh(const std::string& issuer, KeyRefreshWaiter& w) {
  auto p = std::make_shared<PendingRefresh>(w);
  KeyRefreshAnswer a;
  // The control thread must not run the waiter: it posts back to this worker.
  a.outcome = cache_.request_refresh(issuer, [p, ex = worker_] {
    boost::asio::post(ex, [p] {
      if (auto* w = p->waiter) {
        p->waiter = nullptr;
        w->on_keys_refreshed();
      }
    });
  });
  if (a.outcome == JwksCache::Refresh::kPending) a.pending = p.get();
  return a;
}

}  // namespace sparkgate::policy
