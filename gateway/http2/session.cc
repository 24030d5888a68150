#include "http2/session.h"

#include <spdlog/spdlog.h>

namespace sparkgate::http2 {

namespace {
// One read hands nghttp2 at most this much; enough for a full default window burst.
constexpr size_t kReadBufferBytes = 64 * 1024;
// mem_send output is batched into one socket write up to about this size.
constexpr size_t kWriteBatchBytes = 256 * 1024;
}  // namespace

Session::Session(boost::asio::any_io_executor executor, std::string name)
    : executor_(std::move(executor)), name_(std::move(name)) {}

Session::~Session() {
  if (session_) nghttp2_session_del(session_);
}

ssize_t Session::data_frame_length(nghttp2_session*, uint8_t, int32_t, int32_t session_remote_window_size,
                                   int32_t stream_remote_window_size, uint32_t remote_max_frame_size, void*) {
  // nghttp2 allocates a buffer for a whole frame, so a peer advertising 16 MiB frames
  // must not make us build 16 MiB frames.
  constexpr int64_t kMaxDataFrame = 128 * 1024;
  int64_t n = std::min<int64_t>(
      {session_remote_window_size, stream_remote_window_size, remote_max_frame_size, kMaxDataFrame});
  return static_cast<ssize_t>(std::max<int64_t>(n, 1));
}

void Session::start_io(bool write_first) {
  read_buf_.resize(kReadBufferBytes);
  reading_started_ = true;
  do_read();
  if (write_first) signal_write();
}

void Session::signal_write() {
  if (closed_ || write_scheduled_ || writing_) return;
  write_scheduled_ = true;
  boost::asio::post(executor_, [self = shared_from_this()] {
    self->write_scheduled_ = false;
    self->do_write();
  });
}

void Session::consume(int32_t stream_id, size_t n) {
  if (closed_ || n == 0) return;
  int rv = nghttp2_session_consume(session_, stream_id, n);
  if (rv != 0) {
    // Only fails for stream 0 or when the window would overflow: both are our bugs.
    spdlog::error("{}: nghttp2_session_consume({}, {}) failed: {}", name_, stream_id, n, nghttp2_strerror(rv));
  }
  signal_write();
}

void Session::resume_data(int32_t stream_id) {
  if (closed_) return;
  // Fails harmlessly when the stream has no deferred data or is already gone.
  nghttp2_session_resume_data(session_, stream_id);
  signal_write();
}

void Session::reset_stream(int32_t stream_id, uint32_t error_code) {
  if (closed_) return;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id, error_code);
  signal_write();
}

void Session::do_read() {
  if (closed_) return;
  transport_->async_read_some(
      boost::asio::buffer(read_buf_), [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
        if (self->closed_) return;
        if (ec) {
          self->close(ec == boost::asio::error::eof ? "peer closed the connection" : ec.message());
          return;
        }
        if (self->first_read_) {
          self->first_read_ = false;
          if (!self->on_first_read(self->read_buf_.data(), n)) return;
        }
        ssize_t rv = nghttp2_session_mem_recv(self->session_, self->read_buf_.data(), n);
        self->after_nghttp2_call();
        if (rv < 0) {
          spdlog::debug("{}: HTTP/2 protocol error: {}", self->name_, nghttp2_strerror(static_cast<int>(rv)));
          // nghttp2 has queued a GOAWAY for most errors; flush it, then close.
          self->do_write();
          self->close(std::string("HTTP/2 error: ") + nghttp2_strerror(static_cast<int>(rv)));
          return;
        }
        self->do_write();
        self->do_read();
      });
}

void Session::do_write() {
  if (closed_ || writing_) return;
  out_buf_.clear();
  while (out_buf_.size() < kWriteBatchBytes) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      after_nghttp2_call();
      close(std::string("HTTP/2 send error: ") + nghttp2_strerror(static_cast<int>(n)));
      return;
    }
    if (n == 0) break;
    out_buf_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  after_nghttp2_call();
  if (out_buf_.empty()) {
    maybe_finish();
    return;
  }
  writing_ = true;
  transport_->async_write(boost::asio::buffer(out_buf_),
                          [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
                            self->writing_ = false;
                            if (self->closed_) return;
                            if (ec) {
                              self->close("write failed: " + ec.message());
                              return;
                            }
                            self->do_write();
                          });
}

void Session::maybe_finish() {
  if (!reading_started_) return;
  if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) {
    close("HTTP/2 session finished");
  }
}

void Session::write_raw_and_close(std::string bytes, const std::string& reason) {
  out_buf_ = std::move(bytes);
  writing_ = true;
  transport_->async_write(boost::asio::buffer(out_buf_),
                          [self = shared_from_this(), reason](const boost::system::error_code&, size_t) {
                            self->writing_ = false;
                            self->close(reason);
                          });
}

void Session::close(const std::string& reason) {
  if (closed_) return;
  closed_ = true;
  spdlog::debug("{}: connection closed: {}", name_, reason);
  if (transport_) transport_->close();
  on_connection_closed(reason);
  after_nghttp2_call();
}

}  // namespace sparkgate::http2
