// The control thread: everything that is not on a request's path. It runs the health
// checker, the session reaper (which releases expired sessions on their backends), DNS
// discovery, the config file watcher and config reloads (SIGHUP is posted here too), so
// a slow resolver or a big reload never stalls a worker.
#pragma once

#include <boost/asio.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "policy/redis_quotas.h"
#include "routing/redis_store.h"
#include "server/gateway_state.h"
#include "server/health_targets.h"
#include "trace/exporter.h"
#include "upstream/conn_pool.h"
#include "upstream/health_checker.h"

namespace sparkgate::server {

struct ControlOptions {
  std::string config_path;
  bool watch_config = true;
  std::chrono::milliseconds watch_interval{1000};
  // Test hook: resolve cluster dns names from this hosts-format file ("ADDRESS NAME...")
  // instead of the system resolver; re-read on every refresh.
  std::string hosts_file;
  // service.version of exported spans.
  std::string version;
};

class ControlPlane {
 public:
  ControlPlane(GatewayState& state, ControlOptions options);
  ~ControlPlane();

  void start();
  // Reloads the config file now (thread-safe; runs on the control thread).
  void request_reload(const std::string& why);
  // Stops timers and joins the thread.
  void stop();
  // Drain: sends the spans still queued (tracing:), waiting at most `bound`; spans left
  // then are counted as dropped. Blocks the calling thread (main), not the control thread.
  void flush_traces(std::chrono::milliseconds bound);
  // A session that left the registry for good (an operator closed it): forgets it in the
  // shared store and sends ReleaseSession to its backend. Thread-safe; asynchronous.
  void release_session(const routing::SessionPtr& session, const std::string& why);

 private:
  void reload(const std::string& why);
  // Every fetch of an issuer's remote keys: counted and logged.
  void on_jwks_fetch(const std::string& issuer, policy::FetchResult result, const std::string& error);
  void schedule_watch();
  void schedule_reap();
  void reap();
  // `why` names the cause in log lines ("expired", "closed by an operator").
  void release_on_backend(const routing::SessionPtr& session, const std::string& why);
  void schedule_dns();
  void refresh_dns(const config::Cluster& cluster);

  GatewayState& state_;
  ControlOptions options_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  upstream::PoolSet pools_;  // connections for the gateway's own ReleaseSession calls
  std::unique_ptr<routing::RedisAffinityStore> store_;  // with sessions.store: redis
  // With quotas.store: redis, sessions that end for good leave the user's global count.
  // The session registry's end listener shares this struct, and the registry (in
  // GatewayState) outlives the ControlPlane: so `quotas`, whose timers and socket belong
  // to io_, is destroyed in ~ControlPlane while io_ still exists, and the listener posts
  // to io_ only while `alive`, which stop() clears under `mu` before io_ can go away.
  struct QuotaReleaser {
    std::mutex mu;
    bool alive = true;                            // guarded by mu
    std::unique_ptr<policy::RedisQuotas> quotas;  // control thread only; null once destroyed
  };
  // Stops the listener's posts to io_ (any thread; idempotent).
  void retire_quota_releaser();
  std::shared_ptr<QuotaReleaser> quota_releaser_;
  RegistryHealthTargets health_targets_;  // before health_, which borrows it
  upstream::HealthChecker health_;
  trace::OtlpExporter exporter_;  // spans from GatewayState::spans
  boost::asio::steady_timer watch_timer_;
  boost::asio::steady_timer reap_timer_;
  boost::asio::steady_timer dns_timer_;
  boost::asio::ip::tcp::resolver resolver_;
  std::map<std::string, std::chrono::steady_clock::time_point> dns_due_;  // by cluster
  std::map<std::string, bool> dns_busy_;
  struct FileId {
    uint64_t dev = 0, ino = 0, size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileId&) const = default;
  };
  FileId stat_config() const;
  FileId watched_;
  std::thread thread_;
};

}  // namespace sparkgate::server
