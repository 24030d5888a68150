#include "observe/metrics.h"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <cmath>

#include "grpcwire/status.h"

namespace sparkgate::observe {

namespace {

// RPC durations span a 1 ms Config call to a query of many minutes.
constexpr std::array<double, 19> kDurationBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                    0.25,  0.5,    1,     2.5,  5,     10,   30,
                                                    60,    120,    300,   600,  1800};
constexpr size_t kDurationBuckets = kDurationBounds.size() + 1;  // the last one is +Inf

const prometheus::Histogram::BucketBoundaries& duration_buckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets(kDurationBounds.begin(), kDurationBounds.end());
  return kBuckets;
}

// The bucket prometheus-cpp's Histogram::Observe would count `seconds` in: the first
// bound >= the value (Prometheus's "le").
size_t duration_bucket(double seconds) {
  return static_cast<size_t>(std::lower_bound(kDurationBounds.begin(), kDurationBounds.end(), seconds) -
                             kDurationBounds.begin());
}

uint64_t to_ns(double seconds) { return seconds > 0 ? static_cast<uint64_t>(std::llround(seconds * 1e9)) : 0; }

size_t this_thread_slot() {
  static std::atomic<size_t> next{0};
  thread_local const size_t slot = next.fetch_add(1, std::memory_order_relaxed) % ClusterMetrics::kCellSlots;
  return slot;
}

prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

prometheus::ClientMetric gauge_value(std::vector<prometheus::ClientMetric::Label> labels, double v) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = v;
  return m;
}

}  // namespace

// One histogram's counts in one thread slot.
struct HistogramCells {
  std::array<std::atomic<uint64_t>, kDurationBuckets> buckets{};
  std::atomic<uint64_t> sum_ns{0};

  void observe(double seconds) {
    buckets[duration_bucket(seconds)].fetch_add(1, std::memory_order_relaxed);
    sum_ns.fetch_add(to_ns(seconds), std::memory_order_relaxed);
  }
};

// One thread slot's counts of one cluster's per-RPC families. Aligned so that two slots
// never share a cache line.
struct alignas(64) RpcCells {
  std::array<std::array<std::atomic<uint64_t>, kCodeLabels>, kRpcLabels> rpcs{};
  std::array<HistogramCells, kRpcLabels> duration{};
  std::array<HistogramCells, kRpcLabels> first_response{};
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> bytes_out{0};
  std::atomic<int64_t> active{0};  // opens minus closes counted in this slot (may be < 0)
};

// The same counts summed over the slots, as plain numbers.
struct HistogramTotals {
  std::array<uint64_t, kDurationBuckets> buckets{};
  uint64_t sum_ns = 0;
};
struct RpcTotals {
  std::array<std::array<uint64_t, kCodeLabels>, kRpcLabels> rpcs{};
  std::array<HistogramTotals, kRpcLabels> duration{};
  std::array<HistogramTotals, kRpcLabels> first_response{};
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  int64_t active = 0;
};

namespace {

void add_histogram(HistogramTotals& to, const HistogramCells& from) {
  for (size_t b = 0; b < kDurationBuckets; ++b) to.buckets[b] += from.buckets[b].load(std::memory_order_relaxed);
  to.sum_ns += from.sum_ns.load(std::memory_order_relaxed);
}

// Adds `now - before` to `series`, which `create` makes on the first count; nothing if
// nothing was counted.
template <typename Create>
void publish_histogram(prometheus::Histogram*& series, const HistogramTotals& now, const HistogramTotals& before,
                       Create create) {
  std::vector<double> increments(kDurationBuckets);
  uint64_t count = 0;
  for (size_t b = 0; b < kDurationBuckets; ++b) {
    const uint64_t d = now.buckets[b] - before.buckets[b];
    increments[b] = static_cast<double>(d);
    count += d;
  }
  if (count == 0) return;
  if (!series) series = &create();
  series->ObserveMultiple(increments, static_cast<double>(now.sum_ns - before.sum_ns) / 1e9);
}

}  // namespace

std::string_view rpc_label_name(RpcLabel rpc) {
  if (rpc < spark::all_rpcs().size()) return spark::all_rpcs()[rpc].name;
  return "unknown";
}

