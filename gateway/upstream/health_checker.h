// Active health checks: every backend of every cluster with health_check.enabled is
// probed every health_check.interval with grpc.health.v1.Health/Check on a connection
// the checker owns (one per backend, TLS when the cluster has `tls:`). The backends come
// from, and the outcomes go to, a HealthTargets (the server's is routing's backend
// registry: server/health_targets.h, where BackendState applies the thresholds).
//
// A probe succeeds on grpc-status 0 with status SERVING, and on grpc-status 12
// UNIMPLEMENTED: Spark Connect does not serve grpc.health, and an answer of any kind
// proves the server is up (the call creates no Spark session). It fails on NOT_SERVING
// (or any other serving status), any other grpc-status, no answer within
// health_check.timeout, or a connection that cannot be made (refused, TLS failure).
// A failure at the connection level drops the connection; the next probe reconnects.
// Fast re-probe: after a failed probe the next one goes out after
// health_check.retry_interval, doubling per consecutive failure up to retry_max_interval;
// a backend that is unhealthy but answering is probed at retry_interval until it has its
// healthy_threshold good probes. So a backend that is back is healthy within about
// retry_max_interval (1 s by default).
//
// Threading: the checker's work runs on the executor given to the constructor, which
// must be single-threaded (one io_context thread, or a strand). start() and stop() may
// be called from any thread.
#pragma once

#include <boost/asio.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"

namespace sparkgate::upstream {

// One backend to probe.
struct HealthTarget {
  std::string cluster;
  config::Endpoint address;
  std::string name;  // "host:port"
};

// Where the checker finds its backends and reports what it saw.
class HealthTargets {
 public:
  virtual ~HealthTargets() = default;
  // Every backend there is now, of every cluster (the checker skips clusters without
  // health_check.enabled). Called on the checker's executor, at least once a second.
  virtual std::vector<HealthTarget> list() const = 0;
  // The outcome of one probe of `target`, run under `check`: success, or a failure and
  // its reason for people. Called on the checker's executor.
  virtual void report(const HealthTarget& target, const config::HealthCheck& check, bool ok,
                      const std::string& reason) = 0;
};

class HealthChecker {
 public:
  // `targets` is borrowed: its owner keeps it alive until stop() has returned.
  // `current_config` returns the config snapshot to use; it is called on the executor
  // once per scheduling pass (the cluster's health_check and tls are looked up by name
  // each time, so reloads apply from the next probe).
  HealthChecker(boost::asio::any_io_executor executor, HealthTargets& targets,
                std::function<std::shared_ptr<const config::Config>()> current_config);
  // Stops (see stop()).
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Begins probing: the first probe of every backend goes out at once. Calling it again
  // (or after stop()) does nothing.
  void start();
  // After it returns, the checker no longer touches the targets or calls
  // current_config; timers are cancelled and connections closed on the executor (if it
  // still runs). The checker may then be destroyed.
  void stop();

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace sparkgate::upstream
