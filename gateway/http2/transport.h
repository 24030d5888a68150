// A byte pipe under an HTTP/2 connection: plain TCP or TLS. Single-threaded: every call
// and every completion runs on the owning worker's io_context.
//
// Reads are readiness-based: the connection asks for what has arrived (read_available) and,
// when nothing has, waits (async_wait_readable). The bytes come in a buffer that the
// transport owns, so an idle plain-TCP connection holds no read buffer at all: TCP
// transports read into one buffer per thread, shared by every connection of a worker.
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

namespace sparkgate::http2 {

class Transport {
 public:
  using Handler = std::function<void(const boost::system::error_code&, size_t)>;
  using WaitHandler = std::function<void(const boost::system::error_code&)>;
  virtual ~Transport() = default;

  // Returns the bytes that have arrived, without blocking. The span points into a buffer
  // that the transport lends: it is valid until the next read_available call on any
  // transport of this thread. An empty span comes with `ec` set: would_block when nothing
  // has arrived yet (then call async_wait_readable), eof or another error at the end.
  virtual std::span<const uint8_t> read_available(boost::system::error_code& ec) = 0;
  // Calls `h` once bytes may be available. Only call it after read_available reported
  // would_block in the same handler: the socket is edge-triggered, so readiness that
  // arrived before would not be reported again.
  virtual void async_wait_readable(WaitHandler h) = 0;
  // Writes all of `bufs`, in order (one gather write where the transport can); the list
  // and the bytes must stay valid until `h` runs.
  virtual void async_write(std::span<const boost::asio::const_buffer> bufs, Handler h) = 0;
  // True when a gather write reaches the socket as it is: then payloads are written from
  // where they lie (write_buffer.h) instead of being copied next to their frame headers.
  virtual bool writes_in_place() const { return false; }
  // Closes the socket; pending operations complete with operation_aborted.
  virtual void close() = 0;
  // Sends FIN after what was written (reading stays open), for a lingering close.
  virtual void shutdown_send() = 0;
  // The peer's address as "ip:port", for logs.
  virtual const std::string& peer() const = 0;
};

class TcpTransport final : public Transport {
 public:
  explicit TcpTransport(boost::asio::ip::tcp::socket socket);
  std::span<const uint8_t> read_available(boost::system::error_code& ec) override;
  void async_wait_readable(WaitHandler h) override;
  void async_write(std::span<const boost::asio::const_buffer> bufs, Handler h) override;
  bool writes_in_place() const override { return true; }
  void close() override;
  void shutdown_send() override;
  const std::string& peer() const override { return peer_; }

 private:
  boost::asio::ip::tcp::socket socket_;
  std::string peer_;
};

// Takes a stream whose handshake has already completed. OpenSSL decrypts into a buffer
// of this connection's own (allocated on the first read), since a TLS record cannot be
// read half now and half later from a buffer shared with other connections.
class TlsTransport final : public Transport {
 public:
  using Stream = boost::asio::ssl::stream<boost::asio::ip::tcp::socket>;
  explicit TlsTransport(std::unique_ptr<Stream> stream);
  std::span<const uint8_t> read_available(boost::system::error_code& ec) override;
  void async_wait_readable(WaitHandler h) override;
  void async_write(std::span<const boost::asio::const_buffer> bufs, Handler h) override;
  void close() override;
  void shutdown_send() override;
  const std::string& peer() const override { return peer_; }

 private:
  std::unique_ptr<Stream> stream_;
  std::string peer_;
  std::unique_ptr<uint8_t[]> buf_;
  size_t have_ = 0;                   // decrypted bytes waiting in buf_
  boost::system::error_code read_ec_;  // how the last read ended, reported once
  bool read_pending_ = false;
};

// "ip:port" of a connected socket, or "?" if it has none.
std::string endpoint_string(const boost::asio::ip::tcp::socket& socket);

}  // namespace sparkgate::http2
