// The relay of one RPC between its downstream stream and its upstream stream, with
// end-to-end flow control (DESIGN.md §1): bytes received on one side are consumed (their
// window reopened) only once they have been written to the other side, so a slow reader
// slows the writer and every queue stays within one window.
//
// One Direction per way holds the bounded queue, the count of received bytes not yet
// consumed, and the end state. Invariant, asserted after every change in builds with
// assertions (the default debugoptimized build, CI, asan) and checked by the unit tests:
//   queue bytes == unconsumed + added   (added: bytes the gateway wrote itself)
// and, once the RPC is over, every byte received in a direction was consumed exactly
// once (unconsumed == 0, consumed == received).
//
// Owned by the RpcStream (unique_ptr). The upstream connection refers to it through a
// shared_ptr that shares the RpcStream's ownership (aliasing), so neither outlives the
// other. Threading: the RPC's worker thread; every event arrives from inside an nghttp2
// callback, and every call it makes on a connection only schedules work.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "grpcwire/framer.h"
#include "grpcwire/status.h"
#include "http2/client_connection.h"
#include "http2/header_map.h"
#include "http2/session_memory.h"
#include "proxy/byte_queue.h"
#include "proxy/step.h"

namespace sparkgate::proxy {

// One side's HTTP/2 stream, as the relay uses it. Every call only schedules work.
class StreamPeer {
 public:
  // Returns n received bytes to the peer's flow-control window.
  virtual void consume(size_t n) = 0;
  // Bytes (or the end) are queued for the peer to pull.
  virtual void resume() = 0;
  // RST_STREAM with `code`.
  virtual void reset(uint32_t code) = 0;

 protected:
  ~StreamPeer() = default;
};

// The client's side, which also gets the response headers and trailers.
class DownstreamPeer : public StreamPeer {
 public:
  virtual void send_headers(const http2::HeaderMap& headers, bool has_body) = 0;
  virtual void send_trailers(const http2::HeaderMap& trailers) = 0;

 protected:
  ~DownstreamPeer() = default;
};

// What the relay reports to its RPC.
class RelayEvents {
 public:
  virtual void on_backend_answered() = 0;                   // response headers came
  virtual void on_backend_failed(const std::string& why) = 0;  // a passive health failure
  virtual void on_response_too_large() = 0;                 // response_framer() has the figures
  virtual void on_upstream_failed(LocalReply reply) = 0;    // the upstream stream broke

 protected:
  ~RelayEvents() = default;
};

// Looks at the response as it passes (the first message's server_side_session_id).
class ResponseTap {
 public:
  // The first response message's prefix; its payload starts at stream offset `start`.
  virtual void first_message(const grpcwire::MessageHeader& header, uint64_t start) = 0;
  // Each response chunk, which starts at stream offset `start`.
  virtual void chunk(const uint8_t* data, size_t n, uint64_t start) = 0;

 protected:
  ~ResponseTap() = default;
};

class UpstreamRequest final : public http2::ClientStreamHandler {
 public:
  // One per RPC: from the per-thread lists (http2/session_memory.h), not malloc.
  static void* operator new(size_t n) { return http2::pooled_new(n); }
  static void operator delete(void* p) noexcept { http2::pooled_free(p); }

  struct Direction {
    ByteQueue queue;          // received (or written by the gateway), not yet forwarded
    uint64_t received = 0;    // bytes the sending peer sent
    uint64_t consumed = 0;    // of those, returned to its window
    uint64_t unconsumed = 0;  // received - consumed
    size_t added = 0;         // queued bytes the gateway wrote itself (never received)
    bool ended = false;       // the sender finished (request END_STREAM; response trailers)
  };

  // `down` and `events` outlive this object. `rpc_name` is static (spark::RpcInfo).
  UpstreamRequest(DownstreamPeer& down, RelayEvents& events, uint64_t max_message_bytes, std::string_view rpc_name);
  ~UpstreamRequest() override;

  // --- Before the upstream stream exists.
  void set_max_response_bytes(uint64_t limit) { resp_framer_.set_max_message_bytes(limit); }
  void set_tap(ResponseTap* tap) { tap_ = tap; }
  void set_rpc_name(std::string_view name) { rpc_name_ = name; }
  // Opens the upstream stream on `conn` for backend `backend` (its name, for messages;
  // the string outlives this object); `owner` keeps this object alive while the
  // connection holds the stream. Returns the stream id or a negative nghttp2 error (then
  // nothing changed).
  int32_t open(http2::ClientConnection& conn, const http2::HeaderMap& headers, std::chrono::milliseconds idle_timeout,
               const std::shared_ptr<void>& owner, std::string_view backend);
  // For tests: relays to `up` as if open() had succeeded.
  void attach(StreamPeer& up, std::string_view backend);

