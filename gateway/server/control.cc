#include "server/control.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <unistd.h>

#include <fstream>
#include <future>
#include <sstream>

#include "config/config_loader.h"
#include "policy/jwt_key_builder.h"
#include "server/io_thread.h"
#include "spark/requests.h"
#include "upstream/unary_call.h"

namespace sparkgate::server {

namespace {

std::optional<std::vector<std::string>> lookup_hosts_file(const std::string& file, const std::string& name) {
  std::ifstream in(file);
  if (!in) return std::nullopt;
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream words(line);
    std::string address, alias;
    if (!(words >> address)) continue;
    while (words >> alias) {
      if (alias == name) out.push_back(address);
    }
  }
  return out;
}

trace::ResourceInfo resource_info(const std::string& version) {
  trace::ResourceInfo r;
  r.service_version = version;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) r.host_name = host;
  r.instance_id = r.host_name;
  r.instance_id.append(":").append(std::to_string(getpid()));
  return r;
}

void apply_tracing(trace::OtlpExporter& exporter, const config::Config& cfg) {
  std::string error;
  if (!exporter.apply(cfg.tracing, error)) {
    spdlog::error("tracing: {}; spans are not exported", error);
  } else if (cfg.tracing.enabled()) {
    spdlog::info("tracing: exporting spans to {} (sample_ratio {}, {} header(s))", cfg.tracing.url.text,
                 cfg.tracing.sample_ratio, cfg.tracing.headers.size());
  }
}

}  // namespace

ControlPlane::ControlPlane(GatewayState& state, ControlOptions options)
    : state_(state),
      options_(std::move(options)),
      work_(io_.get_executor()),
      pools_(io_.get_executor(), upstream::PoolOptions{}),
      health_targets_(state.router.backends()),
      health_(io_.get_executor(), health_targets_, [&state] { return state.config.load(); }),
      exporter_(io_.get_executor(), state.spans, state.metrics, resource_info(options_.version)),
      watch_timer_(io_),
      reap_timer_(io_),
      dns_timer_(io_),
      resolver_(io_) {
  const auto& sessions = state.config.load()->sessions;
  if (sessions.store == config::Sessions::Store::kRedis)
    store_ = std::make_unique<routing::RedisAffinityStore>(io_.get_executor(), sessions.redis);
  const auto& quotas = state.config.load()->quotas;
  if (quotas.store == config::Quotas::Store::kRedis) {
    quota_releaser_ = std::make_shared<QuotaReleaser>();
    quota_releaser_->quotas = std::make_unique<policy::RedisQuotas>(io_.get_executor(), quotas.redis);
    // Idle-expired sessions are left to expire in Redis on their own (their score is the
    // last use plus idle_timeout on whichever replica served them last); the rest end for
    // good and leave the count now.
    state.router.sessions().add_end_listener(
        [r = quota_releaser_, ex = io_.get_executor()](const routing::SessionPtr& s, routing::EndReason why) {
          if (why == routing::EndReason::kExpiredIdle) return;
          // Under the lock, so that the post cannot race ~ControlPlane destroying io_.
          std::lock_guard lock(r->mu);
          if (!r->alive) return;
          boost::asio::post(ex, [r, user = s->user_id, sid = s->session_id] {
            // After stop(), RedisQuotas::remove_session does nothing.
            if (r->quotas) r->quotas->remove_session(user, sid);
          });
        });
  }
}

ControlPlane::~ControlPlane() {
  stop();
  // The thread is gone: the cache's timers (on io_) must go before io_ does, even if the
  // posted stop never ran.
  state_.jwks.stop();
  retire_quota_releaser();
  // The listener may keep the struct alive past io_: its RedisQuotas must not.
  if (quota_releaser_) quota_releaser_->quotas.reset();
}

void ControlPlane::retire_quota_releaser() {
  if (!quota_releaser_) return;
  std::lock_guard lock(quota_releaser_->mu);
  quota_releaser_->alive = false;
}

void ControlPlane::start() {
  watched_ = stat_config();
  boost::asio::post(io_, [this] {
    state_.jwks.start(io_.get_executor(), [this](const std::string& issuer, policy::FetchResult result,
                                                 const std::string& error) { on_jwks_fetch(issuer, result, error); });
    health_.start();
    apply_tracing(exporter_, *state_.config.load());
    if (options_.watch_config) schedule_watch();
    schedule_reap();
    schedule_dns();
  });
  thread_ = std::thread([this] { io_.run(); });
}

void ControlPlane::stop() {
  if (!thread_.joinable()) return;
  // Before the cleanup below, which may never run if io_ is busy past the grace period.
  retire_quota_releaser();
  boost::asio::post(io_, [this] {
    health_.stop();
    state_.jwks.stop();
    exporter_.stop();
    watch_timer_.cancel();
    reap_timer_.cancel();
    dns_timer_.cancel();
    resolver_.cancel();
    pools_.close_all();
    if (store_) store_->close();
    if (quota_releaser_) quota_releaser_->quotas->stop();
    work_.reset();
  });
  // Give closing connections a moment to flush, then stop whatever is still pending.
  stop_and_join(io_, thread_);
}

