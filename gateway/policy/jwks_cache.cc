#include "policy/jwks_cache.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <boost/json.hpp>
#include <ctime>
#include <mutex>

#include "policy/oidc_documents.h"
#include "policy/refresh_schedule.h"

namespace sparkgate::policy {

namespace asio = boost::asio;

struct JwksCache::Entry {
  Entry(std::string name, config::RemoteJwks s)
      : issuer(std::move(name)), spec(std::move(s)), schedule(spec.refresh_interval, spec.min_refresh_interval) {
    auto first = std::make_shared<JwksSnapshot>();
    first->issuer = issuer;
    snap.store(std::move(first));
  }
  const std::string issuer;
  const config::RemoteJwks spec;
  std::atomic<std::shared_ptr<const JwksSnapshot>> snap;

  std::mutex mu;  // guards the three below
  RefreshSchedule schedule;
  std::vector<std::function<void()>> waiters;
  bool retired = false;

  // Control thread only.
  std::shared_ptr<asio::ssl::context> tls;
  std::unique_ptr<asio::steady_timer> timer;
};

JwksCache::JwksCache() : JwksCache(Options{}) {}
JwksCache::JwksCache(Options options) : options_(options) { entries_.store(std::make_shared<const Map>()); }
JwksCache::~JwksCache() = default;

std::shared_ptr<const JwksSnapshot> JwksCache::snapshot(const std::string& issuer) const {
  auto map = entries_.load();
  auto it = map->find(issuer);
  if (it == map->end()) return nullptr;
  return it->second->snap.load();
}

namespace {

std::string utc(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

boost::json::object JwksCache::status_json(const std::string& issuer) const {
  namespace json = boost::json;
  auto snap = snapshot(issuer);
  json::object o;
  if (!snap) return o;
  json::array kids;
  for (const auto& k : snap->kids) kids.emplace_back(k);
  o["fetched_jwks_uri"] = snap->jwks_uri;
  o["key_ids"] = std::move(kids);
  o["fetched_at"] = snap->fetched_at ? json::value(utc(*snap->fetched_at)) : json::value(nullptr);
  o["last_attempt_at"] = snap->attempted_at ? json::value(utc(*snap->attempted_at)) : json::value(nullptr);
  o["last_error"] = snap->last_error.empty() ? json::value(nullptr) : json::value(snap->last_error);
  o["consecutive_failures"] = snap->consecutive_failures;
  return o;
}

JwksCache::Refresh JwksCache::request_refresh(const std::string& issuer, std::function<void()> done) {
  if (!running_.load(std::memory_order_acquire)) return Refresh::kUnavailable;
  auto map = entries_.load();
  auto it = map->find(issuer);
  if (it == map->end()) return Refresh::kUnavailable;
  auto e = it->second;
  {
    std::lock_guard lock(e->mu);
    if (e->retired) return Refresh::kUnavailable;
    if (e->schedule.in_flight()) {
      e->waiters.push_back(std::move(done));
      return Refresh::kPending;
    }
    auto now = RefreshSchedule::Clock::now();
    if (!e->schedule.on_demand_allowed(now)) return Refresh::kRateLimited;
    e->schedule.started(now);
    e->waiters.push_back(std::move(done));
  }
  // executor_ is set before running_ and never changes afterwards.
  asio::post(*executor_, [this, e] { fetch(e); });
  return Refresh::kPending;
}

void JwksCache::start(const asio::any_io_executor& executor, FetchHook on_fetch) {
  executor_ = executor;
  on_fetch_ = std::move(on_fetch);
  running_.store(true, std::memory_order_release);
  for (const auto& [name, e] : *entries_.load()) start_entry(e);
}

void JwksCache::start_entry(const std::shared_ptr<Entry>& e) {
  e->timer = std::make_unique<asio::steady_timer>(*executor_);
  {
    std::lock_guard lock(e->mu);
    if (e->schedule.in_flight()) return;
    e->schedule.started(RefreshSchedule::Clock::now());
  }
  fetch(e);
}

void JwksCache::sync(const std::vector<config::JwtIssuer>& issuers) {
  auto old = entries_.load();
  auto next = std::make_shared<Map>();
  std::vector<std::shared_ptr<Entry>> fresh;
  for (const auto& i : issuers) {
    if (!i.remote) continue;
    auto it = old->find(i.issuer);
    if (it != old->end() && it->second->spec == *i.remote) {
      (*next)[i.issuer] = it->second;
      continue;
    }
    auto e = std::make_shared<Entry>(i.issuer, *i.remote);
    (*next)[i.issuer] = e;
    fresh.push_back(e);
  }
  for (const auto& [name, e] : *old) {
    auto it = next->find(name);
    if (it != next->end() && it->second == e) continue;
    {
      std::lock_guard lock(e->mu);
      e->retired = true;
    }
    if (e->timer) e->timer->cancel();
  }
  entries_.store(std::shared_ptr<const Map>(std::move(next)));
  if (running_.load()) {
    for (const auto& e : fresh) start_entry(e);
  }
}

void JwksCache::stop() {
  running_.store(false);
  for (const auto& [name, e] : *entries_.load()) {
    if (e->timer) e->timer->cancel();
    e->timer.reset();
  }
}

// The entry's schedule already says a fetch is running (started() under its lock).
void JwksCache::fetch(const std::shared_ptr<Entry>& e) {
  if (!e->tls) {
    std::string error;
    e->tls = make_fetch_tls_context(e->spec.ca_file, error);
    if (!e->tls) {
      finish(e, FetchResult::kTls, error, std::nullopt, "");
      return;
    }
  }
  if (!e->spec.discovery) {
    fetch_jwks(e, e->spec.jwks_uri);
    return;
  }
  std::string error;
  const std::string where = discovery_url(e->issuer);
  auto url = parse_https_url(where, error);
  if (!url) {
    finish(e, FetchResult::kInvalid, "discovery URL: " + error, std::nullopt, "");
    return;
  }
  https_get(*executor_, e->tls, *url, HttpsGetOptions{options_.fetch_timeout, kMaxOidcDocumentBytes},
            [this, e, where](HttpsResponse r) {
              if (r.result != FetchResult::kOk) {
                finish(e, r.result, "discovery: " + r.error, std::nullopt, "");
                return;
              }
              std::string why;
              auto jwks_uri = parse_discovery(r.body, e->issuer, why);
              if (!jwks_uri) {
                finish(e, FetchResult::kInvalid, "discovery: " + where + ": " + why, std::nullopt, "");
                return;
              }
              fetch_jwks(e, *jwks_uri);
            });
}

void JwksCache::fetch_jwks(const std::shared_ptr<Entry>& e, const std::string& jwks_uri) {
  std::string error;
  auto url = parse_https_url(jwks_uri, error);
  if (!url) {
    finish(e, FetchResult::kInvalid, "jwks_uri: " + error, std::nullopt, jwks_uri);
    return;
  }
  https_get(*executor_, e->tls, *url, HttpsGetOptions{options_.fetch_timeout, kMaxOidcDocumentBytes},
            [this, e, jwks_uri](HttpsResponse r) {
              if (r.result != FetchResult::kOk) {
                finish(e, r.result, "JWKS: " + r.error, std::nullopt, jwks_uri);
                return;
              }
              std::string why;
              auto keys = parse_fetched_jwks(r.body, jwks_uri, why);
              if (!keys) {
                finish(e, FetchResult::kInvalid, "JWKS: " + why, std::nullopt, jwks_uri);
                return;
              }
              finish(e, FetchResult::kOk, "", std::move(keys), jwks_uri);
            });
}

void JwksCache::finish(const std::shared_ptr<Entry>& e, FetchResult result, std::string error,
                       std::optional<FetchedJwks> keys, const std::string& jwks_uri) {
  const bool ok = result == FetchResult::kOk;
  std::vector<std::function<void()>> waiters;
  bool retired;
  {
    std::lock_guard lock(e->mu);
    e->schedule.finished(RefreshSchedule::Clock::now(), ok);
    waiters.swap(e->waiters);
    retired = e->retired;
    auto next = std::make_shared<JwksSnapshot>(*e->snap.load());
    auto now = std::chrono::system_clock::now();
    next->attempted_at = now;
    next->consecutive_failures = e->schedule.consecutive_failures();
    next->on_demand_at = e->schedule.on_demand_at();
    if (ok) {
      next->keys = std::move(keys->keys);
      next->kids = std::move(keys->kids);
      next->jwks_uri = jwks_uri;
      next->fetched_at = now;
      next->last_error.clear();
    } else {
      next->last_error = error;  // the last good keys stay
    }
    e->snap.store(std::move(next));
  }
  if (on_fetch_ && !retired) on_fetch_(e->issuer, result, error);
  for (auto& w : waiters) w();
  if (!retired && running_.load()) arm_timer(e);
}

void JwksCache::arm_timer(const std::shared_ptr<Entry>& e) {
  if (!e->timer) return;
  RefreshSchedule::Clock::time_point due;
  {
    std::lock_guard lock(e->mu);
    due = e->schedule.next_due();
  }
  e->timer->expires_at(due);
  e->timer->async_wait([this, e](const boost::system::error_code& ec) {
    if (ec || !running_.load()) return;
    {
      std::lock_guard lock(e->mu);
      if (e->retired || e->schedule.in_flight()) return;
      e->schedule.started(RefreshSchedule::Clock::now());
    }
    fetch(e);
  });
}

}  // namespace sparkgate::policy
