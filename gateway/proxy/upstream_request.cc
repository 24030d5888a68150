#include "proxy/upstream_request.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cassert>
#include <cctype>

#include "grpcwire/local_reply.h"

namespace sparkgate::proxy {

namespace {
std::string http2_error_name(uint32_t code) { return nghttp2_http2_strerror(code); }
}  // namespace

// ---- ConnectionPeer

void UpstreamRequest::ConnectionPeer::consume(size_t n) {
  if (auto c = conn.lock()) c->consume(id, n);
}
void UpstreamRequest::ConnectionPeer::resume() {
  if (auto c = conn.lock()) c->resume_data(id);
}
void UpstreamRequest::ConnectionPeer::reset(uint32_t code) {
  if (auto c = conn.lock()) c->reset_stream(id, code);
}

// ---- Accounting

UpstreamRequest::UpstreamRequest(DownstreamPeer& down, RelayEvents& events, uint64_t max_message_bytes,
                                 std::string_view rpc_name)
    : down_(down), events_(events), rpc_name_(rpc_name), resp_framer_(max_message_bytes) {}

UpstreamRequest::~UpstreamRequest() {
  // The downstream stream closes before its RpcStream dies, and that consumes the rest.
  assert(all_consumed());
}

bool UpstreamRequest::all_consumed() const {
  return req_.unconsumed == 0 && resp_.unconsumed == 0 && req_.consumed == req_.received &&
         resp_.consumed == resp_.received;
}

void UpstreamRequest::check([[maybe_unused]] const Direction& d) const {
  assert(d.queue.size() == d.unconsumed + d.added);
  assert(d.consumed + d.unconsumed == d.received);
}

void UpstreamRequest::receive(Direction& d, const uint8_t* data, size_t n) {
  d.queue.append(data, n);
  d.received += n;
  d.unconsumed += n;
  check(d);
}

void UpstreamRequest::consume(Direction& d, size_t n, StreamPeer* from) {
  if (n == 0) return;
  assert(n <= d.unconsumed);
  d.unconsumed -= n;
  d.consumed += n;
  if (from) from->consume(n);
}

void UpstreamRequest::forwarded(Direction& d, size_t n, StreamPeer* from) {
  // What the gateway wrote itself was never received: it is not the peer's to get back.
  size_t ours = std::min(n, d.added);
  d.added -= ours;
  consume(d, n - ours, from);
}

void UpstreamRequest::discard(Direction& d, StreamPeer* from) {
  forwarded(d, d.queue.size(), from);
  d.queue.release();
  check(d);
}

// ---- Request direction

int32_t UpstreamRequest::open(http2::ClientConnection& conn, const http2::HeaderMap& headers,
                              std::chrono::milliseconds idle_timeout, const std::shared_ptr<void>& owner,
                              std::string_view backend) {
  // Shares the owner's control block: the connection keeps the RpcStream (and so this
  // object) alive while it holds the stream; no allocation.
  std::shared_ptr<http2::ClientStreamHandler> handler(owner, this);
  int32_t id = conn.submit_request(headers, true, std::move(handler), idle_timeout);
  if (id < 0) return id;
  conn_peer_.conn = conn.shared_from_this();
  conn_peer_.id = id;
  attach(conn_peer_, backend);
  return id;
}

void UpstreamRequest::attach(StreamPeer& up, std::string_view backend) {
  up_ = &up;
  backend_ = backend;
  attached_ = true;
  upstream_open_ = true;
}

void UpstreamRequest::receive_request(const uint8_t* data, size_t n) { receive(req_, data, n); }

void UpstreamRequest::drop_request(size_t n) {
  req_.received += n;
  req_.unconsumed += n;
  consume(req_, n, down());
  check(req_);
}

void UpstreamRequest::resume_upstream() {
  if (forwarding() && upstream_open_) up_->resume();
}

std::string UpstreamRequest::take_request_head() {
  std::string head(req_.queue.size(), '\0');
  req_.queue.read(reinterpret_cast<uint8_t*>(head.data()), head.size());
  return head;
}

void UpstreamRequest::put_request_head(const std::string& head, int64_t delta) {
  req_.queue.append(reinterpret_cast<const uint8_t*>(head.data()), head.size());
  if (delta < 0) {
    // Received bytes the rewrite removed: they will never be forwarded.
    size_t removed = static_cast<size_t>(-delta);
    size_t ours = std::min(removed, req_.added);
    req_.added -= ours;
    consume(req_, removed - ours, down());
  } else {
    req_.added += static_cast<size_t>(delta);
  }
  check(req_);
}

ssize_t UpstreamRequest::request_body_length(size_t max, uint32_t* data_flags) {
  if (!forwarding()) {
    // The RPC ended locally and the upstream stream is being reset; never end it cleanly,
    // or the backend could act on a partial request.
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  size_t n = std::min(max, req_.queue.size());
  if (n == req_.queue.size()) {
    if (req_.ended) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    } else if (n == 0) {
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return static_cast<ssize_t>(n);
}

bool UpstreamRequest::take_request_body(http2::WriteBuffer& out, size_t n) {
  if (req_.queue.size() < n) return false;
  req_.queue.take(n, out);
  forwarded(req_, n, down());  // consume after forward
  if (req_.queue.empty() && req_.ended) req_.queue.release();
  check(req_);
  return true;
}

// ---- Response direction

void UpstreamRequest::on_response_headers(http2::HeaderMap headers, bool end_stream) {
  events_.on_backend_answered();
  if (!down_open_ || replied_) return;
  // Filtered in place: the backend's map goes on to the client without a copy.
  headers.erase_if([&](const http2::HeaderMap::Field& f) {
    if (http2::is_hop_by_hop(f.name)) return true;
    if (f.name == "grpc-status") status_ = grpcwire::parse_status(f.value);
    return false;
  });
  resp_headers_sent_ = true;
  if (end_stream) {
    // Trailers-only response: one HEADERS frame with END_STREAM, as the backend sent it.
    resp_.ended = true;
    upstream_done_ = true;
    down_.send_headers(headers, false);
    return;
  }
  down_.send_headers(headers, true);
}

void UpstreamRequest::on_response_data(const uint8_t* data, size_t n) {
  if (!down_open_ || replied_) {
    resp_.received += n;
    resp_.unconsumed += n;
    consume(resp_, n, up());
    return;
  }
  const uint64_t chunk_start = resp_offset_;
  auto err = resp_framer_.scan({data, n}, [&](const grpcwire::MessageHeader& h, size_t payload_offset) {
    if (resp_framer_.messages() == 1 && tap_) tap_->first_message(h, chunk_start + payload_offset);
  });
  resp_offset_ += n;
  if (tap_) tap_->chunk(data, n, chunk_start);
  if (err == grpcwire::FramerError::kTooLarge) {
    resp_.received += n;
    resp_.unconsumed += n;
    consume(resp_, n, up());
    events_.on_response_too_large();
    return;
  }
  if (resp_bytes_ == 0) first_response_ = std::chrono::steady_clock::now();
  resp_bytes_ += n;
  receive(resp_, data, n);
  down_.resume();
}

void UpstreamRequest::on_response_trailers(http2::HeaderMap trailers) {
  upstream_done_ = true;
  if (!down_open_ || replied_) return;
  trailers.erase_if([&](const http2::HeaderMap::Field& f) {
    if (f.name.empty() || f.name[0] == ':' || http2::is_hop_by_hop(f.name)) return true;
    if (f.name == "grpc-status") status_ = grpcwire::parse_status(f.value);
    return false;
  });
  if (status_ == grpcwire::StatusCode::kUnavailable) events_.on_backend_failed("the backend answered UNAVAILABLE");
  resp_trailers_ = std::move(trailers);
  resp_.ended = true;
  down_.resume();
}

void UpstreamRequest::on_upstream_closed(uint32_t error_code, const std::string& connection_error) {
  upstream_open_ = false;
  bool was_done = upstream_done_;
  upstream_done_ = true;
  if (!down_open_ || replied_ || was_done) return;
  if (error_code == NGHTTP2_REFUSED_STREAM && connection_error.empty() && !resp_headers_sent_) {
    // The backend did not process the stream (RFC 9113 §8.7); gRPC clients retry it
    // transparently.
    spdlog::debug("rpc={} backend={}: stream refused upstream; refusing downstream", rpc_name_, backend_);
    replied_ = true;
    down_.reset(NGHTTP2_REFUSED_STREAM);
    return;
  }
  if (!connection_error.empty()) events_.on_backend_failed(connection_error);
  std::string why = connection_error.empty() ? "reset the stream (HTTP/2 " + http2_error_name(error_code) + ")"
                                             : "closed the connection (" + connection_error + ")";
  events_.on_upstream_failed(
      {grpcwire::StatusCode::kUnavailable,
       "backend " + std::string(backend_) + " " + why + " during " + std::string(rpc_name_),
       {}});
}

bool UpstreamRequest::on_upstream_idle(std::chrono::milliseconds idle) {
  if (!forwarding() || !down_open_) return true;
  // The client is not reading (flow control holds the backend back), or has not finished
  // its request: the silence is not the backend's.
  if (!resp_.queue.empty() || (!req_.ended && req_.queue.empty())) return false;
  auto ms = idle.count();
  std::string took = ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
  spdlog::info("rpc={} backend={}: no bytes either way for {}; cancelling the stream (upstream.idle_timeout)",
               rpc_name_, backend_, took);
  events_.on_upstream_failed({grpcwire::StatusCode::kUnavailable,
                              "backend " + std::string(backend_) + " sent nothing for " + took + " during " +
                                  std::string(rpc_name_) + " (upstream.idle_timeout)",
                              {}});
  return true;
}

ssize_t UpstreamRequest::response_body_length(size_t max, uint32_t* data_flags) {
  size_t n = std::min(max, resp_.queue.size());
  if (n == resp_.queue.size()) {
    if (resp_.ended) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      if (resp_trailers_ && down_open_) {
        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        down_.send_trailers(*resp_trailers_);
        resp_trailers_.reset();
      }
    } else if (n == 0) {
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return static_cast<ssize_t>(n);
}

bool UpstreamRequest::take_response_body(http2::WriteBuffer& out, size_t n) {
  if (resp_.queue.size() < n) return false;
  resp_.queue.take(n, out);
  forwarded(resp_, n, up());  // consume after forward
  if (resp_.queue.empty() && resp_.ended) resp_.queue.release();
  check(resp_);
  return true;
}

// ---- Ends

void UpstreamRequest::cancel_upstream() {
  if (!upstream_open_) return;
  upstream_open_ = false;
  upstream_done_ = true;
  up_->reset(NGHTTP2_CANCEL);
}

void UpstreamRequest::reply(grpcwire::StatusCode code, const std::string& message) {
  if (replied_ || !down_open_) {
    // Answered already, or nobody to answer: still nothing more goes upstream.
    if (!replied_) {
      replied_ = true;
      cancel_upstream();
    }
    return;
  }
  replied_ = true;
  status_ = code;
  cancel_upstream();
  discard(req_, down());
  if (!resp_headers_sent_) {
    resp_headers_sent_ = true;
    resp_.ended = true;
    http2::HeaderMap h;
    grpcwire::add_trailers_only(h, code, message);
    down_.send_headers(h, false);
    return;
  }
  // Headers (and maybe messages) already went out: end with trailers. A message cut in
  // half is dropped rather than delivered torn.
  if (!resp_framer_.at_boundary()) {
    resp_bytes_ -= resp_.queue.size();
    discard(resp_, up());
  }
  http2::HeaderMap t;
  grpcwire::add_status_trailers(t, code, message);
  resp_trailers_ = std::move(t);
  resp_.ended = true;
  down_.resume();
}

void UpstreamRequest::reply_http(int http_status, grpcwire::StatusCode code, const std::string& message,
                                 std::optional<std::string_view> authority) {
  replied_ = true;
  status_ = code;
  if (!down_open_ || resp_headers_sent_) return;
  // Not a gRPC client (curl, a browser, a probe): the HTTP status and a short text that
  // says what this endpoint is, as a complete response with a body. The stream is left to
  // close the normal way (no RST_STREAM), as RFC 9113 section 8.1 lets a server answer
  // before the request ended. The client's :authority is echoed only when it looks like
  // host[:port].
  std::string where = "HOST:PORT";
  if (authority && !authority->empty() && authority->size() <= 255 &&
      std::all_of(authority->begin(), authority->end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '[' ||
               c == ']';
      })) {
    where = std::string(*authority);
  }
  const std::string body = std::to_string(http_status) + " " + message +
                           "\n\nThis is sparkgate, a gateway for Apache Spark Connect (gRPC over HTTP/2).\n"
                           "Connect with a Spark Connect client, e.g. PySpark:\n"
                           "  SparkSession.builder.remote(\"sc://" + where + "\").getOrCreate()\n";
  http2::HeaderMap h;
  h.add(":status", std::to_string(http_status));
  h.add("content-type", "text/plain; charset=utf-8");
  h.add("content-length", std::to_string(body.size()));
  resp_headers_sent_ = true;
  resp_.queue.append(reinterpret_cast<const uint8_t*>(body.data()), body.size());
  resp_.added += body.size();  // the gateway's own bytes: nothing to consume
  resp_.ended = true;
  check(resp_);
  down_.send_headers(h, true);
}

void UpstreamRequest::reply_message(const uint8_t* payload, size_t n) {
  replied_ = true;
  status_ = grpcwire::StatusCode::kOk;
  if (!down_open_ || resp_headers_sent_) return;
  http2::HeaderMap h;
  grpcwire::add_reply_headers(h);
  resp_headers_sent_ = true;
  const std::string prefix = grpcwire::encode_prefix(static_cast<uint32_t>(n));
  resp_.queue.append(reinterpret_cast<const uint8_t*>(prefix.data()), prefix.size());
  resp_.queue.append(payload, n);
  resp_.added += prefix.size() + n;  // the gateway's own bytes: nothing to consume
  http2::HeaderMap t;
  grpcwire::add_status_trailers(t, grpcwire::StatusCode::kOk, {});
  resp_trailers_ = std::move(t);
  resp_.ended = true;
  check(resp_);
  down_.send_headers(h, true);
}

void UpstreamRequest::downstream_closed() {
  // Whatever the client sent that never left is returned to the connection window.
  discard(req_, down());
  down_open_ = false;
  if (!upstream_done_ && upstream_open_) {
    spdlog::debug("rpc={} backend={}: client ended the stream early; cancelling upstream", rpc_name_,
                  backend_.empty() ? std::string_view("-") : backend_);
    cancel_upstream();
  }
  // Response bytes that will never be sent go back to the backend's window.
  discard(resp_, up());
}

}  // namespace sparkgate::proxy
