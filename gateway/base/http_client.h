// One HTTP/1.1 exchange on a fresh connection, for the control thread: Boost.Beast over
// plain TCP (http://) or OpenSSL (https://). With TLS the peer certificate is verified by
// the given context (base/tls_client_context.h) and the URL's host name, or IP address, is
// checked against it. Redirects are never followed; the response's headers and body are
// capped; the whole exchange (resolve, connect, handshake, request, response) has one
// deadline. Used by the JWT key fetches (policy/https_get.h) and the OTLP export
// (trace/http_post.h), which each decide what a status means to them.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/https_url.h"

namespace sparkgate::base {

enum class HttpMethod { kGet, kPost };

struct HttpRequest {
  HttpMethod method = HttpMethod::kGet;
  HttpsUrl url;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers (secrets: never logged)
  std::string accept;        // the Accept header, if not empty
  std::string content_type;  // the Content-Type of `body`, if not empty
  std::string body;
  std::chrono::milliseconds timeout{10000};
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 64 * 1024;
};

// How far the exchange got. kOk and kBodyTooLarge both read the status line and headers.
enum class HttpOutcome {
  kOk,               // a complete response, of any status
  kUnreachable,      // name resolution, connect, or the connection failed
  kTls,              // the TLS handshake failed (certificate not trusted, name mismatch, ...)
  kTimeout,          // the deadline passed
  kHeadersTooLarge,  // the response headers exceed max_header_bytes
  kBodyTooLarge,     // the body exceeds max_body_bytes (status and location are set, body is not)
};

struct HttpResponse {
  HttpOutcome outcome = HttpOutcome::kOk;
  std::string error;     // not kOk: what happened, starting "GET <url>" or "POST <url>"
  unsigned status = 0;
  std::string location;  // the Location header, if any (at most 200 bytes, else empty)
  std::string body;      // kOk only
};

// "GET <url>" or "POST <url>": how errors name the exchange.
std::string describe(const HttpRequest& request);

// Starts `request` on `executor` (a single-threaded io_context). `tls` is required for an
// https:// URL (its absence is a kTls failure) and ignored for http://; it is shared by
// the exchange until it ends. `done` is called exactly once, on that executor, unless the
// io_context is stopped and destroyed first (then never). Never throws into the io_context.
void http_exchange(const boost::asio::any_io_executor& executor, std::shared_ptr<boost::asio::ssl::context> tls,
                   HttpRequest request, std::function<void(HttpResponse)> done);

}  // namespace sparkgate::base
