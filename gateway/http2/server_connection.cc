#include "http2/server_connection.h"

#include <spdlog/spdlog.h>

#include <cstring>

#include "http2/session_memory.h"

namespace sparkgate::http2 {

namespace {
constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

using Clock = std::chrono::steady_clock;

std::string seconds_text(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + " s";
  return std::to_string(d.count()) + " ms";
}

std::string http1_reply() {
  std::string body =
      "sparkgate serves gRPC (Spark Connect) over HTTP/2 only. Connect with a Spark Connect client and an "
      "sc://host:port connection string.\n";
  return "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}
}  // namespace

ServerConnection::ServerConnection(boost::asio::any_io_executor executor, std::unique_ptr<Transport> transport,
                             const ServerConnectionOptions& options, HandlerFactory factory)
    : Connection(std::move(executor), "downstream " + transport->peer()), options_(options), factory_(std::move(factory)) {
  transport_ = std::move(transport);
  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  nghttp2_session_callbacks_set_data_source_read_length_callback(cbs, data_frame_length);
  nghttp2_session_callbacks_set_send_data_callback(cbs, send_data);
  nghttp2_option* opt;
  nghttp2_option_new(&opt);
  // Flow control is end to end: bytes are consumed only once forwarded.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_send_header_block_length(opt, 1u << 20);
  // Closed streams are kept (nghttp2_option_set_no_closed_streams is not set): without
  // them a DATA or HEADERS frame on a closed stream is not answered with STREAM_CLOSED
  // (RFC 9113 §5.1; h2spec 5.1/8, 9, 11, 12 fail).
  nghttp2_session_server_new3(&session_, cbs, this, opt, session_memory());
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
}

void ServerConnection::start() {
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, options_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options_.stream_window_bytes},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, options_.max_header_list_bytes},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(options_.connection_window_bytes));
  header_timer_ = std::make_unique<boost::asio::steady_timer>(executor());
  arm_header_timer(Clock::now() + options_.header_timeout);
  idle_since_ = Clock::now();
  if (options_.idle_timeout.count() > 0) {
    idle_timer_ = std::make_unique<boost::asio::steady_timer>(executor());
    arm_idle_timer(idle_since_ + options_.idle_timeout);
  }
  // Our SETTINGS go out after the client's first bytes proved it speaks HTTP/2.
  start_io(false);
}

void ServerConnection::arm_header_timer(Clock::time_point deadline) {
  header_timer_armed_ = true;
  header_timer_->expires_at(deadline);
  header_timer_->async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    if (ec) return;
    if (auto self = weak.lock()) static_cast<ServerConnection&>(*self).on_header_timer();
  });
}

void ServerConnection::on_header_timer() {
  header_timer_armed_ = false;
  if (is_closed()) return;
  if (!preface_done_) {
    spdlog::debug("{}: no HTTP/2 preface and SETTINGS within {}", name(), seconds_text(options_.header_timeout));
    close("no HTTP/2 preface and SETTINGS within " + seconds_text(options_.header_timeout) +
          " (limits.header_timeout)");
    return;
  }
  auto oldest = Clock::time_point::max();
  for (const auto& [id, st] : streams_)
    if (!st->headers_done) oldest = std::min(oldest, st->headers_begun);
  if (oldest == Clock::time_point::max()) return;
  if (Clock::now() - oldest < options_.header_timeout) {
    arm_header_timer(oldest + options_.header_timeout);
    return;
  }
  std::string why = "request headers incomplete after " + seconds_text(options_.header_timeout) +
                    " (limits.header_timeout)";
  spdlog::info("{}: {}; closing the connection", name(), why);
  goaway_and_close(NGHTTP2_ENHANCE_YOUR_CALM, "sparkgate: " + why, why);
}

void ServerConnection::arm_idle_timer(Clock::time_point deadline) {
  idle_timer_->expires_at(deadline);
  idle_timer_->async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    if (ec) return;
    if (auto self = weak.lock()) static_cast<ServerConnection&>(*self).on_idle_timer();
  });
}

