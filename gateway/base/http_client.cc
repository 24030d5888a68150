#include "base/http_client.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <optional>
#include <string_view>

namespace sparkgate::base {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::use_awaitable;

namespace {

constexpr size_t kMaxLocationBytes = 200;

// The state of one exchange, shared by the coroutine and the deadline timer.
struct Exchange {
  Exchange(const asio::any_io_executor& ex, asio::ssl::context* ctx) : resolver(ex), tcp(ex), deadline(ex) {
    if (ctx) tls.emplace(ex, *ctx);
  }
  beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : tcp; }
  asio::ip::tcp::resolver resolver;
  beast::tcp_stream tcp;                                    // http://
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;  // https://
  asio::steady_timer deadline;
  bool timed_out = false;
};

// "lit" + std::string trips g++ 12's false -Wrestrict at -O3: append instead.
std::string cat(std::string_view a, std::string_view b, std::string_view c = {}) {
  std::string s;
  s.reserve(a.size() + b.size() + c.size());
  s.append(a).append(b).append(c);
  return s;
}

HttpResponse failure(HttpOutcome outcome, std::string error) {
  HttpResponse out;
  out.outcome = outcome;
  out.error = std::move(error);
  return out;
}

// Writes the request and reads the response on an established stream.
template <typename Stream>
asio::awaitable<HttpResponse> request_response(Stream& stream, Exchange& x, const HttpRequest& req,
                                               const std::string& where) {
  http::request<http::string_body> msg{req.method == HttpMethod::kPost ? http::verb::post : http::verb::get,
                                       req.url.target, 11};
  msg.set(http::field::host, req.url.authority());
  msg.set(http::field::user_agent, "sparkgate");
  if (!req.accept.empty()) msg.set(http::field::accept, req.accept);
  if (!req.content_type.empty()) msg.set(http::field::content_type, req.content_type);
  msg.set(http::field::connection, "close");
  for (const auto& [name, value] : req.headers) msg.set(name, value);
  if (req.method == HttpMethod::kPost) {
    msg.body() = req.body;
    msg.prepare_payload();
  }
  auto [wec, wn] = co_await http::async_write(stream, msg, asio::as_tuple(use_awaitable));
  (void)wn;
  if (x.timed_out) co_return failure(HttpOutcome::kTimeout, where + ": no answer within the deadline (sending)");
  if (wec) co_return failure(HttpOutcome::kUnreachable, where + ": sending the request failed: " + wec.message());

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(req.max_header_bytes));
  parser.body_limit(req.max_body_bytes);
  auto [rdec, rn] = co_await http::async_read(stream, buffer, parser, asio::as_tuple(use_awaitable));
  (void)rn;
  if (x.timed_out) co_return failure(HttpOutcome::kTimeout, where + ": no complete answer within the deadline");
  if (rdec == http::error::header_limit) {
    co_return failure(HttpOutcome::kHeadersTooLarge,
                      where + ": the response headers exceed " + std::to_string(req.max_header_bytes) + " bytes");
  }
  HttpResponse out;
  if (rdec == http::error::body_limit) {
    out = failure(HttpOutcome::kBodyTooLarge,
                  where + ": the body is larger than " + std::to_string(req.max_body_bytes) + " bytes");
  } else if (rdec) {
    co_return failure(HttpOutcome::kUnreachable, where + ": reading the response failed: " + rdec.message());
  }
  auto& res = parser.get();
  out.status = res.result_int();
  auto location = res[http::field::location];
  if (location.size() <= kMaxLocationBytes) out.location = std::string(location);
  if (out.outcome == HttpOutcome::kOk) out.body = std::move(res.body());
  co_return out;
}

// Asks for the peer's name (or IP address) to be checked against its certificate.
void expect_peer_name(SSL* ssl, const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  if (!ec) {
    // An IP literal is checked against the certificate's IP SANs; SNI carries no IPs.
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, host.c_str());
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    SSL_set1_host(ssl, host.c_str());
  }
}

