#include "upstream/health_checker.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <spdlog/spdlog.h>

#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string_view>

#include "grpcwire/status.h"
#include "http2/client_connection.h"
#include "upstream/conn_pool.h"
#include "upstream/tls_client.h"
#include "upstream/unary_call.h"

namespace sparkgate::upstream {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kCheckPath = "/grpc.health.v1.Health/Check";
// Longest pause between looks at the registry, so that new backends (reload, DNS) get
// their first probe promptly even when every interval is long.
constexpr std::chrono::milliseconds kRescan{1000};

// HealthCheckResponse.ServingStatus
std::string serving_status_name(uint32_t s) {
  switch (s) {
    case 0: return "UNKNOWN";
    case 1: return "SERVING";
    case 2: return "NOT_SERVING";
    case 3: return "SERVICE_UNKNOWN";
    default: return "status " + std::to_string(s);
  }
}

// Field 1 (status, varint) of a HealthCheckResponse; 0 (UNKNOWN) when absent, nullopt
// if the bytes do not parse.
std::optional<uint32_t> serving_status(const std::string& message) {
  namespace pb = google::protobuf;
  pb::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(message.data()), static_cast<int>(message.size()));
  uint32_t status = 0;
  while (uint32_t tag = in.ReadTag()) {
    if (tag == pb::internal::WireFormatLite::MakeTag(1, pb::internal::WireFormatLite::WIRETYPE_VARINT)) {
      if (!in.ReadVarint32(&status)) return std::nullopt;
    } else if (!pb::internal::WireFormatLite::SkipField(&in, tag)) {
      return std::nullopt;
    }
  }
  if (!in.ConsumedEntireMessage()) return std::nullopt;
  return status;
}

// Turns a Health/Check outcome into success, or failure with a reason for people.
bool judge(const UnaryResult& r, std::string& reason) {
  if (!r.transport_ok) {
    reason = r.timed_out ? "no answer to Health/Check: " + r.transport_error
                         : "Health/Check failed: " + r.transport_error;
    return false;
  }
  const auto code = static_cast<grpcwire::StatusCode>(r.grpc_status);
  if (code == grpcwire::StatusCode::kUnimplemented) return true;  // alive, just no grpc.health
  if (code != grpcwire::StatusCode::kOk) {
    reason = "Health/Check answered grpc-status " + std::to_string(r.grpc_status) + " " +
             std::string(grpcwire::status_name(code)) + (r.grpc_message.empty() ? "" : ": " + r.grpc_message);
    return false;
  }
  const auto status = serving_status(r.response_message);
  if (!status) {
    reason = "Health/Check answered an undecodable HealthCheckResponse";
    return false;
  }
  if (*status != 1) {
    reason = "Health/Check answered " + serving_status_name(*status);
    return false;
  }
  return true;
}

}  // namespace

