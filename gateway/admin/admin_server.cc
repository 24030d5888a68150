#include "admin/admin_server.h"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

namespace sparkgate::admin {

namespace beast = boost::beast;
namespace http = beast::http;
using boost::asio::awaitable;
using boost::asio::use_awaitable;

AdminServer::AdminServer(config::Endpoint address, AdminHooks hooks)
    : address_(std::move(address)), hooks_(std::move(hooks)), acceptor_(io_) {}

AdminServer::~AdminServer() { stop(); }

bool AdminServer::start(std::string& error) {
  boost::system::error_code ec;
  auto ip = boost::asio::ip::make_address(address_.host, ec);
  if (ec) {
    error = "admin address '" + address_.host + "' is not an IP address";
    return false;
  }
  boost::asio::ip::tcp::endpoint ep(ip, address_.port);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(boost::asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(64, ec);
  if (ec) {
    error = "cannot listen on admin address " + address_.to_string() + ": " + ec.message();
    return false;
  }
  boost::asio::co_spawn(io_, accept_loop(), boost::asio::detached);
  thread_ = std::thread([this] { io_.run(); });
  return true;
}

void AdminServer::stop() {
  if (!thread_.joinable()) return;
  boost::asio::post(io_, [this] {
    boost::system::error_code ec;
    acceptor_.close(ec);
    io_.stop();
  });
  thread_.join();
}

awaitable<void> AdminServer::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(boost::asio::as_tuple(use_awaitable));
    if (ec) {
      if (!acceptor_.is_open()) co_return;
      continue;
    }
    boost::asio::co_spawn(io_, serve(std::move(socket)), boost::asio::detached);
  }
}

awaitable<void> AdminServer::serve(boost::asio::ip::tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer(8192);
  for (;;) {
    stream.expires_after(std::chrono::seconds(30));
    http::request_parser<http::empty_body> parser;
    parser.header_limit(16 * 1024);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, boost::asio::as_tuple(use_awaitable));
    if (ec) co_return;
    const auto& req = parser.get();
    http::response<http::string_body> res;
    res.version(req.version());
    res.keep_alive(req.keep_alive());
    res.set(http::field::content_type, "text/plain");
    std::string target(req.target());
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      res.result(http::status::method_not_allowed);
      res.body() = "only GET is supported\n";
    } else if (target == "/healthz") {
      res.result(http::status::ok);
      res.body() = "ok\n";
    } else if (target == "/readyz") {
      bool ready = hooks_.ready && hooks_.ready();
      res.result(ready ? http::status::ok : http::status::service_unavailable);
      res.body() = ready ? "ready\n" : "not ready (draining)\n";
    } else if (target == "/metrics" && hooks_.metrics) {
      res.result(http::status::ok);
      res.set(http::field::content_type, "text/plain; version=0.0.4");
      res.body() = hooks_.metrics();
    } else {
      res.result(http::status::not_found);
      res.body() = "unknown admin path " + target + " (try /healthz, /readyz or /metrics)\n";
    }
    res.prepare_payload();
    auto [wec, wn] = co_await http::async_write(stream, res, boost::asio::as_tuple(use_awaitable));
    if (wec || !res.keep_alive()) co_return;
  }
}

}  // namespace sparkgate::admin
