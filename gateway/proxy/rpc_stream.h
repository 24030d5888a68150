// One RPC: the downstream stream's handler, which owns the RPC's state, its pipeline of
// steps (pipeline.h: who is asking, may they, where it goes) and its relay
// (UpstreamRequest: the bytes both ways). It makes no decision of its own: it passes
// downstream events to the request inspector, the pipeline and the relay, turns their
// stops into the gateway's reply, and records the finished RPC (rpc_record.cc).
//
// Owned (shared_ptr) by the downstream connection's stream table and, while an upstream
// stream is open, by the upstream connection through its UpstreamRequest. A reply or the
// client's going away cancels whatever the pipeline waits for.
//
// Threading: every call on the worker thread that owns the downstream connection.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "http2/server_connection.h"
#include "proxy/pipeline.h"
#include "proxy/request_inspector.h"
#include "proxy/response_learner.h"
#include "proxy/rpc_state.h"
#include "proxy/upstream_request.h"
#include "routing/session_registry.h"

namespace sparkgate::observe {
class ClusterMetrics;
}
namespace sparkgate::trace {
class RpcTrace;
}

namespace sparkgate::proxy {

class RpcStream final : public http2::ServerStreamHandler,
                        public routing::SessionStream,
                        public std::enable_shared_from_this<RpcStream>,
                        private PipelineOwner,
                        private RelayEvents {
 public:
  // `downstream` outlives this object's use of it: it calls on_stream_closed() first.
  RpcStream(http2::ServerConnection& downstream, int32_t stream_id, ProxyContext context);
  ~RpcStream() override;

  // ServerStreamHandler (downstream events)
  void on_request_headers(http2::HeaderMap headers, bool end_stream) override;
  void on_request_data(const uint8_t* data, size_t n) override;
  void on_request_end() override;
  void on_stream_closed(uint32_t error_code) override;
  ssize_t response_body_length(size_t max, uint32_t* data_flags) override {
    return upstream_->response_body_length(max, data_flags);
  }
  bool take_response_body(http2::WriteBuffer& out, size_t n) override { return upstream_->take_response_body(out, n); }

  // routing::SessionStream: DELETE /v1/sessions/{id} ends this RPC with NOT_FOUND and
  // `message`, resetting its upstream stream.
  void close_by_operator(const std::string& message) override;

 private:
  // The downstream stream, for the relay.
  class ServerPeer final : public DownstreamPeer {
   public:
    ServerPeer(http2::ServerConnection& conn, int32_t id) : conn_(&conn), id_(id) {}
    void consume(size_t n) override {
      if (conn_) conn_->consume(id_, n);
    }
    void resume() override {
      if (conn_) conn_->resume_data(id_);
    }
    void reset(uint32_t code) override {
      if (conn_) conn_->reset_stream(id_, code);
    }
    void send_headers(const http2::HeaderMap& h, bool has_body) override {
      if (conn_) conn_->submit_response(id_, h, has_body);
    }
    void send_trailers(const http2::HeaderMap& t) override {
      if (conn_) conn_->submit_trailers(id_, t);
    }
    http2::ServerConnection* conn() const { return conn_; }
    void closed() { conn_ = nullptr; }

   private:
    http2::ServerConnection* conn_;  // null once the downstream stream is closed
    int32_t id_;
  };

  // Ends the RPC with the gateway's own status (counted as a quota refusal if it is one).
  void reply(const LocalReply& r);
  void reply_local(grpcwire::StatusCode code, std::string message) { reply({code, std::move(message), {}}); }

  // PipelineOwner
  void on_stop() override { reply(state_.reply); }
  void on_routed() override { observe_routed(); }
  void on_unrouted() override;
  void on_waiting(std::string_view what) override;
  void on_wait_over() override;
  // RelayEvents
  void on_backend_answered() override;
  void on_backend_failed(const std::string& why) override;
  void on_response_too_large() override;
  void on_upstream_failed(LocalReply reply) override { this->reply(reply); }

  // Observability (rpc_record.cc). grpc.health.v1.Health/Check, answered by the gateway
  // once the request has ended.
  void reply_health_check();
  // x-request-id and traceparent: the client's when usable, else new ones; then they
  // replace whatever the client sent in the upstream headers. With tracing on, decides
  // whether this RPC is traced (trace_), and the backend gets the CLIENT span's
  // traceparent.
  void correlate(const http2::HeaderMap& headers);
  // The RPC ended: its spans go to the export queue (traced RPCs only).
  void finish_trace(int code);
  void forward_correlation();
  // The stream is on its session / forwarding to its cluster, or no longer.
  void observe_routed();
  void observe_unrouted();
  // The RPC ended: metrics, per-session stats, one access-log line. Once.
  void record(uint32_t error_code);
  observe::ClusterMetrics* cluster_metrics();

  // Destroyed in reverse: the pipeline's steps and the relay refer to what precedes them.
  ServerPeer down_;
  RpcState state_;
  RequestInspector inspector_;
  std::unique_ptr<UpstreamRequest> upstream_;
  Pipeline pipeline_;
  ResponseLearner learner_;

  bool started_ = false;  // the request headers were accepted
  bool closed_ = false;   // the downstream stream is gone
  bool health_check_ = false;

  // Observability.
  std::chrono::steady_clock::time_point started_at_;
  http2::PooledString request_id_;
  http2::PooledString traceparent_;
  bool new_trace_ = false;  // traceparent_ was made here (the client's tracestate is dropped)
  std::unique_ptr<trace::RpcTrace> trace_;  // null unless tracing is on and this RPC is sampled
  std::string path_;                        // :path, kept only while traced
  observe::ClusterMetrics* active_in_ = nullptr;  // counted in its sparkgate_active_streams
  routing::SessionPtr attached_to_;               // the session this stream is attached to
  uint64_t attach_id_ = 0;
  bool operation_counted_ = false;
  bool recorded_ = false;
};

}  // namespace sparkgate::proxy
