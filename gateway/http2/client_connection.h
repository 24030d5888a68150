// The upstream side: an nghttp2 client session on one connection to one backend,
// carrying many streams (up to the backend's SETTINGS_MAX_CONCURRENT_STREAMS).
#pragma once

#include <boost/asio/ssl.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "http2/connection.h"
#include "http2/header_map.h"
#include "http2/session_memory.h"

namespace sparkgate::http2 {

// One request stream to a backend. Calls arrive on the connection's thread from inside
// nghttp2 callbacks; the same re-entrancy rule as ServerStreamHandler applies.
class ClientStreamHandler {
 public:
  virtual ~ClientStreamHandler() = default;
  // The response header block; `end_stream` for a trailers-only response.
  virtual void on_response_headers(HeaderMap headers, bool end_stream) = 0;
  // A chunk of response body, valid only during the call.
  virtual void on_response_data(const uint8_t* data, size_t n) = 0;
  // The trailer block; the response is complete.
  virtual void on_response_trailers(HeaderMap trailers) = 0;
  // The stream is gone. `error_code` 0 after a normal end; else the RST_STREAM code.
  // `connection_error` is non-empty when the whole connection failed (then error_code
  // is NGHTTP2_CANCEL). No further calls follow.
  virtual void on_upstream_closed(uint32_t error_code, const std::string& connection_error) = 0;
  // Request body pull, same contract as ServerStreamHandler::response_body_length and
  // take_response_body.
  virtual ssize_t request_body_length(size_t max, uint32_t* data_flags) = 0;
  virtual bool take_request_body(WriteBuffer& out, size_t n) = 0;
  // The stream moved no bytes either way for `idle` (at least its idle timeout). Return
  // true to have it cancelled (RST_STREAM CANCEL follows; on_upstream_closed comes
  // later), false if the silence is not the backend's doing (its clock starts again).
  // Called from a timer, not from inside nghttp2.
  virtual bool on_upstream_idle(std::chrono::milliseconds /*idle*/) { return true; }
};

// TLS towards the backend. The context is shared read-only between connections (and
// threads); `server_name` is sent as SNI (unless it is an IP address, which SNI cannot
// carry) and the certificate must match it (DNS name, or IP address SAN).
struct ClientTls {
  std::shared_ptr<boost::asio::ssl::context> context;
  std::string server_name;
};

struct ClientConnectionOptions {
  uint32_t stream_window_bytes = 1u << 20;
  uint32_t connection_window_bytes = 16u << 20;
};

class ClientConnection final : public Connection {
 public:
  ClientConnection(boost::asio::any_io_executor executor, std::string backend, const ClientConnectionOptions& options);

  // Connects to `endpoints` (already resolved) and, with `tls`, runs the TLS handshake
  // (SNI, certificate verified against tls->server_name, ALPN "h2" required), all within
  // `timeout`. Then calls `done` once, from an asio handler, with an empty string on
  // success or the reason it failed ("TLS handshake with 127.0.0.1:5000 failed:
  // certificate verify failed (...)"). Call once, on the connection's thread.
  void connect(const boost::asio::ip::tcp::resolver::results_type& endpoints, std::chrono::milliseconds timeout,
               const std::optional<ClientTls>& tls, std::function<void(const std::string& error)> done);

  // Opens a stream. The body, if any, is pulled from `handler`. With `idle_timeout` > 0
  // the handler hears on_upstream_idle once the stream has been silent that long.
  // Returns the stream id, or a negative nghttp2 error. Safe from inside other connections'
  // callbacks.
  int32_t submit_request(const HeaderMap& headers, bool has_body, std::shared_ptr<ClientStreamHandler> handler,
                         std::chrono::milliseconds idle_timeout = {});

  // Usable for a new stream: connected, not draining, below the peer's stream limit.
  bool has_capacity() const;
  bool is_connected() const { return connected_; }
  // True when the connection runs over TLS (":scheme" https).
  bool is_tls() const { return tls_; }
  bool is_draining() const { return draining_ || is_closed(); }
  size_t active_streams() const { return streams_.size(); }
  const std::string& backend() const { return backend_; }

  // Called once when the connection has ended (after every stream was told), and when it
  // starts draining (GOAWAY received), so the owner can stop using it.
  std::function<void(ClientConnection&)> on_unusable;

 private:
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame*, void*);
  static int on_header(nghttp2_session*, const nghttp2_frame*, const uint8_t*, size_t, const uint8_t*, size_t,
                       uint8_t, void*);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame*, void*);
  static int on_data_chunk_recv(nghttp2_session*, uint8_t, int32_t, const uint8_t*, size_t, void*);
  static int on_stream_close(nghttp2_session*, int32_t, uint32_t, void*);
  static ssize_t read_body(nghttp2_session*, int32_t, uint8_t*, size_t, uint32_t*, nghttp2_data_source*, void*);
  static int send_data(nghttp2_session*, nghttp2_frame*, const uint8_t*, size_t, nghttp2_data_source*, void*);

  void on_connection_closed(const std::string& reason) override;
  void after_nghttp2_call() override { graveyard_.clear(); }
  bool has_no_streams() const override { return streams_.empty(); }
  bool take_body(int32_t stream_id, WriteBuffer& out, size_t n) override;

  struct StreamState {
    // One per stream: from the per-thread lists (session_memory.h), not malloc.
    static void* operator new(size_t n) { return pooled_new(n); }
    static void operator delete(void* p) noexcept { pooled_free(p); }
    std::shared_ptr<ClientStreamHandler> handler;
    HeaderMap headers;
    bool got_response_headers = false;
    bool peer_reset = false;  // the backend sent RST_STREAM
    // Silence accounting, in idle timer ticks (no clock read per frame): idle_for grows
    // by a tick each time the timer fires and drops to 0 on any byte either way.
    std::chrono::milliseconds idle_timeout{0};
    std::chrono::milliseconds idle_for{0};
    bool idle_reported = false;
  };
  StreamState* find(int32_t stream_id);
  // The connect sequence: TCP done → optional TLS handshake → HTTP/2 start.
  void start_tls(const ClientTls& tls, const std::string& peer);
  void start_http2();
  void finish_connect(const std::string& error);
  void arm_idle_timer();
  void on_idle_tick();

  std::string backend_;
  ClientConnectionOptions options_;
  bool connected_ = false;
  bool draining_ = false;
  bool goaway_received_ = false;
  bool tls_ = false;
  // Its nodes come from the per-thread lists too: a stream costs no malloc.
  using StreamTable = std::unordered_map<int32_t, std::unique_ptr<StreamState>, std::hash<int32_t>, std::equal_to<>,
                                         PooledAllocator<std::pair<const int32_t, std::unique_ptr<StreamState>>>>;
  StreamTable streams_;
  std::vector<std::shared_ptr<ClientStreamHandler>> graveyard_;
  // While connecting: the TCP socket, then the TLS stream during the handshake.
  std::unique_ptr<boost::asio::ip::tcp::socket> socket_;
  std::unique_ptr<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>> tls_stream_;
  std::unique_ptr<boost::asio::steady_timer> connect_timer_;
  std::function<void(const std::string&)> connect_done_;  // set until connect finishes
  std::chrono::milliseconds connect_timeout_{0};
  std::unique_ptr<boost::asio::steady_timer> idle_timer_;
  bool idle_timer_armed_ = false;
  std::chrono::milliseconds idle_tick_{0};
};

}  // namespace sparkgate::http2