void ServerConnection::on_idle_timer() {
  if (is_closed()) return;
  auto now = Clock::now();
  // Checked lazily: streams come and go without touching the timer.
  if (!streams_.empty()) {
    arm_idle_timer(now + options_.idle_timeout);
    return;
  }
  if (now - idle_since_ < options_.idle_timeout) {
    arm_idle_timer(idle_since_ + options_.idle_timeout);
    return;
  }
  std::string why = "connection idle for " + seconds_text(options_.idle_timeout) + " (limits.idle_timeout)";
  spdlog::debug("{}: {}; closing it", name(), why);
  goaway_and_close(NGHTTP2_NO_ERROR, "sparkgate: " + why, why);
}

void ServerConnection::after_nghttp2_call() {
  graveyard_.clear();
  // A header block split over reads: its deadline starts counting.
  if (incomplete_headers_ > 0 && !header_timer_armed_ && header_timer_ && !is_closed())
    arm_header_timer(Clock::now() + options_.header_timeout);
}

bool ServerConnection::on_first_read(const uint8_t* data, size_t n) {
  size_t cmp = std::min(n, kPreface.size());
  if (std::memcmp(data, kPreface.data(), cmp) == 0) {
    if (!options_.refuse_with.empty()) {
      spdlog::debug("{}: refused: {}", name(), options_.refuse_with);
      goaway_and_close(NGHTTP2_ENHANCE_YOUR_CALM, "sparkgate: " + options_.refuse_with, options_.refuse_with);
    }
    return true;
  }
  header_timer_->cancel();
  // Not HTTP/2 prior knowledge. An HTTP/1.x request gets a readable answer.
  std::string_view head(reinterpret_cast<const char*>(data), n);
  if (head.find(" HTTP/1.") != std::string_view::npos) {
    spdlog::info("{}: rejected an HTTP/1.x request (sparkgate speaks HTTP/2 only)", name());
    write_raw_and_close(http1_reply(), "HTTP/1.x request");
  } else {
    spdlog::info("{}: connection did not start with the HTTP/2 preface", name());
    close("not HTTP/2");
  }
  return false;
}

ServerConnection::StreamState* ServerConnection::find(int32_t stream_id) {
  auto it = streams_.find(stream_id);
  return it == streams_.end() ? nullptr : it->second.get();
}

int ServerConnection::on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto* self = static_cast<ServerConnection*>(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  if (!self->options_.refuse_with.empty()) {
    nghttp2_submit_rst_stream(self->session_, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  auto state = std::make_unique<StreamState>();
  state->headers_begun = Clock::now();
  ++self->incomplete_headers_;
  state->handler = self->factory_(*self, frame->hd.stream_id);
  if (!state->handler) {
    --self->incomplete_headers_;
    nghttp2_submit_rst_stream(self->session_, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  self->streams_[frame->hd.stream_id] = std::move(state);
  return 0;
}

int ServerConnection::on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                             const uint8_t* value, size_t valuelen, uint8_t, void* user_data) {
  auto* self = static_cast<ServerConnection*>(user_data);
  auto* st = self->find(frame->hd.stream_id);
  if (!st || st->headers_too_large) return 0;
  if (st->headers.bytes() + namelen + valuelen > self->options_.max_header_list_bytes) {
    // Answered with a gRPC status once the header block is complete.
    st->headers_too_large = true;
    return 0;
  }
  // Request trailers (rare in gRPC) are not forwarded; only the first block is kept.
  if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  st->headers.add(std::string_view(reinterpret_cast<const char*>(name), namelen),
                  std::string_view(reinterpret_cast<const char*>(value), valuelen));
  return 0;
}

int ServerConnection::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto* self = static_cast<ServerConnection*>(user_data);
  if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK) && !self->preface_done_) {
    self->preface_done_ = true;
    self->header_timer_->cancel();
    self->header_timer_armed_ = false;
    return 0;
  }
  auto* st = self->find(frame->hd.stream_id);
  if (!st) return 0;
  auto handler = st->handler;  // keeps it alive through the call
  bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        st->headers_done = true;
        --self->incomplete_headers_;
        if (st->headers_too_large) {
          HeaderMap h;
          h.add(":status", "200");
          h.add("content-type", "application/grpc");
          h.add("grpc-status", "8");
          h.add("grpc-message", "request headers exceed the gateway limit of " +
                                    std::to_string(self->options_.max_header_list_bytes) +
                                    " bytes (limits.max_header_list_bytes)");
          self->submit_response(frame->hd.stream_id, h, false);
          return 0;
        }
        handler->on_request_headers(std::move(st->headers), end_stream);
        st->headers.clear();
        if (end_stream) handler->on_request_end();
      } else if (end_stream) {
        handler->on_request_end();  // request trailers end the stream
      }
      break;
    case NGHTTP2_DATA:
      if (end_stream) handler->on_request_end();
      break;
    default:
      break;
  }
  return 0;
}

