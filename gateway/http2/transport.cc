#include "http2/transport.h"

namespace sparkgate::http2 {

namespace {
// The per-thread read buffer of plain-TCP connections; it costs an idle connection
// nothing. 64 KiB, not more: each read is copied twice more (into a stream's queue, then
// into the other side's write buffer) and those copies stay in the CPU caches. 256 KiB
// reads cost 40% more CPU per GiB streamed than 64 KiB ones (tests/bench/RESULTS.md).
constexpr size_t kThreadReadBufferBytes = 64 * 1024;
// A TLS connection's own buffer: a little more than one TLS record.
constexpr size_t kTlsReadBufferBytes = 17 * 1024;

std::span<uint8_t> thread_read_buffer() {
  thread_local std::unique_ptr<uint8_t[]> buf = std::make_unique_for_overwrite<uint8_t[]>(kThreadReadBufferBytes);
  return {buf.get(), kThreadReadBufferBytes};
}
}  // namespace

std::string endpoint_string(const boost::asio::ip::tcp::socket& socket) {
  boost::system::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  if (ec) return "?";
  // Appended piece by piece: g++ 12 at -O3 reports a false -Wrestrict on
  // `"literal" + std::string&&`, and release builds use -Werror.
  const bool v6 = ep.address().is_v6();
  std::string out;
  out.reserve(48);
  if (v6) out += '[';
  out += ep.address().to_string();
  if (v6) out += ']';
  out += ':';
  out += std::to_string(ep.port());
  return out;
}

TcpTransport::TcpTransport(boost::asio::ip::tcp::socket socket)
    : socket_(std::move(socket)), peer_(endpoint_string(socket_)) {
  boost::system::error_code ignored;
  socket_.non_blocking(true, ignored);
}

std::span<const uint8_t> TcpTransport::read_available(boost::system::error_code& ec) {
  auto buf = thread_read_buffer();
  size_t n = socket_.read_some(boost::asio::buffer(buf.data(), buf.size()), ec);
  if (ec == boost::asio::error::try_again) ec = boost::asio::error::would_block;
  if (ec) return {};
  return {buf.data(), n};
}

void TcpTransport::async_wait_readable(WaitHandler h) {
  socket_.async_wait(boost::asio::socket_base::wait_read, std::move(h));
}

void TcpTransport::async_write(std::span<const boost::asio::const_buffer> bufs, Handler h) {
  boost::asio::async_write(socket_, bufs, std::move(h));
}

void TcpTransport::close() {
  boost::system::error_code ec;
  socket_.shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
}

void TcpTransport::shutdown_send() {
  boost::system::error_code ec;
  socket_.shutdown(boost::asio::ip::tcp::socket::shutdown_send, ec);
}

TlsTransport::TlsTransport(std::unique_ptr<Stream> stream)
    : stream_(std::move(stream)), peer_(endpoint_string(stream_->next_layer())) {}

std::span<const uint8_t> TlsTransport::read_available(boost::system::error_code& ec) {
  if (have_ > 0) {
    size_t n = have_;
    have_ = 0;
    ec = {};
    return {buf_.get(), n};
  }
  if (read_ec_) {
    ec = read_ec_;
    return {};
  }
  ec = boost::asio::error::would_block;
  return {};
}

void TlsTransport::async_wait_readable(WaitHandler h) {
  if (read_pending_) return;  // one read at a time; the connection never asks twice
  if (!buf_) buf_ = std::make_unique_for_overwrite<uint8_t[]>(kTlsReadBufferBytes);
  read_pending_ = true;
  stream_->async_read_some(boost::asio::buffer(buf_.get(), kTlsReadBufferBytes),
                           [this, h = std::move(h)](const boost::system::error_code& ec, size_t n) {
                             // `h` holds the connection, which owns this transport.
                             read_pending_ = false;
                             have_ = n;
                             if (ec && ec != boost::asio::error::operation_aborted) read_ec_ = ec;
                             h(ec == boost::asio::error::operation_aborted ? ec : boost::system::error_code{});
                           });
}

void TlsTransport::async_write(std::span<const boost::asio::const_buffer> bufs, Handler h) {
  boost::asio::async_write(*stream_, bufs, std::move(h));
}

void TlsTransport::close() {
  // No TLS close_notify round trip: the HTTP/2 GOAWAY already ended the conversation.
  boost::system::error_code ec;
  stream_->next_layer().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
  stream_->next_layer().close(ec);
}

void TlsTransport::shutdown_send() {
  // A FIN under the TLS layer, without close_notify: the GOAWAY said goodbye.
  boost::system::error_code ec;
  stream_->next_layer().shutdown(boost::asio::ip::tcp::socket::shutdown_send, ec);
}

}  // namespace sparkgate::http2