void ControlPlane::flush_traces(std::chrono::milliseconds bound) {
  if (!thread_.joinable()) return;
  auto done = std::make_shared<std::promise<void>>();
  auto finished = done->get_future();
  const auto deadline = std::chrono::steady_clock::now() + bound;
  boost::asio::post(io_, [this, done, deadline] { exporter_.flush(deadline, [done] { done->set_value(); }); });
  // A little past the bound: the exporter's own deadline ends the last request first.
  if (finished.wait_for(bound + std::chrono::milliseconds(200)) != std::future_status::ready)
    spdlog::warn("tracing: the queued spans were not all sent within {} ms", bound.count());
}

void ControlPlane::request_reload(const std::string& why) {
  boost::asio::post(io_, [this, why] { reload(why); });
}

ControlPlane::FileId ControlPlane::stat_config() const {
  struct stat st {};
  // stat() follows symlinks: a Kubernetes ConfigMap update swaps the `..data` symlink,
  // which changes the inode the path resolves to.
  if (::stat(options_.config_path.c_str(), &st) != 0) return {};
  return {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino), static_cast<uint64_t>(st.st_size),
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

void ControlPlane::reload(const std::string& why) {
  // Whatever triggered this, the file as it is now has been seen.
  watched_ = stat_config();
  auto next = config::load_config_file(options_.config_path, policy::config_load_options());
  if (!next.config) {
    for (const auto& e : next.errors) spdlog::error("reload rejected: {}", e.to_string());
    spdlog::error("configuration reload ({}) failed; still running the previous configuration", why);
    state_.metrics.reloads_failed().Increment();
    return;
  }
  // Listener, admin and TLS listener changes need a restart; routes, clusters, limits and
  // sessions apply to new streams at once. In-flight streams keep their snapshot.
  // Before the new config is visible: its remote issuers must be known to the cache.
  state_.jwks.sync(next.config->auth.jwt);
  state_.config.store(next.config);
  state_.router.backends().apply_config(next.config);
  state_.metrics.reloads_succeeded().Increment();
  state_.access_log.set_enabled(next.config->access_log);
  apply_tracing(exporter_, *next.config);
  spdlog::info("configuration reloaded from {} ({})", options_.config_path, why);
}

void ControlPlane::on_jwks_fetch(const std::string& issuer, policy::FetchResult result, const std::string& error) {
  state_.metrics.jwks_fetch(issuer, policy::fetch_result_label(result)).Increment();
  auto snap = state_.jwks.snapshot(issuer);
  if (result == policy::FetchResult::kOk) {
    std::string kids;
    if (snap) {
      for (const auto& k : snap->kids) kids += (kids.empty() ? "" : ", ") + (k.empty() ? std::string("(no kid)") : k);
    }
    spdlog::info("jwt issuer {}: fetched {} keys from {} (kids: {})", issuer, snap ? snap->kids.size() : 0,
                 snap ? snap->jwks_uri : std::string("?"), kids);
    return;
  }
  const size_t kept = snap && snap->keys ? snap->kids.size() : 0;
  spdlog::warn("jwt issuer {}: fetching its keys failed ({}): {}; {}", issuer, policy::fetch_result_label(result),
               error,
               kept ? "keeping the " + std::to_string(kept) + " keys fetched before"
                    : std::string("no keys yet: its tokens are refused until a fetch succeeds"));
}

void ControlPlane::schedule_watch() {
  watch_timer_.expires_after(options_.watch_interval);
  watch_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    auto now = stat_config();
    // An unreadable or missing file (mid-swap) is left for the next tick.
    if (now.ino != 0 && !(now == watched_)) reload("the file changed");
    schedule_watch();
  });
}

void ControlPlane::schedule_reap() {
  auto cfg = state_.config.load();
  auto idle = cfg->sessions.idle_timeout;
  auto life = cfg->sessions.max_lifetime;
  // Check often enough that a session is reaped within ~10% of its limit, at most every
  // 10 s and at least every 50 ms.
  auto shortest = std::min(idle.count() ? idle : std::chrono::hours(1), life.count() ? life : std::chrono::hours(1));
  auto period = std::clamp<std::chrono::milliseconds>(shortest / 10, std::chrono::milliseconds(50),
                                                       std::chrono::milliseconds(10000));
  reap_timer_.expires_after(period);
  reap_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    reap();
    schedule_reap();
  });
}

