#include "http2/client_connection.h"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "http2/session_memory.h"

namespace sparkgate::http2 {

namespace {
// Spark puts whole error descriptions (and, with FetchErrorDetails off, stack traces) in
// grpc-message and grpc-status-details-bin, so allow far more than a request's headers.
constexpr size_t kMaxResponseHeaderBytes = 4u << 20;
}  // namespace

ClientConnection::ClientConnection(boost::asio::any_io_executor executor, std::string backend,
                             const ClientConnectionOptions& options)
    : Connection(std::move(executor), "upstream " + backend), backend_(std::move(backend)), options_(options) {
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
  nghttp2_option_set_no_auto_window_update(opt, 1);
  // Until the backend's SETTINGS arrive, assume it takes 100 streams (RFC 9113's advice).
  nghttp2_option_set_peer_max_concurrent_streams(opt, 100);
  // No closed streams kept for the priority tree (RFC 9113 deprecates it; sparkgate
  // ignores priorities): a finished stream's memory goes back at once.
  nghttp2_option_set_no_closed_streams(opt, 1);
  nghttp2_session_client_new3(&session_, cbs, this, opt, session_memory());
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
}

void ClientConnection::connect(const boost::asio::ip::tcp::resolver::results_type& endpoints,
                            std::chrono::milliseconds timeout, const std::optional<ClientTls>& tls,
                            std::function<void(const std::string&)> done) {
  connect_done_ = std::move(done);
  connect_timeout_ = timeout;
  socket_ = std::make_unique<boost::asio::ip::tcp::socket>(executor());
  connect_timer_ = std::make_unique<boost::asio::steady_timer>(executor(), timeout);
  auto self = std::static_pointer_cast<ClientConnection>(shared_from_this());
  connect_timer_->async_wait([self](const boost::system::error_code& ec) {
    if (ec || !self->connect_done_) return;
    const std::string ms = std::to_string(self->connect_timeout_.count()) + " ms";
    if (self->tls_stream_) {
      self->finish_connect("TLS handshake with " + endpoint_string(self->tls_stream_->next_layer()) +
                           " timed out (connect timeout " + ms + ")");
    } else {
      self->finish_connect("connect timed out after " + ms);
    }
  });
  boost::asio::async_connect(
      *socket_, endpoints,
      [self, tls](const boost::system::error_code& ec, const boost::asio::ip::tcp::endpoint&) {
        if (!self->connect_done_) return;  // timed out; already reported
        if (self->is_closed()) {
          self->finish_connect("the connection was closed while connecting");
          return;
        }
        if (ec) {
          self->finish_connect(ec.message());
          return;
        }
        boost::system::error_code ignored;
        self->socket_->set_option(boost::asio::ip::tcp::no_delay(true), ignored);
        if (tls) {
          self->start_tls(*tls, endpoint_string(*self->socket_));
        } else {
          self->transport_ = std::make_unique<TcpTransport>(std::move(*self->socket_));
          self->socket_.reset();
          self->start_http2();
        }
      });
}

void ClientConnection::start_tls(const ClientTls& tls, const std::string& peer) {
  if (!tls.context || tls.server_name.empty()) {
    finish_connect("TLS to " + peer + " is misconfigured: no TLS context or server name");
    return;
  }
  tls_stream_ = std::make_unique<TlsTransport::Stream>(std::move(*socket_), *tls.context);
  socket_.reset();
  SSL* ssl = tls_stream_->native_handle();
  boost::system::error_code not_ip;
  boost::asio::ip::make_address(tls.server_name, not_ip);
  const bool name_is_ip = !not_ip;
  // RFC 6066 forbids IP literals in SNI; the certificate is still checked against them.
  if (!name_is_ip) SSL_set_tlsext_host_name(ssl, tls.server_name.c_str());
  static constexpr unsigned char kAlpnH2[] = {2, 'h', '2'};
  SSL_set_alpn_protos(ssl, kAlpnH2, sizeof kAlpnH2);
  tls_stream_->set_verify_mode(boost::asio::ssl::verify_peer);
  // host_name_verification only answers yes or no; record why, so that the handshake
  // error says "hostname mismatch" instead of a bare "certificate verify failed".
  tls_stream_->set_verify_callback(
      [check = boost::asio::ssl::host_name_verification(tls.server_name), name_is_ip](
          bool preverified, boost::asio::ssl::verify_context& ctx) {
        const bool ok = check(preverified, ctx);
        if (preverified && !ok) {
          X509_STORE_CTX_set_error(ctx.native_handle(),
                                   name_is_ip ? X509_V_ERR_IP_ADDRESS_MISMATCH : X509_V_ERR_HOSTNAME_MISMATCH);
        }
        return ok;
      });
  auto self = std::static_pointer_cast<ClientConnection>(shared_from_this());
  tls_stream_->async_handshake(
      boost::asio::ssl::stream_base::client,
      [self, peer, server_name = tls.server_name](const boost::system::error_code& ec) {
        if (!self->connect_done_) return;  // timed out; already reported
        if (self->is_closed()) {
          self->finish_connect("the connection was closed during the TLS handshake");
          return;
        }
        SSL* ssl = self->tls_stream_->native_handle();
        if (ec) {
          std::string why;
          const long verify = SSL_get_verify_result(ssl);
          if (verify != X509_V_OK) {
            why = std::string("certificate verify failed (") + X509_verify_cert_error_string(verify);
            if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH)
              why += ": the certificate is not valid for '" + server_name + "'";
            why += ")";
          } else if (ec == boost::asio::ssl::error::stream_truncated || ec == boost::asio::error::eof) {
            why = "the peer closed the connection (does it serve TLS?)";
          } else {
            why = ec.message();
          }
          self->finish_connect("TLS handshake with " + peer + " failed: " + why);
          return;
        }
        const unsigned char* proto = nullptr;
        unsigned int proto_len = 0;
        SSL_get0_alpn_selected(ssl, &proto, &proto_len);
        if (proto_len != 2 || std::memcmp(proto, "h2", 2) != 0) {
          std::string selected =
              proto_len ? "'" + std::string(reinterpret_cast<const char*>(proto), proto_len) + "'" : "no protocol";
          self->finish_connect("TLS peer " + peer + " did not select HTTP/2 with ALPN (it selected " + selected +
                               ")");
          return;
        }
        self->transport_ = std::make_unique<TlsTransport>(std::move(self->tls_stream_));
        self->tls_ = true;
        self->start_http2();
      });
}

