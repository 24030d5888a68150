// ProxyStream's observability: request correlation, the gateway's own health check,
// per-session stream tracking for the admin API, and the record of a finished RPC
// (metrics, session stats, access log). Split from proxy_stream.cc, which owns the order
// of the pipeline's steps; these are the calls it makes into observe/.
#include <charconv>

#include "observe/correlation.h"
#include "proxy/proxy_stream.h"

namespace sparkgate::proxy {

namespace {

double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

bool is_operation_rpc(const spark::RpcInfo* rpc) {
  return rpc && (rpc->rpc == spark::Rpc::kExecutePlan || rpc->rpc == spark::Rpc::kReattachExecute);
}

}  // namespace

void ProxyStream::correlate(const http2::HeaderMap& headers) {
  const std::string* id = headers.find("x-request-id");
  request_id_ = id && observe::usable_request_id(*id) ? *id : observe::new_request_id();
  const std::string* tp = headers.find("traceparent");
  new_trace_ = !(tp && observe::valid_traceparent(*tp));
  traceparent_ = new_trace_ ? observe::new_traceparent() : *tp;
}

void ProxyStream::forward_correlation() {
  upstream_headers_.remove("x-request-id");
  upstream_headers_.add("x-request-id", request_id_);
  upstream_headers_.remove("traceparent");
  // W3C Trace Context: a tracestate belongs to the traceparent it came with.
  if (new_trace_) upstream_headers_.remove("tracestate");
  upstream_headers_.add("traceparent", traceparent_);
}

void ProxyStream::reply_health_check() {
  // grpc.health.v1.HealthCheckResponse{status: SERVING (1) | NOT_SERVING (2)}, whatever
  // service the request names: the gateway is one service. The request body is not
  // needed; it was returned to the window as it came (kLocalReply).
  // (not `= "0"`: g++ 12 reports a false -Wrestrict for short literal assignment here)
  final_status_.assign(1, '0');
  if (!downstream_ || resp_headers_sent_) return;
  const bool serving = !(ctx_.draining && ctx_.draining->load()) && ctx_.router && ctx_.router->backends().any_healthy();
  const uint8_t message[] = {0, 0, 0, 0, 2, 0x08, static_cast<uint8_t>(serving ? 1 : 2)};
  http2::HeaderMap h;
  h.add(":status", "200");
  h.add("content-type", "application/grpc");
  resp_headers_sent_ = true;
  resp_buf_.append(message, sizeof message);
  http2::HeaderMap t;
  t.add("grpc-status", "0");
  resp_trailers_ = std::move(t);
  resp_end_ = true;
  downstream_->submit_response(down_id_, h, true);
}

void ProxyStream::close_by_operator(const std::string& message) {
  if (phase_ == Phase::kDone || phase_ == Phase::kLocalReply) return;
  reply_local(grpcwire::StatusCode::kNotFound, message);
}

observe::ClusterMetrics* ProxyStream::cluster_metrics() {
  if (!ctx_.metrics) return nullptr;
  if (route_.backend) {
    // Cached on the backend (its cluster never changes): no lookup per RPC.
    auto* m = route_.backend->metrics.load(std::memory_order_acquire);
    if (!m) {
      m = &ctx_.metrics->cluster(route_.backend->cluster());
      route_.backend->metrics.store(m, std::memory_order_release);
    }
    return m;
  }
  // Answered before a backend was chosen: rare, and a local reply anyway.
  return &ctx_.metrics->cluster(route_.cluster ? route_.cluster->name : std::string());
}

void ProxyStream::observe_routed() {
  observe_unrouted();
  if (!active_in_ && (active_in_ = cluster_metrics())) active_in_->stream_opened();
  if (!route_.session) return;
  attached_to_ = route_.session;
  if (downstream_) {
    attach_id_ = attached_to_->attach_stream(
        {downstream_->executor(), std::weak_ptr<routing::SessionStream>(weak_from_this())});
  }
  if (is_operation_rpc(rpc_)) {
    attached_to_->stats.operations_in_flight.fetch_add(1, std::memory_order_relaxed);
    operation_counted_ = true;
  }
  if (route_.new_session && !principal_.tenant.empty()) attached_to_->set_tenant(principal_.tenant);
}

void ProxyStream::observe_unrouted() {
  if (active_in_) {
    active_in_->stream_closed();
    active_in_ = nullptr;
  }
  if (!attached_to_) return;
  if (attach_id_) attached_to_->detach_stream(attach_id_);
  attach_id_ = 0;
  if (operation_counted_) attached_to_->stats.operations_in_flight.fetch_sub(1, std::memory_order_relaxed);
  operation_counted_ = false;
  attached_to_.reset();
}

void ProxyStream::record(uint32_t error_code) {
  if (recorded_) return;
  recorded_ = true;
  if (health_check_) return;  // probes are not Spark traffic
  const auto session = attached_to_;
  observe_unrouted();
  int code = 0;
  if (final_status_ == "-") {
    // No grpc-status reached the client: it reset the stream (CANCELLED), or the
    // backend refused the stream and the client was told to retry (UNAVAILABLE).
    code = error_code == NGHTTP2_REFUSED_STREAM ? 14 : error_code != 0 ? 1 : 2;
  } else {
    auto [p, ec] = std::from_chars(final_status_.data(), final_status_.data() + final_status_.size(), code);
    if (ec != std::errc()) code = 2;
  }
  const auto now = std::chrono::steady_clock::now();
  const uint64_t bytes_in = req_offset_;
  const uint64_t bytes_out = resp_bytes_ - std::min<uint64_t>(resp_bytes_, resp_buf_.size());
  const auto rpc = observe::rpc_label(rpc_);
  const bool streaming = rpc_ && rpc_->server_streaming;
  const double first =
      streaming && first_response_ != std::chrono::steady_clock::time_point{} ? seconds_between(started_, first_response_)
                                                                               : -1;
  if (auto* m = cluster_metrics()) m->rpc_done(rpc, code, seconds_between(started_, now), first, bytes_in, bytes_out);
  if (session) session->stats.rpc_done(rpc, code, bytes_in, bytes_out);
  if (ctx_.access_log && ctx_.access_log->enabled()) {
    const spark::Envelope* env = scanner_ ? &scanner_->envelope() : nullptr;
    observe::RpcRecord r;
    r.request_id = request_id_;
    r.traceparent = traceparent_;
    const std::string peer = downstream_ ? downstream_->peer() : std::string();
    r.peer = peer;
    r.session = env ? std::string_view(env->session_id) : std::string_view();
    r.user = !principal_.user.empty() ? std::string_view(principal_.user)
                                      : env ? std::string_view(env->user_id) : std::string_view();
    r.rpc = observe::rpc_label_name(rpc);
    r.cluster = route_.cluster ? std::string_view(route_.cluster->name) : std::string_view();
    r.backend = backend_;
    r.operation_id = env && env->operation_id ? std::string_view(*env->operation_id) : std::string_view();
    r.code = code;
    r.duration_s = seconds_between(started_, now);
    r.bytes_in = bytes_in;
    r.bytes_out = bytes_out;
    ctx_.access_log->rpc(r);
  }
}

}  // namespace sparkgate::proxy
