// The process's Prometheus metric families (prometheus-cpp), served as text at /metrics
// on the admin listener. Every family name and label is declared in metrics.cc, and only
// there (docs/operations.md documents each one).
//
// Hot path: a stream resolves its ClusterMetrics once (a pointer that lives as long as the
// process) and then adds to its thread's own cells (RpcCells: plain counters, one set per
// thread slot, each on its own cache lines), with no lock and no atomic that another
// worker writes. render() sums the cells of every slot and publishes the difference since
// the last scrape into the prometheus-cpp series, which are created then, on the first
// scrape that has a count for them. So the per-RPC families cost a scrape, not a
// contended cache line or prometheus-cpp's histogram mutex per RPC.
//
// Threading: every method is thread-safe.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "observe/labels.h"
#include "base/auth_failure.h"

namespace sparkgate::observe {

class Metrics;
struct RpcCells;
struct RpcTotals;

// The per-RPC families of one cluster (cluster="" for RPCs answered before a cluster was
// chosen). Obtained from Metrics::cluster(); never destroyed before the Metrics.
class ClusterMetrics {
 public:
  ~ClusterMetrics();
  ClusterMetrics(const ClusterMetrics&) = delete;
  ClusterMetrics& operator=(const ClusterMetrics&) = delete;

  // An RPC started forwarding to this cluster: sparkgate_active_streams{cluster} + 1.
  // Any thread; the close may come on another thread than the open.
  void stream_opened();
  void stream_closed();
  // One finished RPC: sparkgate_rpcs_total, sparkgate_rpc_duration_seconds,
  // sparkgate_rpc_first_response_seconds (when `first_response_seconds` >= 0, streaming
  // RPCs only) and sparkgate_bytes_total. Any thread; visible at the next scrape.
  void rpc_done(RpcLabel rpc, int code, double seconds, double first_response_seconds, uint64_t bytes_in,
                uint64_t bytes_out);

  // Thread slots: threads take slots in the order they first count (slot = n mod
  // kCellSlots), so up to kCellSlots threads never share a cache line; more share slots,
  // which stays correct (the cells are atomic adds), only slower.
  static constexpr size_t kCellSlots = 64;

 private:
  friend class Metrics;
  ClusterMetrics(Metrics& metrics, std::string cluster);

  // This thread's cells, allocated on its first count here.
  RpcCells& local_cells();
  // Adds what was counted since the last call to the prometheus-cpp series. Called by
  // Metrics::render() (any thread, serialised by publish_mu_).
  void publish();

  Metrics& metrics_;
  const std::string cluster_;
  prometheus::Gauge& active_;
  prometheus::Counter& bytes_in_;
  prometheus::Counter& bytes_out_;
  // Owned: allocated by local_cells(), deleted by the destructor.
  std::array<std::atomic<RpcCells*>, kCellSlots> cells_{};

  std::mutex publish_mu_;  // guards everything below
  std::unique_ptr<RpcTotals> published_;  // the sums at the last publish()
  std::array<std::array<prometheus::Counter*, kCodeLabels>, kRpcLabels> rpcs_{};
  std::array<prometheus::Histogram*, kRpcLabels> duration_{};
  std::array<prometheus::Histogram*, kRpcLabels> first_response_{};
};

// Values read at scrape time from their owners (the backend registry, the workers, the
// session registry), so that the data path keeps no copy of them.
struct ScrapeInput {
  struct Backend {
    std::string cluster;
    std::string address;
    int64_t sessions = 0;
    bool healthy = false;
  };
  std::vector<Backend> backends;
  uint64_t downstream_connections = 0;
  uint64_t sessions_created = 0;
};

class Metrics {
 public:
  Metrics();

  // sparkgate_build_info{version} 1. Call once at start-up.
  void set_build_info(const std::string& version);

  // sparkgate_config_reloads_total{result="success"|"failure"}
  prometheus::Counter& reloads_succeeded() { return reloads_succeeded_; }
  prometheus::Counter& reloads_failed() { return reloads_failed_; }

  // sparkgate_auth_failures_total{reason}: refused credentials, by AuthFailure label.
  prometheus::Counter& auth_failure(base::AuthFailure reason);

  // sparkgate_jwks_fetches_total{issuer,result}: fetches of an issuer's remote keys, by
  // policy::fetch_result_label ("ok", "unreachable", "tls", "timeout", ...). Issuers come
  // from the config, so the label set is bounded. Thread-safe.
  prometheus::Counter& jwks_fetch(const std::string& issuer, std::string_view result);