class HealthChecker::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(boost::asio::any_io_executor executor, HealthTargets& targets,
       std::function<std::shared_ptr<const config::Config>()> current_config)
      : executor_(executor),
        targets_(targets),
        current_config_(std::move(current_config)),
        timer_(executor),
        resolver_(executor) {}

  void start() {
    std::lock_guard lock(mu_);
    if (started_ || stopped_) return;
    started_ = true;
    boost::asio::post(executor_, [self = shared_from_this()] {
      std::lock_guard lock(self->mu_);
      if (!self->stopped_) self->tick();
    });
  }

  void stop() {
    {
      std::lock_guard lock(mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    // Timers, resolver and connections belong to the executor's thread.
    boost::asio::post(executor_, [self = shared_from_this()] { self->shut_down(); });
  }

 private:
  // One probed backend.
  struct Target {
    HealthTarget backend;
    std::shared_ptr<http2::ClientConnection> conn;  // null: connect on the next probe
    std::optional<config::UpstreamTls> tls;      // what `conn` was made with
    Clock::time_point next_due;
    bool in_flight = false;
    bool retired = false;  // left the registry, or health checks were turned off
    uint32_t failures_in_a_row = 0;   // consecutive failed probes (the re-probe backoff)
    uint32_t successes_in_a_row = 0;  // consecutive good probes
    bool returning = false;           // failed lately, not yet healthy_threshold good probes since
  };
  using TargetPtr = std::shared_ptr<Target>;
  using Key = std::pair<std::string, std::string>;  // (cluster, "host:port")

  // Every method below runs on the executor with mu_ held and stopped_ false.

  void tick() {
    const auto now = Clock::now();
    const auto config = current_config_();
    std::set<Key> seen;
    for (auto& backend : targets_.list()) {
      const config::Cluster* cluster = config ? config->find_cluster(backend.cluster) : nullptr;
      if (!cluster || !cluster->health_check.enabled) continue;
      Key key{backend.cluster, backend.name};
      if (!seen.insert(key).second) continue;
      auto& target = probes_[key];
      if (!target) {
        target = std::make_shared<Target>();
        target->next_due = now;
      }
      target->backend = std::move(backend);
      if (!target->in_flight && target->next_due <= now) launch(target, *cluster, now);
    }
    for (auto it = probes_.begin(); it != probes_.end();) {
      if (seen.count(it->first)) {
        ++it;
        continue;
      }
      retire(*it->second);
      it = probes_.erase(it);
    }
    auto wake = now + kRescan;
    for (const auto& [key, target] : probes_) {
      if (!target->in_flight) wake = std::min(wake, target->next_due);
    }
    arm(wake);
  }

  void arm(Clock::time_point when) {
    next_wake_ = when;
    timer_.expires_at(when);
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec) return;
      std::lock_guard lock(self->mu_);
      if (self->stopped_) return;
      self->next_wake_.reset();
      self->tick();
    });
  }

  void retire(Target& target) {
    target.retired = true;
    if (target.conn) target.conn->close("health checks stopped for this backend");
    target.conn.reset();
  }

  void launch(const TargetPtr& target, const config::Cluster& cluster, Clock::time_point now) {
    target->in_flight = true;
    target->next_due = now + cluster.health_check.interval;
    const config::HealthCheck hc = cluster.health_check;
    auto& conn = target->conn;
    if (conn &&
        (conn->is_draining() || !conn->is_connected() || !same_tls(target->tls, cluster.tls))) {
      conn->close("health check connection replaced");
      conn.reset();
    }
    if (conn) {
      check(target, hc);
      return;
    }
    connect(target, hc, cluster.tls);
  }

  void connect(const TargetPtr& target, const config::HealthCheck& hc,
               const std::optional<config::UpstreamTls>& tls) {
    const config::Endpoint& address = target->backend.address;
    std::optional<http2::ClientTls> client_tls;
    if (tls) {
      std::string error;
      auto context = tls_contexts_.get(*tls, error);
      if (!context) {
        complete(target, hc, false, "TLS setup failed: " + error);
        return;
      }
      client_tls = http2::ClientTls{std::move(context), tls->server_name.empty() ? address.host : tls->server_name};
    }
    http2::ClientConnectionOptions options;
    options.stream_window_bytes = 64 * 1024;  // answers are a few bytes
    options.connection_window_bytes = 1u << 20;
    auto conn = std::make_shared<http2::ClientConnection>(executor_, target->backend.name, options);
    target->conn = conn;
    target->tls = tls;
    resolver_.async_resolve(
        address.host, std::to_string(address.port),
        [self = shared_from_this(), target, conn, hc, client_tls](
            const boost::system::error_code& ec, boost::asio::ip::tcp::resolver::results_type results) {
          std::lock_guard lock(self->mu_);
          if (self->stopped_ || target->retired || target->conn != conn) return;
          if (ec) {
            target->conn.reset();
            self->complete(target, hc, false, "cannot resolve " + target->backend.address.host + ": " + ec.message());
            return;
          }
          conn->connect(results, hc.timeout, client_tls, [self, target, conn, hc](const std::string& error) {
            std::lock_guard lock(self->mu_);
            if (self->stopped_ || target->retired || target->conn != conn) return;
            if (!error.empty()) {
              target->conn.reset();
              self->complete(target, hc, false, "cannot connect: " + error);
              return;
            }
            self->check(target, hc);
          });
        });
  }

  void check(const TargetPtr& target, const config::HealthCheck& hc) {
    auto conn = target->conn;
    // An empty HealthCheckRequest: service "" asks about the server as a whole.
    unary_call(
        *conn, std::string(kCheckPath), {}, std::string(), hc.timeout,
        [self = shared_from_this(), target, conn, hc](UnaryResult result) {
          std::lock_guard lock(self->mu_);
          if (self->stopped_ || target->retired) return;
          std::string reason;
          const bool ok = judge(result, reason);
          if (!result.transport_ok && target->conn == conn) {
            // A connection that timed out or broke is not trusted for the next probe.
            conn->close("health check failed: " + result.transport_error);
            target->conn.reset();
          }
          self->complete(target, hc, ok, reason);
        });
  }

  void complete(const TargetPtr& target, const config::HealthCheck& hc, bool ok, const std::string& reason) {
    target->in_flight = false;
    const auto& backend = target->backend;
    if (ok) {
      target->failures_in_a_row = 0;
      ++target->successes_in_a_row;
    } else {
      ++target->failures_in_a_row;
      target->successes_in_a_row = 0;
      target->returning = true;
      spdlog::debug("health check of backend {} (cluster {}) failed: {}", backend.name, backend.cluster, reason);
    }
    targets_.report(backend, hc, ok, reason);
    // Fast re-probe: a failed probe is repeated soon (backing off), and after failures the
    // healthy_threshold good probes that bring a backend back come at that pace too, so
    // that one that is back is healthy again within about retry_max_interval, not after
    // several intervals.
    if (target->returning && target->successes_in_a_row >= hc.healthy_threshold) target->returning = false;
    if (hc.retry_interval.count() > 0 && target->returning) {
      auto delay = hc.retry_interval;
      for (uint32_t i = 1; i < target->failures_in_a_row && delay < hc.retry_max_interval; ++i) delay *= 2;
      delay = std::min({delay, hc.retry_max_interval, hc.interval});
      target->next_due = std::min(target->next_due, Clock::now() + delay);
    }
    if (!next_wake_ || target->next_due < *next_wake_) arm(target->next_due);
  }

  void shut_down() {
    timer_.cancel();
    resolver_.cancel();
    for (auto& [key, target] : probes_) retire(*target);
    probes_.clear();
  }

  boost::asio::any_io_executor executor_;
  HealthTargets& targets_;
  std::function<std::shared_ptr<const config::Config>()> current_config_;
  // Held by every handler while it works, so that once stop() has set stopped_ no
  // handler touches the targets or the config callback again.
  std::mutex mu_;
  bool started_ = false;
  bool stopped_ = false;
  boost::asio::steady_timer timer_;
  std::optional<Clock::time_point> next_wake_;
  boost::asio::ip::tcp::resolver resolver_;
  TlsContextCache tls_contexts_;
  std::map<Key, TargetPtr> probes_;
};

HealthChecker::HealthChecker(boost::asio::any_io_executor executor, HealthTargets& targets,
                             std::function<std::shared_ptr<const config::Config>()> current_config)
    : impl_(std::make_shared<Impl>(std::move(executor), targets, std::move(current_config))) {}

HealthChecker::~HealthChecker() { stop(); }

void HealthChecker::start() { impl_->start(); }

void HealthChecker::stop() { impl_->stop(); }

}  // namespace sparkgate::upstream