void ControlPlane::reap() {
  auto cfg = state_.config.load();
  // Forget rate buckets that are full again (and idle for a while): memory stays bounded
  // by the users active recently, and a user gains nothing.
  state_.quotas.prune(policy::Clock::now(), std::chrono::minutes(10));
  auto expired = state_.router.sessions().reap(routing::Clock::now(), cfg->sessions.idle_timeout,
                                               cfg->sessions.max_lifetime);
  for (const auto& s : expired) {
    if (!store_) {
      spdlog::info("session {} of user '{}' on backend {} expired; releasing it on the backend", s->session_id,
                   s->user_id, s->backend->name());
      release_on_backend(s, "expired");
      continue;
    }
    // With a shared store, another replica may have served the session since: its key's
    // TTL (refreshed on use) tells. Only a session idle on every replica is released.
    auto key = routing::Router::session_key(s->user_id, s->session_id);
    store_->ttl(key, [this, s, key](int64_t ttl_ms, const std::string& error) {
      if (error.empty() && ttl_ms > 0) {
        spdlog::debug("session {} is idle here but in use through another replica; forgetting it locally",
                      s->session_id);
        state_.router.sessions().clear_tombstone(s->user_id, s->session_id);
        return;
      }
      spdlog::info("session {} of user '{}' on backend {} expired; releasing it on the backend", s->session_id,
                   s->user_id, s->backend->name());
      store_->erase(key);
      release_on_backend(s, "expired");
    });
  }
}

void ControlPlane::release_session(const routing::SessionPtr& session, const std::string& why) {
  boost::asio::post(io_, [this, session, why] {
    if (store_) store_->erase(routing::Router::session_key(session->user_id, session->session_id));
    release_on_backend(session, why);
  });
}

void ControlPlane::release_on_backend(const routing::SessionPtr& session, const std::string& why) {
  auto cfg = state_.config.load();
  const auto* cluster = cfg->find_cluster(session->cluster);
  std::optional<config::UpstreamTls> tls = cluster ? cluster->tls : std::nullopt;
  http2::HeaderMap extra;
  if (cluster && cluster->credentials) extra.add("authorization", "Bearer " + cluster->credentials->token);
  auto body = spark::release_session_request(session->session_id, session->user_id);
  auto& pool = pools_.get(session->backend->address(), tls);
  pool.acquire([session, extra, body, why](http2::ClientConnection* conn, const std::string& error) {
    if (!conn) {
      spdlog::warn("could not release {} session {} on backend {}: {}", why, session->session_id,
                   session->backend->name(), error);
      return;
    }
    upstream::unary_call(*conn, "/spark.connect.SparkConnectService/ReleaseSession", extra, body,
                         std::chrono::seconds(10), [session, why](upstream::UnaryResult r) {
                           if (!r.transport_ok) {
                             spdlog::warn("could not release {} session {} on backend {}: {}", why,
                                          session->session_id, session->backend->name(), r.transport_error);
                           } else if (r.grpc_status != 0) {
                             spdlog::warn("backend {} refused to release {} session {}: status {} {}",
                                          session->backend->name(), why, session->session_id, r.grpc_status,
                                          r.grpc_message);
                           } else {
                             spdlog::info("released {} session {} on backend {}", why, session->session_id,
                                          session->backend->name());
                           }
                         });
  });
}

void ControlPlane::schedule_dns() {
  dns_timer_.expires_after(std::chrono::milliseconds(100));
  dns_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    auto cfg = state_.config.load();
    auto now = std::chrono::steady_clock::now();
    bool any_dns = false;
    for (const auto& c : cfg->clusters) {
      if (!c.dns) continue;
      any_dns = true;
      if (dns_busy_[c.name]) continue;
      auto& due = dns_due_[c.name];
      if (now < due) continue;
      due = now + c.dns_refresh;
      refresh_dns(c);
    }
    // Vanished addresses leave once their last session has ended.
    if (any_dns) state_.router.backends().prune();
    schedule_dns();
  });
}

void ControlPlane::refresh_dns(const config::Cluster& cluster) {
  const std::string name = cluster.name;
  const config::Endpoint target = *cluster.dns;
  if (!options_.hosts_file.empty()) {
    auto found = lookup_hosts_file(options_.hosts_file, target.host);
    if (!found) {
      spdlog::warn("cluster {}: cannot read hosts file {}", name, options_.hosts_file);
      return;
    }
    std::vector<config::Endpoint> eps;
    for (const auto& a : *found) eps.push_back({a, target.port});
    state_.router.backends().apply_discovery(name, eps);
    return;
  }
  dns_busy_[name] = true;
  resolver_.async_resolve(
      target.host, std::to_string(target.port),
      [this, name, target](const boost::system::error_code& ec, boost::asio::ip::tcp::resolver::results_type results) {
        dns_busy_[name] = false;
        if (ec == boost::asio::error::operation_aborted) return;
        if (ec) {
          // Keep the last known addresses: a DNS hiccup must not drain a cluster.
          spdlog::warn("cluster {}: resolving {} failed: {}; keeping the previous backends", name, target.host,
                       ec.message());
          return;
        }
        std::vector<config::Endpoint> eps;
        for (const auto& r : results) {
          auto ep = r.endpoint();
          config::Endpoint e{ep.address().to_string(), ep.port()};
          bool dup = false;
          for (const auto& x : eps) dup |= x.host == e.host;
          if (!dup) eps.push_back(e);
        }
        state_.router.backends().apply_discovery(name, eps);
      });
}

}  // namespace sparkgate::server