std::string_view code_label_name(size_t code) { return grpcwire::status_name(static_cast<grpcwire::StatusCode>(code)); }

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      reloads_(prometheus::BuildCounter()
                   .Name("sparkgate_config_reloads_total")
                   .Help("Configuration reloads (SIGHUP or a change of the file), by result")
                   .Register(*registry_)),
      reloads_succeeded_(reloads_.Add({{"result", "success"}})),
      reloads_failed_(reloads_.Add({{"result", "failure"}})),
      identity_rejections_(prometheus::BuildCounter()
                               .Name("sparkgate_identity_rejections_total")
                               .Help("Requests refused because user_context.user_id was not the authenticated user")
                               .Register(*registry_)
                               .Add({})),
      sessions_expired_(prometheus::BuildCounter()
                            .Name("sparkgate_sessions_expired_total")
                            .Help("Sessions ended by sessions.idle_timeout or sessions.max_lifetime")
                            .Register(*registry_)
                            .Add({})),
      sessions_closed_(prometheus::BuildCounter()
                           .Name("sparkgate_sessions_closed_total")
                           .Help("Sessions that ended, by reason")
                           .Register(*registry_)),
      jwks_fetches_(prometheus::BuildCounter()
                        .Name("sparkgate_jwks_fetches_total")
                        .Help("Fetches of a JWT issuer's remote keys (discovery and JWKS), by issuer and result")
                        .Register(*registry_)),
      spans_exported_(prometheus::BuildCounter()
                          .Name("sparkgate_spans_exported_total")
                          .Help("Spans accepted by the OTLP collector (tracing.otlp)")
                          .Register(*registry_)
                          .Add({})),
      span_batches_(prometheus::BuildCounter()
                        .Name("sparkgate_span_batches_total")
                        .Help("OTLP trace export requests, by result")
                        .Register(*registry_)),
      build_info_(prometheus::BuildGauge()
                      .Name("sparkgate_build_info")
                      .Help("Always 1; the version label names the running build")
                      .Register(*registry_)),
      rpcs_(prometheus::BuildCounter()
                .Name("sparkgate_rpcs_total")
                .Help("Finished RPCs, by method, gRPC status code and cluster (\"\" before routing)")
                .Register(*registry_)),
      duration_(prometheus::BuildHistogram()
                    .Name("sparkgate_rpc_duration_seconds")
                    .Help("RPC duration from request headers to the end of the stream")
                    .Register(*registry_)),
      first_response_(prometheus::BuildHistogram()
                          .Name("sparkgate_rpc_first_response_seconds")
                          .Help("Streaming RPCs (ExecutePlan, ReattachExecute): time from request headers to the "
                                "first response bytes")
                          .Register(*registry_)),
      bytes_(prometheus::BuildCounter()
                 .Name("sparkgate_bytes_total")
                 .Help("gRPC body bytes of finished RPCs: in = received from clients, out = sent to clients")
                 .Register(*registry_)),
      active_streams_(prometheus::BuildGauge()
                          .Name("sparkgate_active_streams")
                          .Help("RPCs being forwarded to a backend now")
                          .Register(*registry_)),
      upstream_connections_(prometheus::BuildGauge()
                                .Name("sparkgate_upstream_connections")
                                .Help("Open HTTP/2 connections to each backend")
                                .Register(*registry_)),
      engines_(prometheus::BuildGauge()
                   .Name("sparkgate_engines")
                   .Help("Spark engines the gateway started, by state (starting, ready, stopping)")
                   .Register(*registry_)),
      engine_starts_(prometheus::BuildCounter()
                         .Name("sparkgate_engine_starts_total")
                         .Help("Engine starts, by result (ok, failed, timeout)")
                         .Register(*registry_)),
      engine_start_seconds_(prometheus::BuildHistogram()
                                .Name("sparkgate_engine_start_seconds")
                                .Help("Time from an engine's launch to its accepting connections")
                                .Register(*registry_)
                                .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 5, 10, 15, 20, 30, 45, 60, 90,
                                                                                 120, 180, 300})) {
  for (const char* st : {"starting", "ready", "stopping"}) engines_.Add({{"state", st}});
  for (const char* r : {"ok", "failed", "timeout"}) engine_starts_.Add({{"result", r}});
  auto& auth = prometheus::BuildCounter()
                   .Name("sparkgate_auth_failures_total")
                   .Help("Requests refused with UNAUTHENTICATED, by reason")
                   .Register(*registry_);
  // kNone is not a failure; every real reason exists from the start (a rate of 0 is data).
  for (size_t i = 1; i < kAuthReasons; ++i) {
    auth_failures_[i] =
        &auth.Add({{"reason", std::string(base::auth_failure_label(static_cast<base::AuthFailure>(i)))}});
  }
  auto& quotas = prometheus::BuildCounter()
                     .Name("sparkgate_quota_rejections_total")
                     .Help("Requests refused with RESOURCE_EXHAUSTED by a quota, by quota")
                     .Register(*registry_);
  for (size_t i = 0; i < quota_rejections_.size(); ++i) {
    quota_rejections_[i] = &quotas.Add({{"quota", std::string(quota_name(static_cast<Quota>(i)))}});
  }
  auto& dropped = prometheus::BuildCounter()
                      .Name("sparkgate_spans_dropped_total")
                      .Help("Spans not exported, by reason: queue_full, export_failed, shutdown")
                      .Register(*registry_);
  const char* reasons[] = {"queue_full", "export_failed", "shutdown"};
  for (size_t i = 0; i < spans_dropped_.size(); ++i) spans_dropped_[i] = &dropped.Add({{"reason", reasons[i]}});
}