asio::awaitable<HttpResponse> run(std::shared_ptr<Exchange> x, std::shared_ptr<HttpRequest> req) {
  const auto& url = req->url;
  const std::string where = describe(*req);
  auto [rec, endpoints] = co_await x->resolver.async_resolve(url.host, std::to_string(url.port),
                                                              asio::as_tuple(use_awaitable));
  if (x->timed_out) co_return failure(HttpOutcome::kTimeout, where + ": no answer within the deadline (resolving)");
  if (rec) co_return failure(HttpOutcome::kUnreachable, where + ": cannot resolve " + url.host + ": " + rec.message());
  auto [cec, ep] = co_await x->lowest().async_connect(endpoints, asio::as_tuple(use_awaitable));
  (void)ep;
  if (x->timed_out) co_return failure(HttpOutcome::kTimeout, where + ": no answer within the deadline (connecting)");
  if (cec) co_return failure(HttpOutcome::kUnreachable, where + ": cannot connect: " + cec.message());
  if (!x->tls) co_return co_await request_response(x->tcp, *x, *req, where);

  SSL* ssl = x->tls->native_handle();
  expect_peer_name(ssl, url.host);
  auto [hec] = co_await x->tls->async_handshake(asio::ssl::stream_base::client, asio::as_tuple(use_awaitable));
  if (x->timed_out) co_return failure(HttpOutcome::kTimeout, where + ": no answer within the deadline (TLS handshake)");
  if (hec) {
    long verify = SSL_get_verify_result(ssl);
    std::string why = verify != X509_V_OK
                          ? cat("certificate verification failed: ", X509_verify_cert_error_string(verify))
                          : hec.message();
    co_return failure(HttpOutcome::kTls, where + ": TLS handshake failed: " + why);
  }
  auto out = co_await request_response(*x->tls, *x, *req, where);
  if (out.outcome == HttpOutcome::kOk) {
    // A polite close; the answer is complete whatever the peer does.
    x->lowest().expires_after(std::chrono::milliseconds(200));
    co_await x->tls->async_shutdown(asio::as_tuple(use_awaitable));
  }
  co_return out;
}

}  // namespace

std::string describe(const HttpRequest& request) {
  return cat(request.method == HttpMethod::kPost ? "POST " : "GET ", request.url.text);
}

void http_exchange(const asio::any_io_executor& executor, std::shared_ptr<asio::ssl::context> tls, HttpRequest request,
                   std::function<void(HttpResponse)> done) {
  auto req = std::make_shared<HttpRequest>(std::move(request));
  if (req->url.tls && !tls) {
    asio::post(executor, [done = std::move(done), where = describe(*req)] {
      done(failure(HttpOutcome::kTls, where + ": no TLS context"));
    });
    return;
  }
  std::shared_ptr<Exchange> x;
  try {
    x = std::make_shared<Exchange>(executor, req->url.tls ? tls.get() : nullptr);
  } catch (const std::exception& e) {
    asio::post(executor, [done = std::move(done), what = std::string(e.what()), where = describe(*req)] {
      done(failure(HttpOutcome::kUnreachable, cat(where, ": ", what)));
    });
    return;
  }
  x->deadline.expires_after(req->timeout);
  x->deadline.async_wait([weak = std::weak_ptr<Exchange>(x)](const boost::system::error_code& ec) {
    auto x = weak.lock();
    if (ec || !x) return;
    x->timed_out = true;
    x->resolver.cancel();
    x->lowest().cancel();
  });
  asio::co_spawn(executor, run(x, req), [x, tls, req, done = std::move(done)](std::exception_ptr e, HttpResponse r) {
    x->deadline.cancel();
    if (e) r = failure(HttpOutcome::kUnreachable, describe(*req) + ": the exchange failed unexpectedly");
    done(std::move(r));
  });
}

}  // namespace sparkgate::base
