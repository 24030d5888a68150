// The downstream side: an nghttp2 server session for one client connection. It turns
// HTTP/2 events into calls on one ServerStreamHandler per stream and offers the
// handler the calls it needs to answer.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <unordered_map>

#include "http2/connection.h"
#include "http2/header_map.h"
#include "http2/session_memory.h"

namespace sparkgate::http2 {

class ServerConnection;

// One request stream, as the proxy sees it. All calls arrive on the connection's thread,
// from inside nghttp2 callbacks: implementations must not call back into nghttp2
// synchronously except through ServerConnection's own methods, which only schedule.
class ServerStreamHandler {
 public:
  virtual ~ServerStreamHandler() = default;
  // The complete request header block. `end_stream` if the request has no body.
  virtual void on_request_headers(HeaderMap headers, bool end_stream) = 0;
  // A chunk of request body. The bytes are valid only during the call.
  virtual void on_request_data(const uint8_t* data, size_t n) = 0;
  // The client half-closed the stream.
  virtual void on_request_end() = 0;
  // The stream is gone: `error_code` 0 after a normal end, else the RST_STREAM code (or
  // NGHTTP2_CANCEL when the connection was lost). No further calls follow.
  virtual void on_stream_closed(uint32_t error_code) = 0;
  // nghttp2 asks how many response body bytes, at most `max`, go in the next DATA frame.
  // Return that count (0 only together with EOF); set NGHTTP2_DATA_FLAG_EOF (and
  // NO_END_STREAM when trailers follow) in `data_flags`, or return NGHTTP2_ERR_DEFERRED
  // when nothing is buffered yet. The bytes stay queued until take_response_body.
  virtual ssize_t response_body_length(size_t max, uint32_t* data_flags) = 0;
  // Appends exactly `n` bytes that response_body_length announced to `out` (the socket's
  // write buffer: WriteBuffer::append_shared for bytes in a queue's chunks, so they are
  // written from there) and drops them from the queue. False if they are no longer there.
  virtual bool take_response_body(WriteBuffer& out, size_t n) = 0;
};

struct ServerConnectionOptions {
  uint32_t stream_window_bytes = 1u << 20;
  uint32_t connection_window_bytes = 16u << 20;
  uint32_t max_concurrent_streams = 1000;
  uint32_t max_header_list_bytes = 64u << 10;
  // The preface with the client's SETTINGS, and each request header block, must arrive
  // within this time of their start; else the connection is closed (limits.header_timeout).
  std::chrono::milliseconds header_timeout{10000};
  // No open streams for this long: GOAWAY and close (limits.idle_timeout); 0 never.
  std::chrono::milliseconds idle_timeout{std::chrono::hours(1)};
  // Non-empty: the connection is refused. Once the client's preface proves it speaks
  // HTTP/2 it gets SETTINGS and a GOAWAY (ENHANCE_YOUR_CALM) with this as debug data,
  // and no stream is served.
  std::string refuse_with;
};

class ServerConnection final : public Connection {
 public:
  // Creates the handler for a new stream; it may return nullptr to refuse the stream.
  using HandlerFactory = std::function<std::shared_ptr<ServerStreamHandler>(ServerConnection&, int32_t stream_id)>;

  ServerConnection(boost::asio::any_io_executor executor, std::unique_ptr<Transport> transport,
                const ServerConnectionOptions& options, HandlerFactory factory);

  // Sends the server preface and starts reading. Call once.
  void start();

  // Submits response headers. With `has_body`, the body is pulled from the handler's
  // response_body_length/take_response_body; without, the HEADERS frame ends the stream (trailers-only).
  // Safe from inside callbacks (schedules the write). Returns an nghttp2 error code.
  int submit_response(int32_t stream_id, const HeaderMap& headers, bool has_body);
  // Submits trailers after the body; call from response_body_length when the body ends
  // (with NGHTTP2_DATA_FLAG_NO_END_STREAM set), or any time after the body finished.
  int submit_trailers(int32_t stream_id, const HeaderMap& trailers);

  // Graceful shutdown: a shutdown notice now, the final GOAWAY one round trip later.
  // The connection closes when its streams are done.
  void begin_drain();

  size_t active_streams() const { return streams_.size(); }
  const std::string& peer() const { return transport_->peer(); }

  // Called when the connection has ended, after every stream was told.
  std::function<void()> on_finished;

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
  bool on_first_read(const uint8_t* data, size_t n) override;
  void after_nghttp2_call() override;
  bool has_no_streams() const override { return streams_.empty(); }
  bool take_body(int32_t stream_id, WriteBuffer& out, size_t n) override;

  struct StreamState {
    // One per stream: from the per-thread lists (session_memory.h), not malloc.
    static void* operator new(size_t n) { return pooled_new(n); }
    static void operator delete(void* p) noexcept { pooled_free(p); }
    std::shared_ptr<ServerStreamHandler> handler;
    HeaderMap headers;
    bool headers_too_large = false;
    bool headers_done = false;
    std::chrono::steady_clock::time_point headers_begun;
  };
  StreamState* find(int32_t stream_id);

  // limits.header_timeout: armed at start for the preface, and after a read that left a
  // header block incomplete; when it fires it closes the connection or re-arms for the
  // oldest block still open.
  void arm_header_timer(std::chrono::steady_clock::time_point deadline);
  void on_header_timer();
  // limits.idle_timeout: fires lazily and re-arms while streams are open.
  void arm_idle_timer(std::chrono::steady_clock::time_point deadline);
  void on_idle_timer();

  ServerConnectionOptions options_;
  HandlerFactory factory_;
  // Its nodes come from the per-thread lists too: a stream costs no malloc.
  using StreamTable = std::unordered_map<int32_t, std::unique_ptr<StreamState>, std::hash<int32_t>, std::equal_to<>,
                                         PooledAllocator<std::pair<const int32_t, std::unique_ptr<StreamState>>>>;
  StreamTable streams_;
  // Handlers released inside callbacks die here, after nghttp2 returns.
  std::vector<std::shared_ptr<ServerStreamHandler>> graveyard_;
  std::unique_ptr<boost::asio::steady_timer> drain_timer_;
  std::unique_ptr<boost::asio::steady_timer> header_timer_;
  bool header_timer_armed_ = false;
  bool preface_done_ = false;       // the client's first SETTINGS frame arrived
  size_t incomplete_headers_ = 0;   // streams whose header block began but did not end
  std::unique_ptr<boost::asio::steady_timer> idle_timer_;
  std::chrono::steady_clock::time_point idle_since_;  // when the last stream closed
};

}  // namespace sparkgate::http2
