#include "upstream/unary_call.h"

#include <boost/asio.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <memory>

#include "grpcwire/framer.h"
#include "grpcwire/status.h"

namespace sparkgate::upstream {

namespace {

class UnaryCall final : public http2::ClientStreamHandler, public std::enable_shared_from_this<UnaryCall> {
 public:
  UnaryCall(http2::ClientConnection& connection, std::string body, std::chrono::milliseconds timeout,
            std::function<void(UnaryResult)> done)
      : connection_(std::static_pointer_cast<http2::ClientConnection>(connection.shared_from_this())),
        executor_(connection.executor()),
        body_(std::move(body)),
        timeout_(timeout),
        timer_(executor_),
        done_(std::move(done)) {}

  void start(int32_t stream_id) {
    stream_id_ = stream_id;
    timer_.expires_after(timeout_);
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->on_timeout();
    });
  }

  // Fails the call without a stream (it could not be opened).
  void fail(std::string error) {
    UnaryResult r;
    r.transport_error = std::move(error);
    finish(std::move(r));
  }

  void on_response_headers(http2::HeaderMap headers, bool end_stream) override {
    if (auto status = headers.find(":status")) http_status_ = *status;
    if (end_stream) take_status(headers);  // trailers-only response
  }

  void on_response_data(const uint8_t* data, size_t n) override {
    // WARNING: runs inside an nghttp2 callback; consume() only schedules the update.
    if (auto s = connection_.lock()) s->consume(stream_id_, n);
    if (have_message_ || !response_error_.empty()) return;
    response_.append(reinterpret_cast<const char*>(data), n);
    if (response_.size() < grpcwire::kPrefixBytes) return;
    const auto* p = reinterpret_cast<const uint8_t*>(response_.data());
    const uint32_t length = (uint32_t{p[1]} << 24) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 8) | p[4];
    if (p[0] != 0) {
      response_error_ = "the response message is compressed, which the gateway did not ask for";
    } else if (length > kMaxUnaryResponseBytes) {
      response_error_ = "the response message of " + std::to_string(length) + " bytes exceeds the limit of " +
                        std::to_string(kMaxUnaryResponseBytes) + " bytes";
    } else if (response_.size() >= grpcwire::kPrefixBytes + length) {
      response_ = response_.substr(grpcwire::kPrefixBytes, length);
      have_message_ = true;
      return;
    } else {
      return;
    }
    response_.clear();
  }

  void on_response_trailers(http2::HeaderMap trailers) override { take_status(trailers); }

  void on_upstream_closed(uint32_t error_code, const std::string& connection_error) override {
    UnaryResult r;
    if (!response_error_.empty()) {
      r.transport_error = response_error_;
    } else if (!status_.empty()) {
      int code = -1;
      auto [end, ec] = std::from_chars(status_.data(), status_.data() + status_.size(), code);
      if (ec != std::errc() || end != status_.data() + status_.size()) {
        r.transport_error = "invalid grpc-status '" + status_ + "'";
      } else if (code == 0 && !response_.empty() && !have_message_) {
        r.transport_error = "the response message was truncated";
      } else {
        r.transport_ok = true;
        r.grpc_status = code;
        r.grpc_message = grpcwire::percent_decode(message_);
        if (have_message_) r.response_message = std::move(response_);
      }
    } else if (!connection_error.empty()) {
      r.transport_error = "connection lost: " + connection_error;
    } else if (error_code != 0) {
      r.transport_error = std::string("stream reset by the backend (") + nghttp2_http2_strerror(error_code) + ")";
    } else if (!http_status_.empty() && http_status_ != "200") {
      r.transport_error = "HTTP status " + http_status_ + " without grpc-status";
    } else {
      r.transport_error = "the response ended without grpc-status";
    }
    finish(std::move(r));
  }

  ssize_t request_body_length(size_t max, uint32_t* data_flags) override {
    const size_t n = std::min(max, body_.size() - body_sent_);
    if (n == body_.size() - body_sent_) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }

  bool take_request_body(http2::WriteBuffer& out, size_t n) override {
    if (body_.size() - body_sent_ < n) return false;
    out.append(reinterpret_cast<const uint8_t*>(body_.data()) + body_sent_, n);
    body_sent_ += n;
    return true;
  }

 private:
  void take_status(const http2::HeaderMap& headers) {
    if (auto status = headers.find("grpc-status")) status_ = *status;
    if (auto message = headers.find("grpc-message")) message_ = *message;
  }

  void on_timeout() {
    if (finished_) return;
    if (auto s = connection_.lock()) s->reset_stream(stream_id_, NGHTTP2_CANCEL);
    UnaryResult r;
    r.timed_out = true;
    r.transport_error = "timed out after " + std::to_string(timeout_.count()) + " ms";
    finish(std::move(r));
  }

  void finish(UnaryResult result) {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    // Posted: the caller may be inside unary_call() or an nghttp2 callback.
    boost::asio::post(executor_, [done = std::move(done_), result = std::move(result)]() mutable {
      done(std::move(result));
    });
  }

  std::weak_ptr<http2::ClientConnection> connection_;
  boost::asio::any_io_executor executor_;
  std::string body_;  // prefix + message
  size_t body_sent_ = 0;
  std::chrono::milliseconds timeout_;
  boost::asio::steady_timer timer_;
  std::function<void(UnaryResult)> done_;
  int32_t stream_id_ = -1;
  bool finished_ = false;
  std::string http_status_;
  std::string status_;
  std::string message_;
  std::string response_;  // the first message: prefix and payload until complete, then payload
  bool have_message_ = false;
  std::string response_error_;
};

}  // namespace

void unary_call(http2::ClientConnection& connection, const std::string& path, const http2::HeaderMap& extra_headers,
                std::string request_message, std::chrono::milliseconds timeout,
                std::function<void(UnaryResult)> done) {
  std::string body = grpcwire::encode_prefix(static_cast<uint32_t>(request_message.size()));
  body += request_message;
  auto call = std::make_shared<UnaryCall>(connection, std::move(body), timeout, std::move(done));
  if (!connection.is_connected() || connection.is_closed()) {
    call->fail("the connection to " + connection.backend() + " is not open");
    return;
  }
  http2::HeaderMap headers;
  headers.add(":method", "POST");
  headers.add(":scheme", connection.is_tls() ? "https" : "http");
  headers.add(":path", path);
  headers.add(":authority", connection.backend());
  headers.add("content-type", "application/grpc");
  headers.add("te", "trailers");
  // No grpc-timeout: the server would race our own timer with DEADLINE_EXCEEDED, and the
  // caller's contract is one outcome, "timed out after N ms", at the deadline.
  for (const auto& [name, value] : extra_headers.fields()) headers.add(name, value);
  const int32_t id = connection.submit_request(headers, true, call);
  if (id < 0) {
    call->fail(std::string("cannot open a stream to ") + connection.backend() + ": " + nghttp2_strerror(id));
    return;
  }
  call->start(id);
}

}  // namespace sparkgate::upstream