prometheus::Gauge& Metrics::engines(std::string_view state) { return engines_.Add({{"state", std::string(state)}}); }

prometheus::Counter& Metrics::engine_start(std::string_view result) {
  return engine_starts_.Add({{"result", std::string(result)}});
}

prometheus::Counter& Metrics::span_batch(std::string_view result) {
  return span_batches_.Add({{"result", std::string(result)}});
}

void Metrics::set_build_info(const std::string& version) { build_info_.Add({{"version", version}}).Set(1); }

prometheus::Counter& Metrics::auth_failure(base::AuthFailure reason) {
  auto i = static_cast<size_t>(reason);
  if (i == 0 || i >= kAuthReasons) i = static_cast<size_t>(base::AuthFailure::kMalformed);
  return *auth_failures_[i];
}

prometheus::Counter& Metrics::jwks_fetch(const std::string& issuer, std::string_view result) {
  return jwks_fetches_.Add({{"issuer", issuer}, {"result", std::string(result)}});
}

prometheus::Counter& Metrics::sessions_closed(std::string_view reason) {
  // Family::Add returns the existing series for known labels; sessions end rarely.
  return sessions_closed_.Add({{"reason", std::string(reason)}});
}

std::string_view Metrics::quota_name(Quota q) {
  switch (q) {
    case Quota::kMaxSessions: return "max_sessions";
    case Quota::kMaxConcurrentOperations: return "max_concurrent_operations";
    case Quota::kRequestsPerSecond: return "requests_per_second";
    case Quota::kMaxArtifactBytes: return "max_artifact_bytes";
    case Quota::kMaxMessageBytes: return "max_message_bytes";
  }
  return "?";
}

ClusterMetrics& Metrics::cluster(const std::string& name) {
  std::lock_guard lock(clusters_mu_);
  auto it = clusters_.find(name);
  if (it == clusters_.end())
    it = clusters_.emplace(name, std::unique_ptr<ClusterMetrics>(new ClusterMetrics(*this, name))).first;
  return *it->second;
}

prometheus::Gauge& Metrics::upstream_connections(const std::string& backend) {
  return upstream_connections_.Add({{"backend", backend}});
}

ClusterMetrics::ClusterMetrics(Metrics& metrics, std::string cluster)
    : metrics_(metrics),
      cluster_(std::move(cluster)),
      active_(metrics.active_streams_.Add({{"cluster", cluster_}})),
      bytes_in_(metrics.bytes_.Add({{"direction", "in"}, {"cluster", cluster_}})),
      bytes_out_(metrics.bytes_.Add({{"direction", "out"}, {"cluster", cluster_}})) {}

ClusterMetrics::~ClusterMetrics() {
  for (auto& c : cells_) delete c.load(std::memory_order_acquire);
}

RpcCells& ClusterMetrics::local_cells() {
  auto& slot = cells_[this_thread_slot()];
  if (auto* c = slot.load(std::memory_order_acquire)) return *c;
  auto fresh = std::make_unique<RpcCells>();
  RpcCells* expected = nullptr;
  // Another thread of the same slot may have won the race: use its cells.
  if (slot.compare_exchange_strong(expected, fresh.get(), std::memory_order_acq_rel)) return *fresh.release();
  return *expected;
}

void ClusterMetrics::stream_opened() { local_cells().active.fetch_add(1, std::memory_order_relaxed); }
void ClusterMetrics::stream_closed() { local_cells().active.fetch_sub(1, std::memory_order_relaxed); }

