// The per-RPC pipeline: ties one downstream stream to one upstream stream.
//
//   headers → inspect the first message → route → open the upstream stream →
//   relay both ways with end-to-end flow control → close.
//
// This is the only place that knows the order of those steps. A ProxyStream is owned
// (shared_ptr) by the downstream session's stream table and, once connected, by the
// upstream session's; each side tells it when its half is gone.
//
// Threading: every call on the worker thread that owns the downstream connection.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "config/config.h"
#include "grpcwire/framer.h"
#include "grpcwire/status.h"
#include "http2/client_connection.h"
#include "http2/server_connection.h"
#include "observe/access_log.h"
#include "observe/metrics.h"
#include "policy/peer_certificate.h"
#include "policy/quota.h"
#include "proxy/byte_queue.h"
#include "routing/redis_store.h"
#include "routing/router.h"
#include "spark/inspector.h"
#include "spark/response_scanner.h"
#include "spark/rpc.h"

namespace sparkgate::upstream {
class PoolSet;
}
namespace sparkgate::policy {
class RedisQuotas;
struct QuotaDecision;
}

namespace sparkgate::proxy {

// Served by the gateway itself on the main listener (Kubernetes gRPC probes).
inline constexpr std::string_view kHealthCheckPath = "/grpc.health.v1.Health/Check";

struct ProxyContext {
  std::shared_ptr<const config::Config> config;  // the snapshot this stream started with
  routing::Router* router = nullptr;             // process-wide; outlives every stream
  upstream::PoolSet* pools = nullptr;            // the worker's; outlives its streams
  routing::RedisAffinityStore* store = nullptr;  // the worker's, with sessions.store: redis
  observe::Metrics* metrics = nullptr;           // process-wide
  policy::LocalQuotas* quotas = nullptr;         // process-wide (quotas.store: memory)
  policy::RedisQuotas* redis_quotas = nullptr;   // the worker's, with quotas.store: redis
  observe::AccessLog* access_log = nullptr;      // process-wide; null: no access log
  // Process-wide: set once the gateway drains (grpc.health.v1.Health/Check answers
  // NOT_SERVING then).
  const std::atomic<bool>* draining = nullptr;
  // The connection's verified client certificate (mTLS), or null.
  std::shared_ptr<const policy::PeerCertificate> peer_cert;
};

class ProxyStream final : public http2::ServerStreamHandler,
                          public http2::ClientStreamHandler,
                          public routing::SessionStream,
                          public std::enable_shared_from_this<ProxyStream> {
 public:
  // `downstream` outlives this object's use of it: it calls on_stream_closed() first.
  ProxyStream(http2::ServerConnection& downstream, int32_t stream_id, ProxyContext context);

  // ServerStreamHandler (downstream events)
  void on_request_headers(http2::HeaderMap headers, bool end_stream) override;
  void on_request_data(const uint8_t* data, size_t n) override;
  void on_request_end() override;
  void on_stream_closed(uint32_t error_code) override;
  ~ProxyStream() override;
  ssize_t response_body_length(size_t max, uint32_t* data_flags) override;
  bool take_response_body(uint8_t* out, size_t n) override;

  // ClientStreamHandler (upstream events)
  void on_response_headers(http2::HeaderMap headers, bool end_stream) override;
  void on_response_data(const uint8_t* data, size_t n) override;
  void on_response_trailers(http2::HeaderMap trailers) override;
  void on_upstream_closed(uint32_t error_code, const std::string& connection_error) override;
  ssize_t request_body_length(size_t max, uint32_t* data_flags) override;
  bool take_request_body(uint8_t* out, size_t n) override;
  // upstream.idle_timeout: ends the RPC with UNAVAILABLE unless the silence is the
  // client's (response bytes are waiting for it to read).
  bool on_upstream_idle(std::chrono::milliseconds idle) override;

  // routing::SessionStream: DELETE /v1/sessions/{id} ends this RPC with NOT_FOUND and
  // `message`, resetting its upstream stream.
  void close_by_operator(const std::string& message) override;

 private:
  enum class Phase { kHeaders, kInspecting, kConnecting, kForwarding, kLocalReply, kDone };

  void try_route();
  // Policy, in order: identity (enforce or rewrite user_context), then quota admission
  // (rate, concurrent operations), then routing. Quota checks against Redis are
  // asynchronous; each step continues with the next.
  bool apply_identity();
  void admit_rate();
  void admit_operation();
  void admit_clone();
  void on_quota_decision(const policy::QuotaDecision& d, observe::Metrics::Quota quota, const std::string& what);
  void route_request();
  // The session quota of a new session held in Redis (quotas.store: redis).
  void admit_new_session();
  void reply_quota(observe::Metrics::Quota quota, const std::string& message);
  void reply_too_large(const char* direction, const grpcwire::Framer& framer);
  void reply_route_error(const grpcwire::Status& status);
  // False (and the RPC answered) when a Redis quota check failed and
  // quotas.on_store_failure is deny.
  bool quota_store_ok(const policy::QuotaDecision& d);
  // Adds the AddArtifacts bytes received since the last call to the session's total;
  // false (and the RPC answered) past the max_artifact_bytes quota.
  bool count_artifact_bytes();
  std::chrono::milliseconds session_quota_ttl() const;
  void release_operation();
  // Request bytes held in req_buf_ that leave it (forwarded or dropped): returns them to
  // the client's window, minus what the gateway itself added by rewriting user_context.
  void consume_request_bytes(size_t n);
  routing::RouteRequest request() const;
  void on_store_lookup(std::optional<std::string> backend, const std::string& error);
  void on_store_claim(const std::string& winner, const std::string& error);
  // The backend is decided: count the RPC on its session, then connect.
  void route_ready();
  // The backend of a session this call just created cannot be reached: place the session
  // on another backend of the cluster. False if that is not possible.
  bool replace_new_session(const std::string& error);
  void connect_upstream();
  // Credentials: the cluster's own token replaces the client's.
  void apply_backend_credentials();
  // Ends the RPC with a status of the gateway's own: trailers-only if no response
  // headers went out yet, else trailers after what was sent. Cancels the upstream stream.
  void reply_local(grpcwire::StatusCode code, const std::string& message);
  // Answers a request that is not gRPC at all (wrong method or content type): HTTP
  // `status` with a text/plain body of `message` and how to connect (sc://authority);
  // `code` is what the access log and metrics record. `authority` may be null.
  void reply_http(int status, grpcwire::StatusCode code, const std::string& message, const std::string* authority);
  void cancel_upstream();
  void scan_response(const uint8_t* data, size_t n, uint64_t chunk_start);
  void consume_downstream(size_t n);
  void consume_upstream(size_t n);
  std::string backend_label() const;

  // Observability (observe/). grpc.health.v1.Health/Check, answered by the gateway once
  // the request has ended.
  void reply_health_check();
  // x-request-id and traceparent: the client's when usable, else new ones; then they
  // replace whatever the client sent in the upstream headers.
  void correlate(const http2::HeaderMap& headers);
  void forward_correlation();
  // The stream is on `route_.session` / forwarding to its cluster (route_ready), or no
  // longer (a new session moved to another backend, or the stream ended).
  void observe_routed();
  void observe_unrouted();
  // The RPC ended: metrics, per-session stats, one access-log line. Once.
  void record(uint32_t error_code);
  observe::ClusterMetrics* cluster_metrics();

  http2::ServerConnection* downstream_;  // null once the downstream stream is closed
  int32_t down_id_;
  std::weak_ptr<http2::Connection> upstream_;  // the connection; may die on its own
  int32_t up_id_ = -1;
  ProxyContext ctx_;
  Phase phase_ = Phase::kHeaders;
  const spark::RpcInfo* rpc_ = nullptr;
  http2::HeaderMap upstream_headers_;
  std::string backend_;
  base::Principal principal_;
  policy::EffectiveQuota quota_;
  routing::RouteDecision route_;
  bool replaced_ = false;
  bool session_quota_checked_ = false;
  // A concurrent-operation slot is held (ExecutePlan, ReattachExecute) ...
  bool op_held_ = false;
  std::string op_lease_;  // ... and its Redis lease, with quotas.store: redis
  // Bytes the user_context rewrite added to req_buf_: forwarded, but never received from
  // the client, so not returned to its window.
  size_t added_request_bytes_ = 0;
  uint64_t artifact_bytes_counted_ = 0;
  // With quotas in Redis: the placeholder that holds a session slot for a CloneSession
  // until its response names the clone.
  std::string clone_reservation_;


  // Request direction.
  ByteQueue req_buf_;
  grpcwire::Framer req_framer_;
  std::optional<spark::EnvelopeScanner> scanner_;
  uint64_t req_offset_ = 0;          // request body bytes seen so far
  uint64_t first_payload_start_ = 0;  // stream offset of the first message's payload
  bool req_end_ = false;
  bool upstream_open_ = false;   // upstream stream exists and has not closed
  bool upstream_done_ = false;   // upstream response complete or stream closed

  // Response direction.
  ByteQueue resp_buf_;
  grpcwire::Framer resp_framer_;
  bool resp_headers_sent_ = false;
  bool resp_end_ = false;
  std::optional<http2::HeaderMap> resp_trailers_;
  // The first response message is scanned for the backend's server_side_session_id.
  std::optional<spark::ResponseScanner> resp_scanner_;
  uint64_t resp_offset_ = 0;
  uint64_t first_resp_payload_start_ = 0;
  uint64_t resp_scanned_bytes_ = 0;
  bool resp_scanned_ = false;
  std::string final_status_ = "-";

  // Observability.
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point first_response_{};  // zero until response bytes came
  std::string request_id_;
  std::string traceparent_;
  bool new_trace_ = false;  // traceparent_ was made here (the client's tracestate is dropped)
  uint64_t resp_bytes_ = 0;  // response body bytes queued for the client (minus those dropped)
  observe::ClusterMetrics* active_in_ = nullptr;  // counted in its sparkgate_active_streams
  routing::SessionPtr attached_to_;               // the session this stream is attached to
  uint64_t attach_id_ = 0;
  bool operation_counted_ = false;
  bool health_check_ = false;
  bool recorded_ = false;
};

}  // namespace sparkgate::proxy
