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
#include "grpc/framer.h"
#include "grpc/status.h"
#include "http2/client_session.h"
#include "http2/server_session.h"
#include "proxy/byte_queue.h"
#include "routing/redis_store.h"
#include "routing/router.h"
#include "spark/response_scanner.h"
#include "spark/inspector.h"
#include "spark/rpc.h"

namespace sparkgate::upstream {
class PoolSet;
}

namespace sparkgate::proxy {

struct ProxyContext {
  std::shared_ptr<const config::Config> config;  // the snapshot this stream started with
  routing::Router* router = nullptr;             // process-wide; outlives every stream
  upstream::PoolSet* pools = nullptr;            // the worker's; outlives its streams
  routing::RedisAffinityStore* store = nullptr;  // the worker's, with sessions.store: redis
};

class ProxyStream final : public http2::ServerStreamHandler,
                          public http2::ClientStreamHandler,
                          public std::enable_shared_from_this<ProxyStream> {
 public:
  // `downstream` outlives this object's use of it: it calls on_stream_closed() first.
  ProxyStream(http2::ServerSession& downstream, int32_t stream_id, ProxyContext context);

  // ServerStreamHandler (downstream events)
  void on_request_headers(http2::HeaderMap headers, bool end_stream) override;
  void on_request_data(const uint8_t* data, size_t n) override;
  void on_request_end() override;
  void on_stream_closed(uint32_t error_code) override;
  ssize_t read_response_body(uint8_t* buf, size_t length, uint32_t* data_flags) override;

  // ClientStreamHandler (upstream events)
  void on_response_headers(http2::HeaderMap headers, bool end_stream) override;
  void on_response_data(const uint8_t* data, size_t n) override;
  void on_response_trailers(http2::HeaderMap trailers) override;
  void on_upstream_closed(uint32_t error_code, const std::string& connection_error) override;
  ssize_t read_request_body(uint8_t* buf, size_t length, uint32_t* data_flags) override;

 private:
  enum class Phase { kHeaders, kInspecting, kConnecting, kForwarding, kLocalReply, kDone };

  void try_route();
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
  void reply_local(grpc::StatusCode code, const std::string& message);
  // Answers a request that is not gRPC at all (wrong method or content type).
  void reply_http(int status, grpc::StatusCode code, const std::string& message);
  void cancel_upstream();
  void scan_response(const uint8_t* data, size_t n, uint64_t chunk_start);
  void consume_downstream(size_t n);
  void consume_upstream(size_t n);
  std::string backend_label() const;

  http2::ServerSession* downstream_;  // null once the downstream stream is closed
  int32_t down_id_;
  std::weak_ptr<http2::Session> upstream_;  // the connection; may die on its own
  int32_t up_id_ = -1;
  ProxyContext ctx_;
  Phase phase_ = Phase::kHeaders;
  const spark::RpcInfo* rpc_ = nullptr;
  http2::HeaderMap upstream_headers_;
  std::string backend_;
  routing::Principal principal_;
  routing::RouteDecision route_;
  bool replaced_ = false;


  // Request direction.
  ByteQueue req_buf_;
  grpc::Framer req_framer_;
  std::optional<spark::EnvelopeScanner> scanner_;
  uint64_t req_offset_ = 0;          // request body bytes seen so far
  uint64_t first_payload_start_ = 0;  // stream offset of the first message's payload
  bool req_end_ = false;
  bool upstream_open_ = false;   // upstream stream exists and has not closed
  bool upstream_done_ = false;   // upstream response complete or stream closed

  // Response direction.
  ByteQueue resp_buf_;
  grpc::Framer resp_framer_;
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
};

}  // namespace sparkgate::proxy
