// A byte pipe under an HTTP/2 session: plain TCP or TLS. Single-threaded: every call
// and every completion runs on the owning worker's io_context.
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include <functional>
#include <memory>
#include <string>

namespace sparkgate::http2 {

class Transport {
 public:
  using Handler = std::function<void(const boost::system::error_code&, size_t)>;
  virtual ~Transport() = default;

  virtual void async_read_some(boost::asio::mutable_buffer buf, Handler h) = 0;
  // Writes all of `buf`; the buffer must stay valid until `h` runs.
  virtual void async_write(boost::asio::const_buffer buf, Handler h) = 0;
  // Closes the socket; pending operations complete with operation_aborted.
  virtual void close() = 0;
  // The peer's address as "ip:port", for logs.
  virtual const std::string& peer() const = 0;
};

class TcpTransport final : public Transport {
 public:
  explicit TcpTransport(boost::asio::ip::tcp::socket socket);
  void async_read_some(boost::asio::mutable_buffer buf, Handler h) override;
  void async_write(boost::asio::const_buffer buf, Handler h) override;
  void close() override;
  const std::string& peer() const override { return peer_; }

 private:
  boost::asio::ip::tcp::socket socket_;
  std::string peer_;
};

// Takes a stream whose handshake has already completed.
class TlsTransport final : public Transport {
 public:
  using Stream = boost::asio::ssl::stream<boost::asio::ip::tcp::socket>;
  explicit TlsTransport(std::unique_ptr<Stream> stream);
  void async_read_some(boost::asio::mutable_buffer buf, Handler h) override;
  void async_write(boost::asio::const_buffer buf, Handler h) override;
  void close() override;
  const std::string& peer() const override { return peer_; }

 private:
  std::unique_ptr<Stream> stream_;
  std::string peer_;
};

// "ip:port" of a connected socket, or "?" if it has none.
std::string endpoint_string(const boost::asio::ip::tcp::socket& socket);

}  // namespace sparkgate::http2
