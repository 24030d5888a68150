#include "trace/http_post.h"
#include "base/tls_client_context.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace sparkgate::trace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::use_awaitable;

namespace {

constexpr size_t kMaxHeaderBytes = 16 * 1024;
constexpr size_t kMaxBodyBytes = 64 * 1024;

struct Exchange {
  Exchange(const asio::any_io_executor& ex, asio::ssl::context* ctx)
      : resolver(ex), tcp(ex), deadline(ex) {
    if (ctx) tls.emplace(ex, *ctx);
  }
  beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : tcp; }
  asio::ip::tcp::resolver resolver;
  beast::tcp_stream tcp;                                      // http://
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;    // https://
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

PostResponse failure(PostResult r, std::string error) {
  PostResponse out;
  out.result = r;
  out.error = std::move(error);
  return out;
}

template <typename Stream>
asio::awaitable<PostResponse> exchange(Stream& stream, Exchange& x, const PostRequest& req, const std::string& where) {
  http::request<http::string_body> msg{http::verb::post, req.url.target, 11};
  msg.set(http::field::host, req.url.authority());
  msg.set(http::field::user_agent, "sparkgate");
  msg.set(http::field::content_type, req.content_type);
  msg.set(http::field::connection, "close");
  for (const auto& [name, value] : req.headers) msg.set(name, value);
  msg.body() = req.body;
  msg.prepare_payload();
  auto [wec, wn] = co_await http::async_write(stream, msg, asio::as_tuple(use_awaitable));
  (void)wn;
  if (x.timed_out) co_return failure(PostResult::kTimeout, where + ": no answer within the deadline (sending)");
  if (wec) co_return failure(PostResult::kUnreachable, where + ": sending the request failed: " + wec.message());

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.header_limit(kMaxHeaderBytes);
  parser.body_limit(kMaxBodyBytes);
  auto [rdec, rn] = co_await http::async_read(stream, buffer, parser, asio::as_tuple(use_awaitable));
  (void)rn;
  if (x.timed_out) co_return failure(PostResult::kTimeout, where + ": no complete answer within the deadline");
  PostResponse out;
  if (rdec == http::error::body_limit) {
    // The status is known; a collector's long error page is not our problem.
    out.status = parser.get().result_int();
  } else if (rdec) {
    co_return failure(PostResult::kUnreachable, where + ": reading the response failed: " + rdec.message());
  } else {
    out.status = parser.get().result_int();
    out.body = std::move(parser.get().body());
  }
  if (out.status < 200 || out.status > 299) {
    out.result = PostResult::kHttpStatus;
    out.error = where + ": answered HTTP " + std::to_string(out.status);
  }
  co_return out;
}

asio::awaitable<PostResponse> run(std::shared_ptr<Exchange> x, std::shared_ptr<PostRequest> req) {
  const auto& url = req->url;
  std::string where = "POST ";
  where += url.text;
  auto [rec, endpoints] = co_await x->resolver.async_resolve(url.host, std::to_string(url.port),
                                                              asio::as_tuple(use_awaitable));
  if (x->timed_out) co_return failure(PostResult::kTimeout, where + ": no answer within the deadline (resolving)");
  if (rec) co_return failure(PostResult::kUnreachable, where + ": cannot resolve " + url.host + ": " + rec.message());
  auto [cec, ep] = co_await x->lowest().async_connect(endpoints, asio::as_tuple(use_awaitable));
  (void)ep;
  if (x->timed_out) co_return failure(PostResult::kTimeout, where + ": no answer within the deadline (connecting)");
  if (cec) co_return failure(PostResult::kUnreachable, where + ": cannot connect: " + cec.message());
  if (!x->tls) co_return co_await exchange(x->tcp, *x, *req, where);

  SSL* ssl = x->tls->native_handle();
  boost::system::error_code ipec;
  asio::ip::make_address(url.host, ipec);
  if (!ipec) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), url.host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, url.host.c_str());
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    SSL_set1_host(ssl, url.host.c_str());
  }
  auto [hec] = co_await x->tls->async_handshake(asio::ssl::stream_base::client, asio::as_tuple(use_awaitable));
  if (x->timed_out) co_return failure(PostResult::kTimeout, where + ": no answer within the deadline (TLS handshake)");
  if (hec) {
    long verify = SSL_get_verify_result(ssl);
    std::string why = verify != X509_V_OK
                          ? cat("certificate verification failed: ", X509_verify_cert_error_string(verify))
                          : hec.message();
    co_return failure(PostResult::kTls, where + ": TLS handshake failed: " + why);
  }
  auto out = co_await exchange(*x->tls, *x, *req, where);
  if (out.result == PostResult::kOk) {
    x->lowest().expires_after(std::chrono::milliseconds(200));
    co_await x->tls->async_shutdown(asio::as_tuple(use_awaitable));
  }
  co_return out;
}

}  // namespace

std::string_view post_result_label(PostResult r) {
  switch (r) {
    case PostResult::kOk: return "ok";
    case PostResult::kUnreachable: return "unreachable";
    case PostResult::kTimeout: return "timeout";
    case PostResult::kTls: return "tls";
    case PostResult::kHttpStatus: return "http_status";
  }
  return "unreachable";
}

std::shared_ptr<asio::ssl::context> make_client_tls_context(const std::string& ca_file, std::string& error) {
  return base::make_tls_client_context(ca_file, error);
}

void http_post(const asio::any_io_executor& executor, std::shared_ptr<asio::ssl::context> tls, PostRequest request,
               std::function<void(PostResponse)> done) {
  auto req = std::make_shared<PostRequest>(std::move(request));
  if (req->url.tls && !tls) {
    asio::post(executor, [done = std::move(done), url = req->url.text] {
      done(failure(PostResult::kTls, cat("POST ", url, ": no TLS context")));
    });
    return;
  }
  std::shared_ptr<Exchange> x;
  try {
    x = std::make_shared<Exchange>(executor, req->url.tls ? tls.get() : nullptr);
  } catch (const std::exception& e) {
    asio::post(executor, [done = std::move(done), what = std::string(e.what()), url = req->url.text] {
      done(failure(PostResult::kUnreachable, cat("POST ", url, cat(": ", what))));
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
  asio::co_spawn(executor, run(x, req),
                 [x, tls, req, done = std::move(done)](std::exception_ptr e, PostResponse r) {
                   x->deadline.cancel();
                   if (e) r = failure(PostResult::kUnreachable, cat("POST ", req->url.text, ": the export failed unexpectedly"));
                   done(std::move(r));
                 });
}

}  // namespace sparkgate::trace