void ClusterMetrics::rpc_done(RpcLabel rpc, int code, double seconds, double first_response_seconds,
                              uint64_t bytes_in, uint64_t bytes_out) {
  if (rpc >= kRpcLabels) rpc = kUnknownRpc;
  auto& cells = local_cells();
  cells.rpcs[rpc][code_label(code)].fetch_add(1, std::memory_order_relaxed);
  cells.duration[rpc].observe(seconds);
  if (first_response_seconds >= 0) cells.first_response[rpc].observe(first_response_seconds);
  if (bytes_in) cells.bytes_in.fetch_add(bytes_in, std::memory_order_relaxed);
  if (bytes_out) cells.bytes_out.fetch_add(bytes_out, std::memory_order_relaxed);
}

void ClusterMetrics::publish() {
  std::lock_guard lock(publish_mu_);
  auto now = std::make_unique<RpcTotals>();
  for (const auto& slot : cells_) {
    const auto* c = slot.load(std::memory_order_acquire);
    if (!c) continue;
    for (size_t r = 0; r < kRpcLabels; ++r) {
      for (size_t k = 0; k < kCodeLabels; ++k) now->rpcs[r][k] += c->rpcs[r][k].load(std::memory_order_relaxed);
      add_histogram(now->duration[r], c->duration[r]);
      add_histogram(now->first_response[r], c->first_response[r]);
    }
    now->bytes_in += c->bytes_in.load(std::memory_order_relaxed);
    now->bytes_out += c->bytes_out.load(std::memory_order_relaxed);
    now->active += c->active.load(std::memory_order_relaxed);
  }
  if (!published_) published_ = std::make_unique<RpcTotals>();
  const auto& before = *published_;
  for (size_t r = 0; r < kRpcLabels; ++r) {
    const std::string rpc_name(rpc_label_name(r));
    for (size_t k = 0; k < kCodeLabels; ++k) {
      const uint64_t d = now->rpcs[r][k] - before.rpcs[r][k];
      if (d == 0) continue;
      if (!rpcs_[r][k]) {
        rpcs_[r][k] =
            &metrics_.rpcs_.Add({{"rpc", rpc_name}, {"code", std::string(code_label_name(k))}, {"cluster", cluster_}});
      }
      rpcs_[r][k]->Increment(static_cast<double>(d));
    }
    publish_histogram(duration_[r], now->duration[r], before.duration[r], [&]() -> prometheus::Histogram& {
      return metrics_.duration_.Add({{"rpc", rpc_name}, {"cluster", cluster_}}, duration_buckets());
    });
    publish_histogram(first_response_[r], now->first_response[r], before.first_response[r],
                      [&]() -> prometheus::Histogram& {
                        return metrics_.first_response_.Add({{"rpc", rpc_name}, {"cluster", cluster_}},
                                                            duration_buckets());
                      });
  }
  if (const uint64_t d = now->bytes_in - before.bytes_in) bytes_in_.Increment(static_cast<double>(d));
  if (const uint64_t d = now->bytes_out - before.bytes_out) bytes_out_.Increment(static_cast<double>(d));
  active_.Set(static_cast<double>(now->active));
  published_ = std::move(now);
}

std::string Metrics::render(const ScrapeInput& input) const {
  {
    std::lock_guard lock(clusters_mu_);
    for (const auto& [name, cluster] : clusters_) cluster->publish();
  }
  auto families = registry_->Collect();
  auto sessions = family("sparkgate_sessions", "Live Spark sessions pinned to each backend", prometheus::MetricType::Gauge);
  auto healthy = family("sparkgate_backend_healthy", "1 if the backend passes its health checks, else 0",
                        prometheus::MetricType::Gauge);
  for (const auto& b : input.backends) {
    // Label names in alphabetical order, as prometheus-cpp writes its own families.
    std::vector<prometheus::ClientMetric::Label> labels{{"backend", b.address}, {"cluster", b.cluster}};
    sessions.metric.push_back(gauge_value(labels, static_cast<double>(b.sessions)));
    healthy.metric.push_back(gauge_value(labels, b.healthy ? 1 : 0));
  }
  families.push_back(std::move(sessions));
  families.push_back(std::move(healthy));
  auto down = family("sparkgate_downstream_connections", "Open client connections", prometheus::MetricType::Gauge);
  down.metric.push_back(gauge_value({}, static_cast<double>(input.downstream_connections)));
  families.push_back(std::move(down));
  auto created = family("sparkgate_sessions_created_total", "Sessions this gateway registered (placed or adopted)",
                        prometheus::MetricType::Counter);
  prometheus::ClientMetric c;
  c.counter.value = static_cast<double>(input.sessions_created);
  created.metric.push_back(c);
  families.push_back(std::move(created));
  prometheus::TextSerializer serializer;
  return serializer.Serialize(families);
}

}  // namespace sparkgate::observe