int ServerConnection::on_data_chunk_recv(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data,
                                      size_t len, void* user_data) {
  auto* self = static_cast<ServerConnection*>(user_data);
  auto* st = self->find(stream_id);
  if (!st || st->headers_too_large) {
    // Nobody will forward these bytes: return them to the window now.
    nghttp2_session_consume(session, stream_id, len);
    return 0;
  }
  auto handler = st->handler;
  handler->on_request_data(data, len);
  return 0;
}

int ServerConnection::on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user_data) {
  auto* self = static_cast<ServerConnection*>(user_data);
  auto it = self->streams_.find(stream_id);
  if (it == self->streams_.end()) return 0;
  auto handler = std::move(it->second->handler);
  if (!it->second->headers_done) --self->incomplete_headers_;
  self->streams_.erase(it);
  if (self->streams_.empty() && self->idle_timer_) self->idle_since_ = Clock::now();
  if (handler) {
    handler->on_stream_closed(error_code);
    self->graveyard_.push_back(std::move(handler));
  }
  return 0;
}

ssize_t ServerConnection::read_body(nghttp2_session*, int32_t stream_id, uint8_t*, size_t length, uint32_t* data_flags,
                                 nghttp2_data_source*, void* user_data) {
  auto* self = static_cast<ServerConnection*>(user_data);
  auto* st = self->find(stream_id);
  if (!st || !st->handler) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  auto handler = st->handler;
  ssize_t n = handler->response_body_length(length, data_flags);
  if (n >= 0) *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;  // send_data writes the bytes
  return n;
}

int ServerConnection::send_data(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd, size_t length,
                              nghttp2_data_source*, void* user_data) {
  return static_cast<ServerConnection*>(user_data)->send_data_frame(frame, framehd, length);
}

bool ServerConnection::take_body(int32_t stream_id, WriteBuffer& out, size_t n) {
  auto* st = find(stream_id);
  if (!st || !st->handler) return false;
  auto handler = st->handler;
  return handler->take_response_body(out, n);
}

int ServerConnection::submit_response(int32_t stream_id, const HeaderMap& headers, bool has_body) {
  auto nv = headers.to_nv();
  nghttp2_data_provider prd{};
  prd.read_callback = read_body;
  int rv = nghttp2_submit_response(session_, stream_id, nv.data(), nv.size(), has_body ? &prd : nullptr);
  signal_write();
  return rv;
}

int ServerConnection::submit_trailers(int32_t stream_id, const HeaderMap& trailers) {
  auto nv = trailers.to_nv();
  int rv = nghttp2_submit_trailer(session_, stream_id, nv.data(), nv.size());
  signal_write();
  return rv;
}

void ServerConnection::begin_drain() {
  if (is_closed()) return;
  nghttp2_submit_shutdown_notice(session_);
  signal_write();
  drain_timer_ = std::make_unique<boost::asio::steady_timer>(executor(), std::chrono::milliseconds(500));
  drain_timer_->async_wait([self = std::static_pointer_cast<ServerConnection>(shared_from_this())](
                               const boost::system::error_code& ec) {
    if (ec || self->is_closed()) return;
    nghttp2_submit_goaway(self->session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(self->session_),
                          NGHTTP2_NO_ERROR, nullptr, 0);
    self->signal_write();
  });
}

void ServerConnection::on_connection_closed(const std::string&) {
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, st] : streams) {
    if (st->handler) {
      st->handler->on_stream_closed(NGHTTP2_CANCEL);
      graveyard_.push_back(std::move(st->handler));
    }
  }
  incomplete_headers_ = 0;
  if (drain_timer_) drain_timer_->cancel();
  if (header_timer_) header_timer_->cancel();
  if (idle_timer_) idle_timer_->cancel();
  if (on_finished) {
    auto cb = std::move(on_finished);
    on_finished = nullptr;
    cb();
  }
}

}  // namespace sparkgate::http2
