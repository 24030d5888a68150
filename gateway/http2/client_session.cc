#include "http2/client_session.h"

#include <spdlog/spdlog.h>

namespace sparkgate::http2 {

namespace {
// Spark puts whole error descriptions (and, with FetchErrorDetails off, stack traces) in
// grpc-message and grpc-status-details-bin, so allow far more than a request's headers.
constexpr size_t kMaxResponseHeaderBytes = 4u << 20;
}  // namespace

ClientSession::ClientSession(boost::asio::any_io_executor executor, std::string backend,
                             const ClientSessionOptions& options)
    : Session(std::move(executor), "upstream " + backend), backend_(std::move(backend)), options_(options) {
  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  nghttp2_session_callbacks_set_data_source_read_length_callback(cbs, data_frame_length);
  nghttp2_option* opt;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  // Until the backend's SETTINGS arrive, assume it takes 100 streams (RFC 9113's advice).
  nghttp2_option_set_peer_max_concurrent_streams(opt, 100);
  nghttp2_session_client_new2(&session_, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
}

void ClientSession::connect(const boost::asio::ip::tcp::resolver::results_type& endpoints,
                            std::chrono::milliseconds timeout, std::function<void(const std::string&)> done) {
  socket_ = std::make_unique<boost::asio::ip::tcp::socket>(executor());
  connect_timer_ = std::make_unique<boost::asio::steady_timer>(executor(), timeout);
  auto self = std::static_pointer_cast<ClientSession>(shared_from_this());
  auto finished = std::make_shared<bool>(false);
  connect_timer_->async_wait([self, finished, done, timeout](const boost::system::error_code& ec) {
    if (ec || *finished) return;
    *finished = true;
    boost::system::error_code ignored;
    self->socket_->close(ignored);
    done("connect timed out after " + std::to_string(timeout.count()) + " ms");
  });
  boost::asio::async_connect(
      *socket_, endpoints,
      [self, finished, done](const boost::system::error_code& ec, const boost::asio::ip::tcp::endpoint&) {
        if (*finished) return;
        *finished = true;
        self->connect_timer_->cancel();
        if (ec) {
          done(ec.message());
          return;
        }
        self->socket_->set_option(boost::asio::ip::tcp::no_delay(true));
        self->transport_ = std::make_unique<TcpTransport>(std::move(*self->socket_));
        self->socket_.reset();
        self->connected_ = true;
        nghttp2_settings_entry settings[] = {
            {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
            {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, self->options_.stream_window_bytes},
        };
        nghttp2_submit_settings(self->session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
        nghttp2_session_set_local_window_size(self->session_, NGHTTP2_FLAG_NONE, 0,
                                              static_cast<int32_t>(self->options_.connection_window_bytes));
        self->start_io();
        done("");
      });
}

bool ClientSession::has_capacity() const {
  if (!connected_ || draining_ || is_closed()) return false;
  uint32_t limit = nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return streams_.size() < limit;
}

int32_t ClientSession::submit_request(const HeaderMap& headers, bool has_body,
                                      std::shared_ptr<ClientStreamHandler> handler) {
  if (is_closed()) return NGHTTP2_ERR_INVALID_STATE;
  auto nv = headers.to_nv();
  nghttp2_data_provider prd{};
  prd.read_callback = read_body;
  int32_t id = nghttp2_submit_request(session_, nullptr, nv.data(), nv.size(), has_body ? &prd : nullptr, nullptr);
  if (id < 0) return id;
  auto st = std::make_unique<StreamState>();
  st->handler = std::move(handler);
  streams_[id] = std::move(st);
  signal_write();
  return id;
}

ClientSession::StreamState* ClientSession::find(int32_t stream_id) {
  auto it = streams_.find(stream_id);
  return it == streams_.end() ? nullptr : it->second.get();
}

int ClientSession::on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto* self = static_cast<ClientSession*>(user_data);
  if (auto* st = self->find(frame->hd.stream_id)) st->headers.clear();
  return 0;
}

int ClientSession::on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                             const uint8_t* value, size_t valuelen, uint8_t, void* user_data) {
  auto* self = static_cast<ClientSession*>(user_data);
  auto* st = self->find(frame->hd.stream_id);
  if (!st) return 0;
  if (st->headers.bytes() + namelen + valuelen > kMaxResponseHeaderBytes) {
    spdlog::warn("{}: response header block of stream {} exceeds {} bytes; resetting it", self->name(),
                 frame->hd.stream_id, kMaxResponseHeaderBytes);
    // nghttp2 resets the stream; the proxy turns that into UNAVAILABLE for the client.
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  st->headers.add(std::string(reinterpret_cast<const char*>(name), namelen),
                  std::string(reinterpret_cast<const char*>(value), valuelen));
  return 0;
}

int ClientSession::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto* self = static_cast<ClientSession*>(user_data);
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    // Streams above last_stream_id are closed by nghttp2 with REFUSED_STREAM; the rest
    // finish here. New streams go to another connection.
    self->draining_ = true;
    spdlog::info("{}: GOAWAY received (last stream {}, error {}); draining this connection", self->name(),
                 frame->goaway.last_stream_id, nghttp2_http2_strerror(frame->goaway.error_code));
    if (self->on_unusable) self->on_unusable(*self);
    return 0;
  }
  auto* st = self->find(frame->hd.stream_id);
  if (!st) return 0;
  auto handler = st->handler;
  bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
  if (frame->hd.type == NGHTTP2_HEADERS) {
    if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
      // 1xx informational headers are not expected from gRPC servers; treat as final.
      st->got_response_headers = true;
      handler->on_response_headers(std::move(st->headers), end_stream);
    } else if (frame->headers.cat == NGHTTP2_HCAT_HEADERS && st->got_response_headers) {
      handler->on_response_trailers(std::move(st->headers));
    }
    st->headers.clear();
  }
  return 0;
}

int ClientSession::on_data_chunk_recv(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data,
                                      size_t len, void* user_data) {
  auto* self = static_cast<ClientSession*>(user_data);
  auto* st = self->find(stream_id);
  if (!st) {
    nghttp2_session_consume(session, stream_id, len);
    return 0;
  }
  auto handler = st->handler;
  handler->on_response_data(data, len);
  return 0;
}

int ClientSession::on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user_data) {
  auto* self = static_cast<ClientSession*>(user_data);
  auto it = self->streams_.find(stream_id);
  if (it == self->streams_.end()) return 0;
  auto handler = std::move(it->second->handler);
  self->streams_.erase(it);
  if (handler) {
    handler->on_upstream_closed(error_code, "");
    self->graveyard_.push_back(std::move(handler));
  }
  return 0;
}

ssize_t ClientSession::read_body(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                                 uint32_t* data_flags, nghttp2_data_source*, void* user_data) {
  auto* self = static_cast<ClientSession*>(user_data);
  auto* st = self->find(stream_id);
  if (!st || !st->handler) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  auto handler = st->handler;
  return handler->read_request_body(buf, length, data_flags);
}

void ClientSession::on_connection_closed(const std::string& reason) {
  if (connect_timer_) connect_timer_->cancel();
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, st] : streams) {
    if (st->handler) {
      st->handler->on_upstream_closed(NGHTTP2_CANCEL, reason);
      graveyard_.push_back(std::move(st->handler));
    }
  }
  if (on_unusable) {
    auto cb = std::move(on_unusable);
    on_unusable = nullptr;
    cb(*this);
  }
}

}  // namespace sparkgate::http2