  // --- Request direction (downstream events).
  // True while request bytes have somewhere to go (not answered, upstream not gone).
  bool accepting_request() const { return !replied_ && !(attached_ && !upstream_open_); }
  void receive_request(const uint8_t* data, size_t n);
  // Bytes nobody will read (the RPC is answered): consumed at once.
  void drop_request(size_t n);
  void end_request() { req_.ended = true; }
  // Tells the upstream stream that request bytes (or the end) wait.
  void resume_upstream();
  bool request_ended() const { return req_.ended; }
  size_t request_queued() const { return req_.queue.size(); }
  // The user_context rewrite: takes every queued request byte out, then puts the
  // rewritten head back; `delta` = new size - old size (bytes removed are consumed now,
  // bytes added are never consumed).
  std::string take_request_head();
  void put_request_head(const std::string& head, int64_t delta);

  // --- Local replies. The first reply wins; later ones do nothing.
  // Ends the RPC with the gateway's status: trailers-only if no response headers went
  // out, else trailers after what was sent (a torn message is dropped). Cancels the
  // upstream stream.
  void reply(grpcwire::StatusCode code, const std::string& message);
  // A request that is not gRPC at all: HTTP `http_status` with a text/plain body of
  // `message` and how to connect (sc://authority, or HOST:PORT when `authority` is absent or
  // not a plain host:port); `code` is what the access log and metrics record.
  void reply_http(int http_status, grpcwire::StatusCode code, const std::string& message,
                  std::optional<std::string_view> authority);
  // A reply of one message (`payload`, unframed) with status OK.
  void reply_message(const uint8_t* payload, size_t n);
  bool replied() const { return replied_; }

  // The downstream stream is gone: what is queued either way is consumed, and the
  // upstream stream is cancelled if it still runs.
  void downstream_closed();

  // --- What the RPC reports.
  std::optional<grpcwire::StatusCode> status() const { return status_; }  // the client's grpc-status
  uint64_t bytes_out() const { return resp_bytes_ - std::min<uint64_t>(resp_bytes_, resp_.queue.size()); }
  std::chrono::steady_clock::time_point first_response() const { return first_response_; }
  const grpcwire::Framer& response_framer() const { return resp_framer_; }
  const Direction& request() const { return req_; }
  const Direction& response() const { return resp_; }
  // Every byte received either way was consumed exactly once.
  bool all_consumed() const;

  // --- Downstream pulls the response body (ServerStreamHandler contract).
  ssize_t response_body_length(size_t max, uint32_t* data_flags);
  bool take_response_body(http2::WriteBuffer& out, size_t n);

  // --- http2::ClientStreamHandler (upstream events).
  void on_response_headers(http2::HeaderMap headers, bool end_stream) override;
  void on_response_data(const uint8_t* data, size_t n) override;
  void on_response_trailers(http2::HeaderMap trailers) override;
  void on_upstream_closed(uint32_t error_code, const std::string& connection_error) override;
  ssize_t request_body_length(size_t max, uint32_t* data_flags) override;
  bool take_request_body(http2::WriteBuffer& out, size_t n) override;
  // upstream.idle_timeout: ends the RPC with UNAVAILABLE unless the silence is the
  // client's (response bytes wait for it to read, or its request is still coming).
  bool on_upstream_idle(std::chrono::milliseconds idle) override;

 private:
  // The upstream stream on a real connection (the connection may die on its own).
  class ConnectionPeer final : public StreamPeer {
   public:
    void consume(size_t n) override;
    void resume() override;
    void reset(uint32_t code) override;
    std::weak_ptr<http2::Connection> conn;
    int32_t id = -1;
  };

  void receive(Direction& d, const uint8_t* data, size_t n);
  // n bytes left d's queue towards the other side: consumes those that were received.
  void forwarded(Direction& d, size_t n, StreamPeer* from);
  // Consumes n received bytes of d on `from` (exactly once).
  void consume(Direction& d, size_t n, StreamPeer* from);
  // Drops what d's queue holds, consuming it.
  void discard(Direction& d, StreamPeer* from);
  void check(const Direction& d) const;
  void cancel_upstream();
  // Where consumed bytes of each direction go: the client, or the upstream stream
  // (null before it exists and once the client is gone).
  StreamPeer* down() { return down_open_ ? &down_ : nullptr; }
  StreamPeer* up() { return up_; }
  bool forwarding() const { return attached_ && !replied_; }

  DownstreamPeer& down_;
  RelayEvents& events_;
  std::string_view rpc_name_;
  std::string_view backend_;  // RpcState::backend
  ConnectionPeer conn_peer_;
  StreamPeer* up_ = nullptr;
  ResponseTap* tap_ = nullptr;
  bool down_open_ = true;
  bool attached_ = false;       // an upstream stream was opened
  bool upstream_open_ = false;  // ... and has not closed
  bool upstream_done_ = false;  // the response is complete or the stream closed
  bool replied_ = false;        // the RPC was answered locally (or refused downstream)

  Direction req_;
  Direction resp_;
  grpcwire::Framer resp_framer_;
  uint64_t resp_offset_ = 0;
  bool resp_headers_sent_ = false;
  std::optional<http2::HeaderMap> resp_trailers_;
  std::optional<grpcwire::StatusCode> status_;
  uint64_t resp_bytes_ = 0;  // response body bytes queued for the client (minus those dropped)
  std::chrono::steady_clock::time_point first_response_{};  // zero until response bytes came
};

}  // namespace sparkgate::proxy
