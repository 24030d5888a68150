// RpcStream's observability: request correlation, the gateway's own health check,
// per-session stream tracking for the admin API, and the record of a finished RPC
// (metrics, session stats, access log): the calls the RPC makes into observe/.
#include "observe/access_log.h"
#include "observe/correlation.h"
#include "observe/metrics.h"
#include "proxy/rpc_stream.h"
#include "routing/router.h"
#include "trace/rpc_trace.h"
#include "trace/span_queue.h"

namespace sparkgate::proxy {

namespace {

double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

bool is_operation_rpc(const spark::RpcInfo* rpc) {
  return rpc && (rpc->rpc == spark::Rpc::kExecutePlan || rpc->rpc == spark::Rpc::kReattachExecute);
}

}  // namespace

void RpcStream::correlate(const http2::HeaderMap& headers) {
  if (const auto id = headers.find("x-request-id"); id && observe::usable_request_id(*id)) request_id_ = *id;
  else request_id_ = observe::new_request_id().view();
  const auto tp = headers.find("traceparent");
  const auto& tracing = state_.ctx.config->tracing;
  if (!tracing.enabled() || !state_.ctx.spans) {
    new_trace_ = !(tp && observe::valid_traceparent(*tp));
    if (new_trace_) traceparent_ = observe::new_traceparent().view();
    else traceparent_ = *tp;
    return;
  }
  const auto parent = tp ? trace::parse_traceparent(*tp) : std::nullopt;
  const trace::TraceId trace_id = parent ? parent->trace_id : trace::new_trace_id();
  new_trace_ = !parent;
  if (trace::sample(parent ? &*parent : nullptr, trace_id, tracing.sample_ratio)) {
    trace_ = std::make_unique<trace::RpcTrace>(parent ? &*parent : nullptr, trace_id);
    traceparent_ = trace::format_traceparent(trace_->client_context());
    if (const auto path = headers.find(":path")) path_ = path->substr(0, 256);
  } else if (parent) {
    traceparent_ = *tp;  // not traced here: the client's context goes on as it came
  } else {
    // A new trace that is not sampled: the backend learns that too (flags 00).
    traceparent_ = trace::format_traceparent({trace_id, trace::new_span_id(), 0});
  }
}

void RpcStream::on_unrouted() {
  // Only for a new session whose backend could not be reached, before it is placed again.
  if (trace_) trace_->client_replaced(state_.backend);
  observe_unrouted();
}

void RpcStream::on_waiting(std::string_view what) {
  // Waiting for the client's own request message is the client's time, and nearly every
  // RPC does it: no span for it.
  if (trace_ && !what.empty()) trace_->wait_started(what);
}

void RpcStream::on_wait_over() {
  if (trace_) trace_->wait_ended();
}

void RpcStream::finish_trace(int code) {
  const spark::Envelope* env = inspector_.envelope();
  trace::RpcOutcome o;
  o.method = state_.rpc ? std::string_view(state_.rpc->name) : std::string_view();
  o.path = path_;
  o.grpc_code = code;
  o.status_message = grpcwire::status_name(static_cast<grpcwire::StatusCode>(code));
  if (env) {
    o.session_id = env->session_id;
    if (env->operation_id) o.operation_id = *env->operation_id;
  }
  if (state_.principal.verified()) o.user = state_.principal.user;  // enduser.id: verified users only
  o.cluster = state_.route.cluster ? std::string_view(state_.route.cluster->name) : std::string_view();
  o.backend = state_.backend;
  o.request_id = request_id_;
  o.peer = down_.conn() ? std::string_view(down_.conn()->peer()) : std::string_view();
  const std::string backend_address = state_.route.backend ? state_.route.backend->address().to_string() : std::string();
  o.backend_address = backend_address;
  trace_->finish(o, *state_.ctx.spans);
  trace_.reset();
}

void RpcStream::forward_correlation() {
  auto& h = state_.upstream_headers;
  h.set("x-request-id", request_id_);
  // W3C Trace Context: a tracestate belongs to the traceparent it came with.
  if (new_trace_) h.remove("tracestate");
  h.set("traceparent", traceparent_);
}

void RpcStream::reply_health_check() {
  // grpc.health.v1.HealthCheckResponse{status: SERVING (1) | NOT_SERVING (2)}, whatever
  // service the request names: the gateway is one service. The request body is not
  // needed; it was returned to the window as it came.
  const auto& ctx = state_.ctx;
  const bool serving = !(ctx.draining && ctx.draining->load()) && ctx.router && ctx.router->backends().any_healthy();
  const uint8_t message[] = {0x08, static_cast<uint8_t>(serving ? 1 : 2)};
  upstream_->reply_message(message, sizeof message);
}

observe::ClusterMetrics* RpcStream::cluster_metrics() {
  auto* metrics = state_.ctx.metrics;
  if (!metrics) return nullptr;
  const auto& route = state_.route;
  if (route.backend) {
    // Cached on the backend (its cluster never changes): no lookup per RPC.
    auto* m = route.backend->metrics.load(std::memory_order_acquire);
    if (!m) {
      m = &metrics->cluster(route.backend->cluster());
      route.backend->metrics.store(m, std::memory_order_release);
    }
    return m;
  }
  // Answered before a backend was chosen: rare, and a local reply anyway.
  return &metrics->cluster(route.cluster ? route.cluster->name : std::string());
}

void RpcStream::observe_routed() {
  observe_unrouted();
  if (trace_) trace_->client_started();
  if (!active_in_ && (active_in_ = cluster_metrics())) active_in_->stream_opened();
  const auto& route = state_.route;
  if (!route.session) return;
  attached_to_ = route.session;
  if (auto* conn = down_.conn()) {
    attach_id_ = attached_to_->attach_stream({conn->executor(), std::weak_ptr<routing::SessionStream>(weak_from_this())});
  }
  if (is_operation_rpc(state_.rpc)) {
    attached_to_->stats.operations_in_flight.fetch_add(1, std::memory_order_relaxed);
    operation_counted_ = true;
  }
  if (route.new_session && !state_.principal.tenant.empty()) attached_to_->set_tenant(state_.principal.tenant);
}

void RpcStream::observe_unrouted() {
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

void RpcStream::record(uint32_t error_code) {
  if (recorded_) return;
  recorded_ = true;
  if (health_check_) return;  // probes are not Spark traffic
  const auto session = attached_to_;
  const bool traced = trace_ != nullptr;
  observe_unrouted();
  int code = 0;
  if (auto status = upstream_->status()) {
    code = static_cast<int>(*status);
  } else {
    // No grpc-status reached the client: it reset the stream (CANCELLED), or the
    // backend refused the stream and the client was told to retry (UNAVAILABLE).
    code = error_code == NGHTTP2_REFUSED_STREAM ? 14 : error_code != 0 ? 1 : 2;
  }
  if (traced) finish_trace(code);
  const auto now = std::chrono::steady_clock::now();
  const uint64_t bytes_in = inspector_.bytes();
  const uint64_t bytes_out = upstream_->bytes_out();
  const auto* rpc_info = state_.rpc;
  const auto rpc = observe::rpc_label(rpc_info);
  const bool streaming = rpc_info && rpc_info->server_streaming;
  const auto first_response = upstream_->first_response();
  const double first = streaming && first_response != std::chrono::steady_clock::time_point{}
                           ? seconds_between(started_at_, first_response)
                           : -1;
  if (auto* m = cluster_metrics()) m->rpc_done(rpc, code, seconds_between(started_at_, now), first, bytes_in, bytes_out);
  if (session) session->stats.rpc_done(rpc, code, bytes_in, bytes_out);
  auto* log = state_.ctx.access_log;
  if (log && log->enabled()) {
    const spark::Envelope* env = inspector_.envelope();
    const auto& principal = state_.principal;
    observe::RpcRecord r;
    r.request_id = request_id_;
    r.traceparent = traceparent_;
    r.peer = down_.conn() ? std::string_view(down_.conn()->peer()) : std::string_view();
    r.session = env ? std::string_view(env->session_id) : std::string_view();
    r.user = !principal.user.empty() ? std::string_view(principal.user)
                                     : env ? std::string_view(env->user_id) : std::string_view();
    r.rpc = observe::rpc_label_name(rpc);
    r.cluster = state_.route.cluster ? std::string_view(state_.route.cluster->name) : std::string_view();
    r.backend = state_.backend;
    r.operation_id = env && env->operation_id ? std::string_view(*env->operation_id) : std::string_view();
    r.code = code;
    r.duration_s = seconds_between(started_at_, now);
    r.bytes_in = bytes_in;
    r.bytes_out = bytes_out;
    log->rpc(r);
  }
}

}  // namespace sparkgate::proxy
