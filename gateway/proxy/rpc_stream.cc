#include "proxy/rpc_stream.h"

#include <spdlog/spdlog.h>

#include "proxy/request_check.h"
#include "routing/router.h"
#include "trace/rpc_trace.h"

namespace sparkgate::proxy {

RpcStream::RpcStream(http2::ServerConnection& downstream, int32_t stream_id, ProxyContext context)
    : down_(downstream, stream_id),
      state_(std::move(context)),
      inspector_(state_.ctx.config->limits.max_message_bytes),
      upstream_(std::make_unique<UpstreamRequest>(down_, static_cast<RelayEvents&>(*this),
                                                  state_.ctx.config->limits.max_message_bytes, "-")),
      pipeline_(state_, *this),
      learner_(state_, pipeline_.admit()),
      started_at_(std::chrono::steady_clock::now()) {
  state_.inspector = &inspector_;
  state_.upstream = upstream_.get();
  state_.peer = &downstream.peer();
  upstream_->set_tap(&learner_);
}

RpcStream::~RpcStream() = default;

// ---------------------------------------------------------------------------------------
// Downstream events

void RpcStream::on_request_headers(http2::HeaderMap headers, bool end_stream) {
  correlate(headers);
  auto kind = check_request(headers);
  switch (kind.kind) {
    case RequestKind::Kind::kReject:
      if (kind.http_status != 200)
        upstream_->reply_http(kind.http_status, kind.code, kind.message, headers.find(":authority"));
      else reply_local(kind.code, std::move(kind.message));
      return;
    case RequestKind::Kind::kHealthCheck:
      // Answered once the request has ended, as a gRPC server answers a unary call.
      health_check_ = true;
      trace_.reset();  // probes are not Spark traffic
      if (end_stream) reply_health_check();
      return;
    case RequestKind::Kind::kSparkRpc:
      break;
  }
  state_.rpc = kind.rpc;
  upstream_->set_rpc_name(state_.rpc->name);
  build_upstream_headers(headers, state_.upstream_headers);
  forward_correlation();
  state_.self = weak_from_this();
  started_ = true;
  state_.request_headers = &headers;
  pipeline_.start();
  state_.request_headers = nullptr;
  if (end_stream && !pipeline_.stopped()) reply_local(grpcwire::StatusCode::kInvalidArgument, "the request has no message");
}

void RpcStream::on_request_data(const uint8_t* data, size_t n) {
  if (!started_ || health_check_ || !upstream_->accepting_request()) {
    // Nobody will read these bytes (the RPC is answered, or the backend already ended
    // the stream, e.g. an early error on AddArtifacts): reopen the window at once.
    upstream_->drop_request(n);
    return;
  }
  LocalReply refused;
  if (!inspector_.inspect(state_, data, n, refused)) {
    upstream_->drop_request(n);
    reply(refused);
    return;
  }
  upstream_->receive_request(data, n);
  if (!pipeline_.session_admit().on_request_bytes()) {
    reply(state_.reply);
    return;
  }
  pipeline_.poll_envelope();
  upstream_->resume_upstream();
}

void RpcStream::on_request_end() {
  if (health_check_) {
    reply_health_check();
    return;
  }
  if (!started_ || upstream_->replied()) return;
  if (!inspector_.at_boundary()) {
    // Passing this on would let the backend drop the torn message silently and answer OK.
    reply_local(grpcwire::StatusCode::kInvalidArgument,
                "malformed gRPC framing: the request stream ended in the middle of a message");
    return;
  }
  upstream_->end_request();
  pipeline_.poll_envelope();
  upstream_->resume_upstream();
}

void RpcStream::on_stream_closed(uint32_t error_code) {
  record(error_code);
  closed_ = true;
  pipeline_.cancel();
  upstream_->downstream_closed();
  down_.closed();
  pipeline_.admit().release();
  if (started_) pipeline_.session_admit().release(upstream_->status());
}

void RpcStream::close_by_operator(const std::string& message) {
  if (closed_ || upstream_->replied()) return;
  reply_local(grpcwire::StatusCode::kNotFound, message);
}

// ---------------------------------------------------------------------------------------
// Replies and the relay's events

void RpcStream::reply(const LocalReply& r) {
  if (closed_ || upstream_->replied()) return;
  if (r.quota) {
    if (state_.ctx.metrics) state_.ctx.metrics->quota_rejection(*r.quota).Increment();
    spdlog::info("rpc={} user={}: {}", state_.rpc ? state_.rpc->name : "-", state_.principal.user, r.message);
  }
  if (spdlog::should_log(spdlog::level::debug)) {
    const auto* env = inspector_.envelope();
    spdlog::debug("rpc={} {} backend={}: gateway replies {} ({})", state_.rpc ? state_.rpc->name : "-",
                  env ? env->describe() : std::string("session=-"), state_.backend.empty() ? "-" : state_.backend,
                  grpcwire::status_name(r.code), r.message);
  }
  if (trace_) {
    std::string what = "sparkgate reply: ";
    what.append(grpcwire::status_name(r.code)).append(": ").append(r.message.substr(0, 300));
    trace_->event(std::move(what));
  }
  pipeline_.cancel();
  upstream_->reply(r.code, r.message);
}

void RpcStream::on_backend_answered() {
  if (state_.route.backend) state_.route.backend->report_success();
}

void RpcStream::on_backend_failed(const std::string& why) {
  if (state_.route.backend)
    state_.route.backend->report_failure(state_.route.cluster->health_check.passive_failures, why);
}

void RpcStream::on_response_too_large() { reply(too_large_reply("response", upstream_->response_framer(), state_)); }

}  // namespace sparkgate::proxy
