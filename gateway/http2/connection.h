// The part of an HTTP/2 connection that server and client sides share: an nghttp2
// session over a Transport, the read loop, and write scheduling.
//
// Threading: a Connection lives on one worker's io_context; every method must be called
// on that thread. Lifetime: owned by shared_ptr; asynchronous handlers hold a reference.
//
// Re-entrancy rule (DESIGN.md §6): nghttp2_session_mem_send/mem_recv are only called
// from this class's own asio handlers, never from inside an nghttp2 callback. Everything
// another object may call (consume, resume_data, reset_stream, signal_write) only
// records work and schedules a write.
#pragma once

#include <nghttp2/nghttp2.h>

#include <boost/asio.hpp>

#include <memory>
#include <string>
#include <vector>

#include "http2/transport.h"
#include "http2/write_buffer.h"

namespace sparkgate::http2 {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(boost::asio::any_io_executor executor, std::string name);
  virtual ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Schedules a flush of whatever nghttp2 has to send. Safe from inside callbacks.
  void signal_write();
  // Returns `n` received bytes of `stream_id` to the peer's flow-control window (stream
  // and connection; connection only if the stream is gone). Safe from inside callbacks
  // of any connection: it only schedules the WINDOW_UPDATE.
  void consume(int32_t stream_id, size_t n);
  // Tells nghttp2 that a deferred body has data again. Safe from inside callbacks.
  void resume_data(int32_t stream_id);
  // Sends RST_STREAM with `error_code`. Safe from inside callbacks.
  void reset_stream(int32_t stream_id, uint32_t error_code);
  // Closes the connection now: every stream is told it is gone.
  void close(const std::string& reason);
  // Sends GOAWAY with `error_code` and `debug` as its debug data (last stream id: the
  // last one processed), then closes once everything queued is written, or after a
  // second if the peer does not read. Safe from inside callbacks.
  void goaway_and_close(uint32_t error_code, const std::string& debug, const std::string& reason);

  bool is_closed() const { return closed_; }
  const std::string& name() const { return name_; }
  boost::asio::any_io_executor executor() const { return executor_; }
  nghttp2_session* raw() const { return session_; }

 protected:
  // Starts reading; the transport and session_ must be set. With `write_first` false
  // nothing is sent until the peer's first bytes arrived (a server must not answer an
  // HTTP/1.x client with binary HTTP/2 frames).
  void start_io(bool write_first = true);
  // Called once when the connection is gone (EOF, error, or close()); the subclass tells
  // its streams. May run inside an asio handler, never inside an nghttp2 callback.
  virtual void on_connection_closed(const std::string& reason) = 0;
  // Lets the server side look at the very first bytes (HTTP/1.1 detection). Returns
  // false if it has taken over the connection.
  virtual bool on_first_read(const uint8_t* data, size_t n) { return true; }
  // Called after every batch of nghttp2 work, outside callbacks: the place to free
  // objects that callbacks released.
  virtual void after_nghttp2_call() {}
  // True when the connection has no open stream: its write buffer is given back once
  // everything is written.
  virtual bool has_no_streams() const { return false; }
  // Sends raw bytes (bypassing nghttp2) then closes. For non-HTTP/2 replies.
  void write_raw_and_close(std::string bytes, const std::string& reason);

  // The send_data callback's work: appends the DATA frame (header, then `length` body
  // bytes that take_body hands over from the stream's queue) to the write buffer.
  // Bodies are always announced with NGHTTP2_DATA_FLAG_NO_COPY: over TCP the payload is
  // then written from the queue's chunks by the gather write, with no copy at all (over
  // TLS copied once, into the write buffer), instead of through nghttp2's frame buffer and
  // again into ours. Returns 0, or NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE (nghttp2 then
  // resets the stream) when the stream no longer has those bytes.
  int send_data_frame(const nghttp2_frame* frame, const uint8_t* framehd, size_t length);
  // Appends exactly `n` queued body bytes of `stream_id`, announced earlier by the data
  // source's read callback, to `out` (WriteBuffer::append_shared for a queue's chunks)
  // and drops them from the queue. Called from inside nghttp2_session_mem_send. False when
  // the stream or its bytes are gone.
  virtual bool take_body(int32_t stream_id, WriteBuffer& out, size_t n) = 0;

  // nghttp2 callback: DATA frames as large as the peer's SETTINGS_MAX_FRAME_SIZE and the
  // windows allow, instead of nghttp2's fixed 16 KiB, to cut per-frame work on big streams.
  static ssize_t data_frame_length(nghttp2_session* session, uint8_t frame_type, int32_t stream_id,
                                   int32_t session_remote_window_size, int32_t stream_remote_window_size,
                                   uint32_t remote_max_frame_size, void* user_data);

  nghttp2_session* session_ = nullptr;
  std::unique_ptr<Transport> transport_;

 private:
  // The read loop: reads what has arrived (a few reads per wake, then yields to the
  // worker's other connections), and waits for readiness once the socket is empty.
  void on_readable();
  void wait_readable();
  // Feeds one read to nghttp2 and flushes what it produced. False if the connection ended.
  bool process_input(const uint8_t* data, size_t n);
  void do_write();
  void maybe_finish();
  // Lingering close, once the last frame (a GOAWAY) is written: the streams are told the
  // connection is gone, a FIN follows the GOAWAY, and what the peer still sends is read
  // and dropped until it closes too (or a second passes, or 1 MiB arrived). Closing with
  // unread input would send a TCP reset, and the peer could lose the GOAWAY with it.
  void arm_close_timer();
  void begin_linger();
  void linger_read();
  void end_linger();

  boost::asio::any_io_executor executor_;
  std::string name_;
  WriteBuffer out_;
  bool reading_started_ = false;
  bool first_read_ = true;
  bool writing_ = false;
  bool write_scheduled_ = false;
  bool closed_ = false;
  // goaway_and_close or a protocol error: close once the write buffer is flushed, for
  // this reason, by a lingering close; close_timer_ bounds the whole goodbye.
  bool close_after_write_ = false;
  bool lingering_ = false;
  bool read_waiting_ = false;  // an async_wait_readable is pending
  size_t lingered_bytes_ = 0;
  std::string close_reason_;
  std::unique_ptr<boost::asio::steady_timer> close_timer_;
};

}  // namespace sparkgate::http2
