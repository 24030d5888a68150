#include "http2/connection.h"

#include <spdlog/spdlog.h>

namespace sparkgate::http2 {

namespace {
// mem_send output is batched into one socket write up to about this size.
constexpr size_t kWriteBatchBytes = 256 * 1024;
// An idle connection keeps at most this much of its write buffer.
constexpr size_t kIdleWriteBufferBytes = 16 * 1024;
// Reads per turn before the worker's other handlers run: one, so that what a read
// brought in is written to the other side while it is still in the CPU caches.
constexpr int kReadsPerWake = 1;
constexpr size_t kFrameHeaderBytes = 9;
}  // namespace

Connection::Connection(boost::asio::any_io_executor executor, std::string name)
    : executor_(std::move(executor)), name_(std::move(name)) {}

Connection::~Connection() {
  if (session_) nghttp2_session_del(session_);
}

ssize_t Connection::data_frame_length(nghttp2_session*, uint8_t, int32_t, int32_t session_remote_window_size,
                                   int32_t stream_remote_window_size, uint32_t remote_max_frame_size, void*) {
  // nghttp2 allocates a buffer for a whole frame, so a peer advertising 16 MiB frames
  // must not make us build 16 MiB frames.
  constexpr int64_t kMaxDataFrame = 128 * 1024;
  int64_t n = std::min<int64_t>(
      {session_remote_window_size, stream_remote_window_size, remote_max_frame_size, kMaxDataFrame});
  return static_cast<ssize_t>(std::max<int64_t>(n, 1));
}

void Connection::start_io(bool write_first) {
  reading_started_ = true;
  out_.set_in_place(transport_->writes_in_place());
  // Read before waiting: bytes that arrived before the socket was first polled raised
  // their edge already.
  on_readable();
  if (write_first) signal_write();
}

void Connection::signal_write() {
  if (closed_ || write_scheduled_ || writing_) return;
  write_scheduled_ = true;
  boost::asio::post(executor_, [self = shared_from_this()] {
    self->write_scheduled_ = false;
    self->do_write();
  });
}

void Connection::consume(int32_t stream_id, size_t n) {
  if (closed_ || n == 0) return;
  int rv = nghttp2_session_consume(session_, stream_id, n);
  if (rv != 0) {
    // Only fails for stream 0 or when the window would overflow: both are our bugs.
    spdlog::error("{}: nghttp2_session_consume({}, {}) failed: {}", name_, stream_id, n, nghttp2_strerror(rv));
  }
  signal_write();
}

void Connection::resume_data(int32_t stream_id) {
  if (closed_) return;
  // Fails harmlessly when the stream has no deferred data or is already gone.
  nghttp2_session_resume_data(session_, stream_id);
  signal_write();
}

void Connection::reset_stream(int32_t stream_id, uint32_t error_code) {
  if (closed_) return;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id, error_code);
  signal_write();
}

void Connection::on_readable() {
  for (int i = 0; i < kReadsPerWake; ++i) {
    if (closed_) return;
    boost::system::error_code ec;
    auto data = transport_->read_available(ec);
    if (ec == boost::asio::error::would_block) {
      wait_readable();
      return;
    }
    if (ec) {
      close(ec == boost::asio::error::eof ? "peer closed the connection" : ec.message());
      return;
    }
    if (!process_input(data.data(), data.size())) return;
  }
  // More may be waiting; continue after the worker's other ready handlers.
  boost::asio::post(executor_, [self = shared_from_this()] {
    if (!self->closed_) self->on_readable();
  });
}

void Connection::wait_readable() {
  read_waiting_ = true;
  transport_->async_wait_readable([self = shared_from_this()](const boost::system::error_code& ec) {
    self->read_waiting_ = false;
    if (self->lingering_) {
      if (ec) {
        self->end_linger();
      } else {
        self->linger_read();
      }
      return;
    }
    if (self->closed_) return;
    if (ec) {
      self->close(ec.message());
      return;
    }
    self->on_readable();
  });
}

bool Connection::process_input(const uint8_t* data, size_t n) {
  if (first_read_) {
    first_read_ = false;
    if (!on_first_read(data, n)) return false;
  }
  ssize_t rv = nghttp2_session_mem_recv(session_, data, n);
  after_nghttp2_call();
  if (rv < 0) {
    spdlog::debug("{}: HTTP/2 protocol error: {}", name_, nghttp2_strerror(static_cast<int>(rv)));
    // A fatal error leaves the GOAWAY to us (nghttp2 queues one itself only for the
    // errors it handles inside mem_recv): flush it, then a lingering close. No more input
    // is processed.
    const bool flood = rv == NGHTTP2_ERR_FLOODED || rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS;
    nghttp2_session_terminate_session(session_, flood ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR);
    close_after_write_ = true;
    close_reason_ = std::string("HTTP/2 error: ") + nghttp2_strerror(static_cast<int>(rv));
    arm_close_timer();
    do_write();
    return false;
  }
  do_write();
  return !closed_;
}

