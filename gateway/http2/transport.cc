#include "http2/transport.h"

namespace sparkgate::http2 {

std::string endpoint_string(const boost::asio::ip::tcp::socket& socket) {
  boost::system::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  if (ec) return "?";
  if (ep.address().is_v6()) return "[" + ep.address().to_string() + "]:" + std::to_string(ep.port());
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

TcpTransport::TcpTransport(boost::asio::ip::tcp::socket socket)
    : socket_(std::move(socket)), peer_(endpoint_string(socket_)) {}

void TcpTransport::async_read_some(boost::asio::mutable_buffer buf, Handler h) {
  socket_.async_read_some(buf, std::move(h));
}

void TcpTransport::async_write(boost::asio::const_buffer buf, Handler h) {
  boost::asio::async_write(socket_, buf, std::move(h));
}

void TcpTransport::close() {
  boost::system::error_code ec;
  socket_.shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
}

TlsTransport::TlsTransport(std::unique_ptr<Stream> stream)
    : stream_(std::move(stream)), peer_(endpoint_string(stream_->next_layer())) {}

void TlsTransport::async_read_some(boost::asio::mutable_buffer buf, Handler h) {
  stream_->async_read_some(buf, std::move(h));
}

void TlsTransport::async_write(boost::asio::const_buffer buf, Handler h) {
  boost::asio::async_write(*stream_, buf, std::move(h));
}

void TlsTransport::close() {
  // No TLS close_notify round trip: the HTTP/2 GOAWAY already ended the conversation.
  boost::system::error_code ec;
  stream_->next_layer().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
  stream_->next_layer().close(ec);
}

}  // namespace sparkgate::http2
