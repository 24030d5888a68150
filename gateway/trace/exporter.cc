#include "trace/exporter.h"

#include <spdlog/spdlog.h>

namespace sparkgate::trace {

namespace asio = boost::asio;

namespace {
constexpr auto kFailureLogInterval = std::chrono::seconds(30);
}

OtlpExporter::OtlpExporter(asio::any_io_executor executor, SpanQueue& queue, observe::Metrics& metrics,
                           ResourceInfo resource)
    : executor_(std::move(executor)),
      queue_(queue),
      metrics_(metrics),
      resource_(std::move(resource)),
      timer_(executor_),
      alive_(std::make_shared<bool>(true)) {
  // Called on a worker: only a post, so the worker never waits for the exporter.
  queue_.set_on_batch_ready([ex = executor_, this, alive = std::weak_ptr<bool>(alive_)] {
    asio::post(ex, [this, alive] {
      auto a = alive.lock();
      if (a && *a) send_batch();
    });
  });
}

OtlpExporter::~OtlpExporter() { stop(); }

bool OtlpExporter::apply(const config::Tracing& tracing, std::string& error) {
  std::shared_ptr<asio::ssl::context> tls;
  if (tracing.enabled() && tracing.url.tls) {
    tls = make_client_tls_context(tracing.ca_file, error);
    if (!tls) {
      config_ = config::Tracing{};
      drop_queued(observe::Metrics::SpanDrop::kShutdown);
      return false;
    }
  }
  const bool was_on = config_.enabled();
  config_ = tracing;
  tls_ = std::move(tls);
  resource_.service_name = tracing.service_name;
  queue_.configure(tracing.queue_size, tracing.batch_size);
  if (!config_.enabled()) {
    timer_.cancel();
    drop_queued(observe::Metrics::SpanDrop::kShutdown);
    return true;
  }
  if (!was_on) {
    last_sent_ = std::chrono::steady_clock::now();
    schedule_tick();
  }
  return true;
}

void OtlpExporter::schedule_tick() {
  // A tick at a quarter of the interval bounds a span's wait to about 1.25 intervals
  // without a timer per span.
  auto period = std::max<std::chrono::milliseconds>(config_.flush_interval / 4, std::chrono::milliseconds(5));
  timer_.expires_after(period);
  timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](const boost::system::error_code& ec) {
    auto a = alive.lock();
    if (ec || !a || !*a) return;
    on_tick();
    if (config_.enabled()) schedule_tick();
  });
}

void OtlpExporter::on_tick() {
  if (std::chrono::steady_clock::now() - last_sent_ >= config_.flush_interval) send_batch();
}

void OtlpExporter::send_batch() {
  if (in_flight_ || !config_.enabled()) return;
  std::vector<Span> batch;
  batch.reserve(std::min<size_t>(config_.batch_size, queue_.size()));
  queue_.pop(batch, config_.batch_size);
  last_sent_ = std::chrono::steady_clock::now();
  if (batch.empty()) {
    if (flush_done_) {
      auto done = std::move(flush_done_);
      flush_done_ = nullptr;
      done();
    }
    return;
  }
  PostRequest req;
  req.url = config_.url;
  for (const auto& h : config_.headers) req.headers.emplace_back(h.name, h.value);
  req.body = encode_export_request(batch, resource_);
  req.timeout = config_.timeout;
  if (flush_done_) {
    // Draining: no request may outlive the drain bound.
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(flush_deadline_ - std::chrono::steady_clock::now());
    req.timeout = std::clamp(left, std::chrono::milliseconds(1), req.timeout);
  }
  in_flight_ = true;
  const size_t n = batch.size();
  http_post(executor_, tls_, std::move(req), [this, n, alive = std::weak_ptr<bool>(alive_)](PostResponse r) {
    auto a = alive.lock();
    if (!a || !*a) return;
    on_sent(n, std::move(r));
  });
}

void OtlpExporter::on_sent(size_t spans, PostResponse r) {
  in_flight_ = false;
  metrics_.span_batch(post_result_label(r.result)).Increment();
  if (r.result == PostResult::kOk) {
    std::string message;
    const int64_t rejected = std::clamp<int64_t>(rejected_spans(r.body, message), 0, static_cast<int64_t>(spans));
    metrics_.spans_exported().Increment(static_cast<double>(spans - static_cast<size_t>(rejected)));
    if (rejected > 0) {
      metrics_.spans_dropped(observe::Metrics::SpanDrop::kExportFailed).Increment(static_cast<double>(rejected));
      spdlog::warn("trace export to {}: the collector rejected {} of {} spans: {}", config_.url.text, rejected, spans,
                   message.substr(0, 200));
    }
    if (failing_) {
      spdlog::info("trace export to {} works again ({} more failures since the last report)", config_.url.text,
                   failures_unlogged_);
      failing_ = false;
      failures_unlogged_ = 0;
    }
  } else {
    metrics_.spans_dropped(observe::Metrics::SpanDrop::kExportFailed).Increment(static_cast<double>(spans));
    log_failure(r, spans);
  }
  const auto now = std::chrono::steady_clock::now();
  if (flush_done_) {
    if (now >= flush_deadline_) {
      drop_queued(observe::Metrics::SpanDrop::kShutdown);
      auto done = std::move(flush_done_);
      flush_done_ = nullptr;
      done();
      return;
    }
    send_batch();
    return;
  }
  // A full batch waiting goes out at once; a partial one waits for the interval.
  if (queue_.size() >= config_.batch_size) send_batch();
}

void OtlpExporter::log_failure(const PostResponse& r, size_t spans) {
  const auto now = std::chrono::steady_clock::now();
  if (failing_ && now - last_failure_log_ < kFailureLogInterval) {
    ++failures_unlogged_;
    return;
  }
  std::string more;
  if (failures_unlogged_) {
    more.append(" (").append(std::to_string(failures_unlogged_)).append(" more failures since the last report)");
  }
  // r.error names the URL and the reason; it never holds a header value.
  spdlog::warn("trace export failed ({}): {}; {} spans dropped{}", post_result_label(r.result), r.error, spans, more);
  failing_ = true;
  failures_unlogged_ = 0;
  last_failure_log_ = now;
}

void OtlpExporter::drop_queued(observe::Metrics::SpanDrop why) {
  std::vector<Span> gone;
  size_t n = 0;
  while (size_t k = queue_.pop(gone, 1024)) {
    n += k;
    gone.clear();
  }
  if (n) metrics_.spans_dropped(why).Increment(static_cast<double>(n));
}

void OtlpExporter::flush(std::chrono::steady_clock::time_point deadline, std::function<void()> done) {
  if (!config_.enabled()) {
    drop_queued(observe::Metrics::SpanDrop::kShutdown);
    done();
    return;
  }
  flush_deadline_ = deadline;
  flush_done_ = std::move(done);
  // With a request in flight, its completion goes on (on_sent).
  if (!in_flight_) send_batch();
}

void OtlpExporter::stop() {
  if (alive_) *alive_ = false;
  timer_.cancel();
  queue_.set_on_batch_ready(nullptr);
}

}  // namespace sparkgate::trace