  // Quotas, in the order of the labels of sparkgate_quota_rejections_total{quota}.
  enum class Quota { kMaxSessions, kMaxConcurrentOperations, kRequestsPerSecond, kMaxArtifactBytes, kMaxMessageBytes };
  static std::string_view quota_name(Quota q);
  prometheus::Counter& quota_rejection(Quota q) { return *quota_rejections_[static_cast<size_t>(q)]; }

  // sparkgate_identity_rejections_total: requests whose user_id was not the principal's.
  prometheus::Counter& identity_rejections() { return identity_rejections_; }

  // sparkgate_sessions_expired_total: sessions ended by sessions.idle_timeout or max_lifetime.
  prometheus::Counter& sessions_expired() { return sessions_expired_; }
  // sparkgate_sessions_closed_total{reason}: every way a session ends (EndReason names).
  prometheus::Counter& sessions_closed(std::string_view reason);

  // Trace export (trace/): sparkgate_spans_dropped_total{reason}: spans lost, because the
  // export queue was full ("queue_full", counted on the worker that made the span), their
  // batch could not be delivered ("export_failed"), or shutdown came first ("shutdown").
  enum class SpanDrop { kQueueFull, kExportFailed, kShutdown };
  prometheus::Counter& spans_dropped(SpanDrop why) { return *spans_dropped_[static_cast<size_t>(why)]; }
  // sparkgate_spans_exported_total: spans a collector accepted.
  prometheus::Counter& spans_exported() { return spans_exported_; }
  // sparkgate_span_batches_total{result}: export requests, by result ("ok", "unreachable",
  // "timeout", "tls", "http_status"). Results are a fixed set.
  prometheus::Counter& span_batch(std::string_view result);

  // The per-RPC families of `cluster` ("" before routing). The first call for a name
  // creates them (under a lock); keep the pointer rather than calling this per RPC.
  ClusterMetrics& cluster(const std::string& name);

  // sparkgate_upstream_connections{backend}: held by each connection pool for its backend.
  prometheus::Gauge& upstream_connections(const std::string& backend);

  // Engines on demand (engines/): sparkgate_engines{state} (engines now, per state:
  // starting, ready, stopping), sparkgate_engine_starts_total{result} ("ok", "failed",
  // "timeout") and sparkgate_engine_start_seconds (launch to ready). Thread-safe.
  prometheus::Gauge& engines(std::string_view state);
  prometheus::Counter& engine_start(std::string_view result);
  prometheus::Histogram& engine_start_seconds() { return engine_start_seconds_; }

  // The Prometheus text exposition of every family, with the values of `input`.
  std::string render(const ScrapeInput& input) const;

 private:
  friend class ClusterMetrics;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& reloads_;
  prometheus::Counter& reloads_succeeded_;
  prometheus::Counter& reloads_failed_;
  static constexpr size_t kAuthReasons = base::kAuthFailureCount;
  std::array<prometheus::Counter*, kAuthReasons> auth_failures_{};
  std::array<prometheus::Counter*, 5> quota_rejections_{};
  prometheus::Counter& identity_rejections_;
  prometheus::Counter& sessions_expired_;
  prometheus::Family<prometheus::Counter>& sessions_closed_;
  prometheus::Family<prometheus::Counter>& jwks_fetches_;
  std::array<prometheus::Counter*, 3> spans_dropped_{};
  prometheus::Counter& spans_exported_;
  prometheus::Family<prometheus::Counter>& span_batches_;
  prometheus::Family<prometheus::Gauge>& build_info_;
  prometheus::Family<prometheus::Counter>& rpcs_;
  prometheus::Family<prometheus::Histogram>& duration_;
  prometheus::Family<prometheus::Histogram>& first_response_;
  prometheus::Family<prometheus::Counter>& bytes_;
  prometheus::Family<prometheus::Gauge>& active_streams_;
  prometheus::Family<prometheus::Gauge>& upstream_connections_;
  prometheus::Family<prometheus::Gauge>& engines_;
  prometheus::Family<prometheus::Counter>& engine_starts_;
  prometheus::Histogram& engine_start_seconds_;

  mutable std::mutex clusters_mu_;
  std::map<std::string, std::unique_ptr<ClusterMetrics>, std::less<>> clusters_;
};

}  // namespace sparkgate::observe