void ClientConnection::start_http2() {
  connected_ = true;
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options_.stream_window_bytes},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(options_.connection_window_bytes));
  start_io();
  finish_connect("");
}

void ClientConnection::finish_connect(const std::string& error) {
  if (!connect_done_) return;
  auto done = std::move(connect_done_);
  connect_done_ = nullptr;
  if (connect_timer_) connect_timer_->cancel();
  if (!error.empty()) {
    boost::system::error_code ignored;
    if (socket_) socket_->close(ignored);
    if (tls_stream_) tls_stream_->lowest_layer().close(ignored);
  }
  done(error);
}

bool ClientConnection::has_capacity() const {
  if (!connected_ || draining_ || is_closed()) return false;
  uint32_t limit = nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return streams_.size() < limit;
}

int32_t ClientConnection::submit_request(const HeaderMap& headers, bool has_body,
                                      std::shared_ptr<ClientStreamHandler> handler,
                                      std::chrono::milliseconds idle_timeout) {
  if (is_closed()) return NGHTTP2_ERR_INVALID_STATE;
  auto nv = headers.to_nv();
  nghttp2_data_provider prd{};
  prd.read_callback = read_body;
  int32_t id = nghttp2_submit_request(session_, nullptr, nv.data(), nv.size(), has_body ? &prd : nullptr, nullptr);
  if (id < 0) return id;
  auto st = std::make_unique<StreamState>();
  st->handler = std::move(handler);
  st->idle_timeout = idle_timeout;
  streams_[id] = std::move(st);
  if (idle_timeout.count() > 0) {
    // A quarter of the timeout: a stream is cancelled after 1 to 1.25 timeouts of silence
    // (the first tick may come at once, so a stream needs one tick more than the timeout).
    auto tick = std::clamp(idle_timeout / 4, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
    if (!idle_timer_armed_ || tick < idle_tick_) {
      idle_tick_ = tick;
      arm_idle_timer();
    }
  }
  signal_write();
  return id;
}

void ClientConnection::arm_idle_timer() {
  if (!idle_timer_) idle_timer_ = std::make_unique<boost::asio::steady_timer>(executor());
  idle_timer_armed_ = true;
  idle_timer_->expires_after(idle_tick_);
  idle_timer_->async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    if (ec) return;
    if (auto self = weak.lock()) static_cast<ClientConnection&>(*self).on_idle_tick();
  });
}

void ClientConnection::on_idle_tick() {
  idle_timer_armed_ = false;
  if (is_closed()) return;
  bool watching = false;
  std::vector<std::pair<int32_t, std::shared_ptr<ClientStreamHandler>>> silent;
  for (auto& [id, st] : streams_) {
    if (st->idle_timeout.count() == 0 || st->idle_reported || !st->handler) continue;
    watching = true;
    st->idle_for += idle_tick_;
    if (st->idle_for > st->idle_timeout) silent.emplace_back(id, st->handler);
  }
  for (auto& [id, handler] : silent) {
    auto* st = find(id);
    if (!st) continue;
    if (handler->on_upstream_idle(st->idle_timeout)) {
      st->idle_reported = true;
      reset_stream(id, NGHTTP2_CANCEL);
    } else {
      st->idle_for = std::chrono::milliseconds(0);
    }
  }
  if (watching) arm_idle_timer();
}