int Connection::send_data_frame(const nghttp2_frame* frame, const uint8_t* framehd, size_t length) {
  // Padding is never requested (no select_padding callback), so a DATA frame is exactly
  // its header and its payload.
  if (frame->data.padlen != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
  const WriteBuffer::Mark before = out_.mark();
  out_.append(framehd, kFrameHeaderBytes);
  if (!take_body(frame->hd.stream_id, out_, length) || out_.size() != before.size + kFrameHeaderBytes + length) {
    out_.rollback(before);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  return 0;
}

void Connection::do_write() {
  if (closed_ || writing_) return;
  out_.clear();
  while (out_.size() < kWriteBatchBytes) {
    const uint8_t* data = nullptr;
    // WARNING: runs nghttp2 callbacks (send_data_frame appends DATA frames to out_ from
    // inside this call; frames returned here are appended after it, which keeps order).
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      after_nghttp2_call();
      close(std::string("HTTP/2 send error: ") + nghttp2_strerror(static_cast<int>(n)));
      return;
    }
    if (n == 0) break;
    out_.append(data, static_cast<size_t>(n));
  }
  after_nghttp2_call();
  if (out_.empty()) {
    if (close_after_write_) {
      begin_linger();
      return;
    }
    // A connection without streams gives its write buffer back (to the thread's lists
    // when it is small): an idle connection holds none.
    out_.trim(has_no_streams() ? 0 : kIdleWriteBufferBytes);
    maybe_finish();
    return;
  }
  writing_ = true;
  // One gather write: frames from the buffer, large payloads from their chunks.
  transport_->async_write(out_.buffers(),
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

void Connection::maybe_finish() {
  if (!reading_started_) return;
  if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) {
    close("HTTP/2 session finished");
  }
}

void Connection::write_raw_and_close(std::string bytes, const std::string& reason) {
  out_.clear();
  out_.append(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  writing_ = true;
  transport_->async_write(out_.buffers(),
                          [self = shared_from_this(), reason](const boost::system::error_code&, size_t) {
                            self->writing_ = false;
                            self->close(reason);
                          });
}

void Connection::goaway_and_close(uint32_t error_code, const std::string& debug, const std::string& reason) {
  if (closed_ || close_after_write_) return;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_), error_code,
                        reinterpret_cast<const uint8_t*>(debug.data()), debug.size());
  close_after_write_ = true;
  close_reason_ = reason;
  arm_close_timer();
  signal_write();
}

void Connection::arm_close_timer() {
  close_timer_ = std::make_unique<boost::asio::steady_timer>(executor_, std::chrono::seconds(1));
  close_timer_->async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    if (ec) return;
    auto self = weak.lock();
    if (!self) return;
    if (self->lingering_) {
      self->end_linger();
    } else {
      self->close(self->close_reason_ + " (the peer did not read the GOAWAY)");
    }
  });
}

void Connection::begin_linger() {
  if (closed_) return;
  closed_ = true;
  lingering_ = true;
  spdlog::debug("{}: connection closing: {}", name_, close_reason_);
  on_connection_closed(close_reason_);
  after_nghttp2_call();
  transport_->shutdown_send();
  // A wait of the read loop may be pending; its handler continues the linger.
  if (!read_waiting_) linger_read();
}

void Connection::linger_read() {
  constexpr size_t kMaxLingerBytes = 1 << 20;
  while (lingering_) {
    boost::system::error_code ec;
    auto data = transport_->read_available(ec);
    if (ec == boost::asio::error::would_block) {
      wait_readable();
      return;
    }
    lingered_bytes_ += data.size();
    if (ec || lingered_bytes_ > kMaxLingerBytes) end_linger();
  }
}

void Connection::end_linger() {
  if (!lingering_) return;
  lingering_ = false;
  if (close_timer_) close_timer_->cancel();
  transport_->close();
}

void Connection::close(const std::string& reason) {
  if (closed_) {
    if (lingering_) end_linger();  // stop waiting for the peer's side
    return;
  }
  closed_ = true;
  if (close_timer_) close_timer_->cancel();
  spdlog::debug("{}: connection closed: {}", name_, reason);
  if (transport_) transport_->close();
  on_connection_closed(reason);
  after_nghttp2_call();
}

}  // namespace sparkgate::http2
