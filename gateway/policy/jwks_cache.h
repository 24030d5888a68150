// The keys of the JWT issuers whose keys are remote (auth.jwt[].discovery / jwks_uri):
// fetched over HTTPS on the control thread, published to the workers as immutable
// snapshots.
//
//   workers:        snapshot(issuer)         lock-free read (atomic shared_ptr)
//                   request_refresh(...)     a token named a kid not in the set
//   control thread: start / sync / stop      timers and fetches on its io_context
//
// Each issuer's keys are fetched at startup (sync), every refresh_interval, after a
// failure again with a backoff (RefreshSchedule), and on request_refresh at most once per
// min_refresh_interval. Discovery (when configured) runs before every JWKS fetch, so a
// moved jwks_uri is followed. A failed fetch keeps the last good keys and records its
// error; the outcome of every fetch is reported to the on_fetch hook (metrics, logs).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/json/object.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "policy/https_get.h"
#include "policy/jwt.h"

namespace sparkgate::policy {

// What the workers see of one issuer. Immutable once published.
struct JwksSnapshot {
  std::string issuer;
  std::shared_ptr<const JwtKeySet> keys;  // null until the first successful fetch
  std::vector<std::string> kids;          // of `keys`, in document order
  std::string jwks_uri;                   // where `keys` came from
  std::optional<std::chrono::system_clock::time_point> fetched_at;    // the last successful fetch
  std::optional<std::chrono::system_clock::time_point> attempted_at;  // the last fetch, ended
  std::string last_error;  // the last fetch's failure; empty when it succeeded
  unsigned consecutive_failures = 0;
  // The soonest a token naming an unknown kid may trigger another fetch.
  std::chrono::steady_clock::time_point on_demand_at{};
};

// Where JWT verification (jwt.h) reads the current keys of remote issuers: the
// JwksCache, or a test's fixed keys. Any thread.
class RemoteKeys {
 public:
  // The current keys of a remote issuer; null if `issuer` is not a remote issuer.
  virtual std::shared_ptr<const JwksSnapshot> snapshot(const std::string& issuer) const = 0;

 protected:
  ~RemoteKeys() = default;
};

class JwksCache final : public RemoteKeys {
 public:
  // Called on the control thread after every fetch: issuer, outcome, error (empty on kOk).
  using FetchHook = std::function<void(const std::string& issuer, FetchResult result, const std::string& error)>;

  struct Options {
    std::chrono::milliseconds fetch_timeout{10000};  // each GET (discovery, JWKS)
  };

  JwksCache();
  explicit JwksCache(Options options);
  ~JwksCache();
  JwksCache(const JwksCache&) = delete;
  JwksCache& operator=(const JwksCache&) = delete;

  // ---- any thread ----

  // The current keys of a remote issuer; null if `issuer` is not a remote issuer.
  std::shared_ptr<const JwksSnapshot> snapshot(const std::string& issuer) const override;
  // For /v1/config: fetched_jwks_uri, key_ids, fetched_at and last_attempt_at (UTC, or
  // null), last_error (null after a success), consecutive_failures. Empty if unknown.
  boost::json::object status_json(const std::string& issuer) const;

  enum class Refresh {
    kPending,      // a fetch is running (started now, or already); `done` will be called
    kRateLimited,  // the last fetch started less than min_refresh_interval ago
    kUnavailable,  // not a remote issuer, or the cache is not running
  };
  // A token of `issuer` named a kid that is not in the set (or there are no keys yet).
  // On kPending, `done` is called exactly once on the control thread when the fetch has
  // ended, whatever its outcome (not at all if the cache stops first); otherwise it is
  // dropped. `done` must not block: it posts back to the caller's thread.
  Refresh request_refresh(const std::string& issuer, std::function<void()> done);

  // ---- control thread ----

  // Starts fetching on `executor` (the control thread's io_context).
  void start(const boost::asio::any_io_executor& executor, FetchHook on_fetch);
  // Makes the set of issuers those of `issuers` that have remote keys: a new issuer (or
  // one whose source changed) is fetched at once, an unchanged one keeps its keys and
  // schedule, a removed one is forgotten. Before start(), only records them.
  void sync(const std::vector<config::JwtIssuer>& issuers);
  // Cancels the timers; running fetches end without effect. The cache stays readable.
  void stop();

 private:
  struct Entry;
  using Map = std::map<std::string, std::shared_ptr<Entry>, std::less<>>;

  void fetch(const std::shared_ptr<Entry>& e);
  void fetch_jwks(const std::shared_ptr<Entry>& e, const std::string& jwks_uri);
  void finish(const std::shared_ptr<Entry>& e, FetchResult result, std::string error,
              std::optional<FetchedJwks> keys, const std::string& jwks_uri);
  void arm_timer(const std::shared_ptr<Entry>& e);
  void start_entry(const std::shared_ptr<Entry>& e);

  Options options_;
  std::atomic<std::shared_ptr<const Map>> entries_;
  // Control thread only.
  std::optional<boost::asio::any_io_executor> executor_;
  FetchHook on_fetch_;
  std::atomic<bool> running_{false};
};

}  // namespace sparkgate::policy
