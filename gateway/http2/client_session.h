// The upstream side: an nghttp2 client session on one connection to one backend,
// carrying many streams (up to the backend's SETTINGS_MAX_CONCURRENT_STREAMS).
#pragma once

#include <functional>
#include <memory>
#include <unordered_map>

#include "http2/header_map.h"
#include "http2/session.h"

namespace sparkgate::http2 {

// One request stream to a backend. Calls arrive on the session's thread from inside
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
  // Request body pull, same contract as ServerStreamHandler::read_response_body.
  virtual ssize_t read_request_body(uint8_t* buf, size_t length, uint32_t* data_flags) = 0;
};

struct ClientSessionOptions {
  uint32_t stream_window_bytes = 1u << 20;
  uint32_t connection_window_bytes = 16u << 20;
};

class ClientSession final : public Session {
 public:
  ClientSession(boost::asio::any_io_executor executor, std::string backend, const ClientSessionOptions& options);

  // Connects to `endpoints` (already resolved) within `timeout`, then calls `done` with
  // an empty string on success or the reason it failed.
  void connect(const boost::asio::ip::tcp::resolver::results_type& endpoints, std::chrono::milliseconds timeout,
               std::function<void(const std::string& error)> done);

  // Opens a stream. The body, if any, is pulled from `handler`. Returns the stream id,
  // or a negative nghttp2 error. Safe from inside other sessions' callbacks.
  int32_t submit_request(const HeaderMap& headers, bool has_body, std::shared_ptr<ClientStreamHandler> handler);

  // Usable for a new stream: connected, not draining, below the peer's stream limit.
  bool has_capacity() const;
  bool is_connected() const { return connected_; }
  bool is_draining() const { return draining_ || is_closed(); }
  size_t active_streams() const { return streams_.size(); }
  const std::string& backend() const { return backend_; }

  // Called once when the connection has ended (after every stream was told), and when it
  // starts draining (GOAWAY received), so the owner can stop using it.
  std::function<void(ClientSession&)> on_unusable;

 private:
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame*, void*);
  static int on_header(nghttp2_session*, const nghttp2_frame*, const uint8_t*, size_t, const uint8_t*, size_t,
                       uint8_t, void*);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame*, void*);
  static int on_data_chunk_recv(nghttp2_session*, uint8_t, int32_t, const uint8_t*, size_t, void*);
  static int on_stream_close(nghttp2_session*, int32_t, uint32_t, void*);
  static ssize_t read_body(nghttp2_session*, int32_t, uint8_t*, size_t, uint32_t*, nghttp2_data_source*, void*);

  void on_connection_closed(const std::string& reason) override;
  void after_nghttp2_call() override { graveyard_.clear(); }

  struct StreamState {
    std::shared_ptr<ClientStreamHandler> handler;
    HeaderMap headers;
    bool got_response_headers = false;
  };
  StreamState* find(int32_t stream_id);

  std::string backend_;
  ClientSessionOptions options_;
  bool connected_ = false;
  bool draining_ = false;
  std::unordered_map<int32_t, std::unique_ptr<StreamState>> streams_;
  std::vector<std::shared_ptr<ClientStreamHandler>> graveyard_;
  std::unique_ptr<boost::asio::ip::tcp::socket> socket_;
  std::unique_ptr<boost::asio::steady_timer> connect_timer_;
};

}  // namespace sparkgate::http2
