#include "policy/https_get.h"
#include "base/tls_client_context.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace sparkgate::policy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::use_awaitable;

namespace {

constexpr size_t kMaxHeaderBytes = 16 * 1024;

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

// The state of one exchange, shared by the coroutine and the deadline timer.
struct Exchange {
  Exchange(const asio::any_io_executor& ex, asio::ssl::context& ctx)
      : resolver(ex), stream(ex, ctx), deadline(ex) {}
  asio::ip::tcp::resolver resolver;
  beast::ssl_stream<beast::tcp_stream> stream;
  asio::steady_timer deadline;
  bool timed_out = false;
};

HttpsResponse failure(FetchResult r, std::string error) {
  HttpsResponse out;
  out.result = r;
  out.error = std::move(error);
  return out;
}

std::string tls_reason(const boost::system::error_code& ec, SSL* ssl) {
  long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) return std::string("certificate verification failed: ") + X509_verify_cert_error_string(verify);
  return ec.message();
}

asio::awaitable<HttpsResponse> run(std::shared_ptr<Exchange> x, HttpsUrl url, HttpsGetOptions options) {
  const std::string where = "GET " + url.text;
  auto [rec, endpoints] = co_await x->resolver.async_resolve(url.host, std::to_string(url.port),
                                                              asio::as_tuple(use_awaitable));
  if (x->timed_out) co_return failure(FetchResult::kTimeout, where + ": no answer within the deadline (resolving)");
  if (rec) co_return failure(FetchResult::kUnreachable, where + ": cannot resolve " + url.host + ": " + rec.message());

  auto [cec, ep] = co_await beast::get_lowest_layer(x->stream).async_connect(endpoints, asio::as_tuple(use_awaitable));
  if (x->timed_out) co_return failure(FetchResult::kTimeout, where + ": no answer within the deadline (connecting)");
  if (cec) co_return failure(FetchResult::kUnreachable, where + ": cannot connect: " + cec.message());

  SSL* ssl = x->stream.native_handle();
  if (is_ip_literal(url.host)) {
    // An IP literal is checked against the certificate's IP SANs; SNI carries no IPs.
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), url.host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, url.host.c_str());
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    SSL_set1_host(ssl, url.host.c_str());
  }
  auto [hec] = co_await x->stream.async_handshake(asio::ssl::stream_base::client, asio::as_tuple(use_awaitable));
  if (x->timed_out) co_return failure(FetchResult::kTimeout, where + ": no answer within the deadline (TLS handshake)");
  if (hec) co_return failure(FetchResult::kTls, where + ": TLS handshake failed: " + tls_reason(hec, ssl));

  http::request<http::empty_body> req{http::verb::get, url.target, 11};
  req.set(http::field::host, url.authority());
  req.set(http::field::user_agent, "sparkgate");
  req.set(http::field::accept, "application/json");
  req.set(http::field::connection, "close");
  auto [wec, wn] = co_await http::async_write(x->stream, req, asio::as_tuple(use_awaitable));
  (void)wn;
  if (x->timed_out) co_return failure(FetchResult::kTimeout, where + ": no answer within the deadline (sending)");
  if (wec) co_return failure(FetchResult::kUnreachable, where + ": sending the request failed: " + wec.message());

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.header_limit(kMaxHeaderBytes);
  parser.body_limit(options.max_body_bytes);
  auto [rdec, rn] = co_await http::async_read(x->stream, buffer, parser, asio::as_tuple(use_awaitable));
  (void)rn;
  if (x->timed_out) co_return failure(FetchResult::kTimeout, where + ": no complete answer within the deadline");
  if (rdec == http::error::body_limit) {
    co_return failure(FetchResult::kTooLarge,
                      where + ": the body is larger than " + std::to_string(options.max_body_bytes) + " bytes");
  }
  if (rdec == http::error::header_limit) {
    co_return failure(FetchResult::kTooLarge, where + ": the response headers exceed " +
                                                  std::to_string(kMaxHeaderBytes) + " bytes");
  }
  if (rdec) co_return failure(FetchResult::kUnreachable, where + ": reading the response failed: " + rdec.message());
  auto& res = parser.get();
  HttpsResponse out;
  out.status = res.result_int();
  if (out.status != 200) {
    out.result = FetchResult::kHttpStatus;
    out.error = where + ": answered HTTP " + std::to_string(out.status);
    if (out.status >= 300 && out.status < 400) {
      auto loc = res[http::field::location];
      out.error += " (a redirect";
      if (!loc.empty() && loc.size() <= 200) out.error += " to " + std::string(loc);
      out.error += ", not followed)";
    }
    co_return out;
  }
  out.body = std::move(res.body());
  // A polite close; the answer is complete whatever the peer does.
  beast::get_lowest_layer(x->stream).expires_after(std::chrono::milliseconds(200));
  co_await x->stream.async_shutdown(asio::as_tuple(use_awaitable));
  co_return out;
}

}  // namespace

std::string_view fetch_result_label(FetchResult r) {
  switch (r) {
    case FetchResult::kOk: return "ok";
    case FetchResult::kUnreachable: return "unreachable";
    case FetchResult::kTls: return "tls";
    case FetchResult::kTimeout: return "timeout";
    case FetchResult::kHttpStatus: return "http_status";
    case FetchResult::kTooLarge: return "too_large";
    case FetchResult::kInvalid: return "invalid";
  }
  return "invalid";
}

std::shared_ptr<asio::ssl::context> make_fetch_tls_context(const std::string& ca_file, std::string& error) {
  return base::make_tls_client_context(ca_file, error);
}

void https_get(const asio::any_io_executor& executor, std::shared_ptr<asio::ssl::context> tls, const HttpsUrl& url,
               const HttpsGetOptions& options, std::function<void(HttpsResponse)> done) {
  std::shared_ptr<Exchange> x;
  try {
    x = std::make_shared<Exchange>(executor, *tls);
  } catch (const std::exception& e) {
    asio::post(executor, [done = std::move(done), what = std::string(e.what()), url = url.text] {
      done(failure(FetchResult::kUnreachable, "GET " + url + ": " + what));
    });
    return;
  }
  x->deadline.expires_after(options.timeout);
  x->deadline.async_wait([weak = std::weak_ptr<Exchange>(x)](const boost::system::error_code& ec) {
    auto x = weak.lock();
    if (ec || !x) return;
    x->timed_out = true;
    x->resolver.cancel();
    beast::get_lowest_layer(x->stream).cancel();
  });
  asio::co_spawn(executor, run(x, url, options),
                 [x, tls, done = std::move(done), url = url.text](std::exception_ptr e, HttpsResponse r) {
                   x->deadline.cancel();
                   if (e) r = failure(FetchResult::kUnreachable, "GET " + url + ": the fetch failed unexpectedly");
                   done(std::move(r));
                 });
}

}  // namespace sparkgate::policy
