// One worker's access to the remote keys of JWT issuers (auth.jwt[].discovery /
// jwks_uri): the keys to verify with, and a refresh of an issuer's keys whose end is
// delivered on the worker's own thread.
//
// refresh() answers at once when no fetch will run (kRateLimited, kUnavailable) or with
// kPending and KeyRefreshAnswer::pending set: then KeyRefreshWaiter::on_keys_refreshed is
// called once the fetch has ended (whatever its outcome; verify again to learn it),
// never inside refresh(), unless the caller cancels `pending` first
// (base/cancellable.h). A fetch that never ends (the cache stopped at shutdown) never
// calls the waiter.
//
// Threading: one per worker; every call, cancel and completion on that worker's thread.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <string>

#include "base/cancellable.h"
#include "policy/jwks_cache.h"

namespace sparkgate::policy {

class KeyRefreshWaiter {
 public:
  virtual void on_keys_refreshed() = 0;

 protected:
  ~KeyRefreshWaiter() = default;
};

struct KeyRefreshAnswer {
  JwksCache::Refresh outcome = JwksCache::Refresh::kUnavailable;
  base::Cancellable* pending = nullptr;  // set with kPending
};

class KeySource {
 public:
  virtual ~KeySource() = default;
  // The keys authenticate() verifies with.
  virtual const RemoteKeys* keys() const = 0;
  // A token of `issuer` named a kid that is not in its key set (or there are no keys).
  virtual KeyRefreshAnswer refresh(const std::string& issuer, KeyRefreshWaiter& w) = 0;
};

// The process's JwksCache seen from one worker: the control thread's completion is
// posted to `worker`.
class JwksKeySource final : public KeySource {
 public:
  // `cache` is borrowed: it outlives this source.
  JwksKeySource(JwksCache& cache, boost::asio::any_io_executor worker) : cache_(cache), worker_(std::move(worker)) {}
  const RemoteKeys* keys() const override { return &cache_; }
  KeyRefreshAnswer refresh(const std::string& issuer, KeyRefreshWaiter& w) override;

 private:
  JwksCache& cache_;
  boost::asio::any_io_executor worker_;
};

}  // namespace sparkgate::policy
