// The OTLP/HTTP exporter: on the control thread, it takes finished spans from the
// SpanQueue in batches of tracing.batch_size and POSTs them to tracing.otlp.endpoint
// (/v1/traces), one request at a time. A batch goes out when the queue holds a full
// batch (the queue wakes the exporter) or when tracing.flush_interval has passed since
// the last one. A batch that fails is not retried: its spans are counted in
// sparkgate_spans_dropped_total{reason="export_failed"}, the failure in
// sparkgate_span_batches_total{result}, and logged at most every 30 s (the URL and the
// reason; never a header value).
//
// Threading: construct, apply(), flush() and stop() on the control thread (the
// executor's single thread). The queue is shared with the workers.
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "observe/metrics.h"
#include "trace/http_post.h"
#include "trace/otlp_encode.h"
#include "trace/span_queue.h"

namespace sparkgate::trace {

class OtlpExporter {
 public:
  // `queue` and `metrics` outlive the exporter.
  OtlpExporter(boost::asio::any_io_executor executor, SpanQueue& queue, observe::Metrics& metrics,
               ResourceInfo resource);
  ~OtlpExporter();

  // Takes the tracing block of a (re)loaded config. Tracing off: queued spans are dropped
  // (counted as shutdown) and nothing is sent. An https:// endpoint whose CA bundle cannot
  // be loaded leaves the exporter off, with `error` set (the config loader has checked
  // that the file is readable, so this is rare). True on success.
  bool apply(const config::Tracing& tracing, std::string& error);

  // Sends every queued span, batch after batch, until the queue is empty or `deadline`
  // has passed; then calls `done` (on the control thread). Spans still queued then are
  // counted as dropped (shutdown). For drain.
  void flush(std::chrono::steady_clock::time_point deadline, std::function<void()> done);

  // Cancels the timer and forgets the callbacks; an export in flight completes unseen.
  void stop();

 private:
  void schedule_tick();
  void on_tick();
  // Sends one batch if none is in flight and spans are queued.
  void send_batch();
  void on_sent(size_t spans, PostResponse r);
  void log_failure(const PostResponse& r, size_t spans);
  void drop_queued(observe::Metrics::SpanDrop why);

  boost::asio::any_io_executor executor_;
  SpanQueue& queue_;
  observe::Metrics& metrics_;
  ResourceInfo resource_;
  config::Tracing config_;  // the tracing block in effect (endpoint empty: off)
  std::shared_ptr<boost::asio::ssl::context> tls_;
  boost::asio::steady_timer timer_;
  std::shared_ptr<bool> alive_;  // cleared by stop(): completions that come later do nothing
  bool in_flight_ = false;
  std::chrono::steady_clock::time_point last_sent_{};
  // flush(): set while draining.
  std::function<void()> flush_done_;
  std::chrono::steady_clock::time_point flush_deadline_{};
  // Rate-limited failure log.
  std::chrono::steady_clock::time_point last_failure_log_{};
  uint64_t failures_unlogged_ = 0;
  bool failing_ = false;
};

}  // namespace sparkgate::trace
