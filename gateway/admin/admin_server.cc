#include "admin/admin_server.h"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include "admin/api.h"

namespace sparkgate::admin {

namespace beast = boost::beast;
namespace http = beast::http;
using boost::asio::awaitable;
using boost::asio::use_awaitable;

AdminServer::AdminServer(config::Endpoint address, routing::Router& router, std::string token, AdminHooks hooks)
    : address_(std::move(address)), router_(router), token_(std::move(token)), hooks_(std::move(hooks)), acceptor_(io_) {}

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
  const Api api(router_, token_, hooks_);
  for (;;) {
    stream.expires_after(std::chrono::seconds(30));
    http::request_parser<http::string_body> parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(64 * 1024);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, boost::asio::as_tuple(use_awaitable));
    if (ec) co_return;
    const auto& req = parser.get();
    ApiRequest in;
    in.method = std::string(req.method_string());
    parse_target(req.target(), in);
    if (auto it = req.find(http::field::authorization); it != req.end()) in.authorization = std::string(it->value());
    ApiResponse out = api.handle(in);
    http::response<http::string_body> res;
    res.version(req.version());
    res.keep_alive(req.keep_alive());
    res.result(static_cast<http::status>(out.status));
    res.set(http::field::content_type, out.content_type);
    if (!out.allow.empty()) res.set(http::field::allow, out.allow);
    if (out.status == 401) res.set(http::field::www_authenticate, "Bearer realm=\"sparkgate admin\"");
    res.body() = req.method() == http::verb::head ? std::string() : std::move(out.body);
    res.prepare_payload();
    auto [wec, wn] = co_await http::async_write(stream, res, boost::asio::as_tuple(use_awaitable));
    if (wec || !res.keep_alive()) co_return;
  }
}

}  // namespace sparkgate::admin