ClientConnection::StreamState* ClientConnection::find(int32_t stream_id) {
  auto it = streams_.find(stream_id);
  return it == streams_.end() ? nullptr : it->second.get();
}

int ClientConnection::on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto* self = static_cast<ClientConnection*>(user_data);
  if (auto* st = self->find(frame->hd.stream_id)) st->headers.clear();
  return 0;
}

int ClientConnection::on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                             const uint8_t* value, size_t valuelen, uint8_t, void* user_data) {
  auto* self = static_cast<ClientConnection*>(user_data);
  auto* st = self->find(frame->hd.stream_id);
  if (!st) return 0;
  if (st->headers.bytes() + namelen + valuelen > kMaxResponseHeaderBytes) {
    spdlog::warn("{}: response header block of stream {} exceeds {} bytes; resetting it", self->name(),
                 frame->hd.stream_id, kMaxResponseHeaderBytes);
    // nghttp2 resets the stream; the proxy turns that into UNAVAILABLE for the client.
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  st->headers.add(std::string_view(reinterpret_cast<const char*>(name), namelen),
                  std::string_view(reinterpret_cast<const char*>(value), valuelen));
  return 0;
}

int ClientConnection::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto* self = static_cast<ClientConnection*>(user_data);
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    // Streams above last_stream_id are closed by nghttp2 with REFUSED_STREAM; the rest
    // finish here. New streams go to another connection.
    self->draining_ = true;
    self->goaway_received_ = true;
    spdlog::info("{}: GOAWAY received (last stream {}, error {}); draining this connection", self->name(),
                 frame->goaway.last_stream_id, nghttp2_http2_strerror(frame->goaway.error_code));
    if (self->on_unusable) self->on_unusable(*self);
    return 0;
  }
  auto* st = self->find(frame->hd.stream_id);
  if (!st) return 0;
  auto handler = st->handler;
  bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
  st->idle_for = std::chrono::milliseconds(0);
  if (frame->hd.type == NGHTTP2_RST_STREAM) st->peer_reset = true;
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

int ClientConnection::on_data_chunk_recv(nghttp2_session* session, uint8_t, int32_t stream_id, const uint8_t* data,
                                      size_t len, void* user_data) {
  auto* self = static_cast<ClientConnection*>(user_data);
  auto* st = self->find(stream_id);
  if (!st) {
    nghttp2_session_consume(session, stream_id, len);
    return 0;
  }
  st->idle_for = std::chrono::milliseconds(0);
  auto handler = st->handler;
  handler->on_response_data(data, len);
  return 0;
}

int ClientConnection::on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user_data) {
  auto* self = static_cast<ClientConnection*>(user_data);
  auto it = self->streams_.find(stream_id);
  if (it == self->streams_.end()) return 0;
  auto handler = std::move(it->second->handler);
  // REFUSED_STREAM that the backend did not send (no RST_STREAM, no GOAWAY) is nghttp2
  // giving up on a stream it never sent because the connection broke: a connection
  // failure, not the backend's polite refusal.
  std::string connection_error;
  if (error_code == NGHTTP2_REFUSED_STREAM && !it->second->peer_reset && !self->goaway_received_)
    connection_error = "the HTTP/2 connection failed before the request was sent";
  self->streams_.erase(it);
  if (handler) {
    handler->on_upstream_closed(error_code, connection_error);
    self->graveyard_.push_back(std::move(handler));
  }
  return 0;
}

ssize_t ClientConnection::read_body(nghttp2_session*, int32_t stream_id, uint8_t*, size_t length, uint32_t* data_flags,
                                 nghttp2_data_source*, void* user_data) {
  auto* self = static_cast<ClientConnection*>(user_data);
  auto* st = self->find(stream_id);
  if (!st || !st->handler) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  auto handler = st->handler;
  ssize_t n = handler->request_body_length(length, data_flags);
  if (n >= 0) *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;  // send_data writes the bytes
  return n;
}

int ClientConnection::send_data(nghttp2_session*, nghttp2_frame* frame, const uint8_t* framehd, size_t length,
                              nghttp2_data_source*, void* user_data) {
  return static_cast<ClientConnection*>(user_data)->send_data_frame(frame, framehd, length);
}

bool ClientConnection::take_body(int32_t stream_id, WriteBuffer& out, size_t n) {
  auto* st = find(stream_id);
  if (!st || !st->handler) return false;
  st->idle_for = std::chrono::milliseconds(0);
  auto handler = st->handler;
  return handler->take_request_body(out, n);
}

void ClientConnection::on_connection_closed(const std::string& reason) {
  if (connect_timer_) connect_timer_->cancel();
  if (idle_timer_) idle_timer_->cancel();
  if (connect_done_) {
    // Closed while connecting: abort the pending connect or handshake; its handler
    // reports the failure.
    boost::system::error_code ignored;
    if (socket_) socket_->close(ignored);
    if (tls_stream_) tls_stream_->lowest_layer().close(ignored);
  }
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
