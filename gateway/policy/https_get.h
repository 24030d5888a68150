// One HTTPS GET of a small document (an OIDC discovery document or a JWK Set), for the
// control thread, over the shared client of base/http_client.h: TLS with the peer
// certificate verified against the configured CA (or the system trust store) and the URL's
// host name (or IP address) checked against the certificate. Redirects are never followed (a 3xx is an error), the
// body is capped, and the whole exchange (resolve, connect, handshake, request, response)
// has one deadline.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "policy/oidc_documents.h"

namespace sparkgate::policy {

// Why a fetch failed; each value is a bounded metric label
// (sparkgate_jwks_fetches_total{result}).
enum class FetchResult {
  kOk,
  kUnreachable,  // name resolution, connect or the connection failed
  kTls,          // the TLS handshake failed: certificate not trusted, host name mismatch, ...
  kTimeout,      // the deadline passed
  kHttpStatus,   // not 200 (a redirect included)
  kTooLarge,     // the body or the headers exceed the caps
  kInvalid,      // the document is not what it must be (not JSON, wrong issuer, no keys, ...)
};

// "ok", "unreachable", "tls", "timeout", "http_status", "too_large", "invalid".
std::string_view fetch_result_label(FetchResult r);

struct HttpsGetOptions {
  std::chrono::milliseconds timeout{10000};
  size_t max_body_bytes = kMaxOidcDocumentBytes;
};

struct HttpsResponse {
  FetchResult result = FetchResult::kOk;
  std::string error;  // when result is not kOk: what happened, naming the URL
  unsigned status = 0;
  std::string body;   // when result is kOk (status 200)
};

// A client TLS context for key fetches: TLS 1.2 or later, peer verification on, trusting
// the PEM bundle `ca_file`, or the system trust store when it is empty. Null with
// `error` set when the bundle cannot be loaded.
std::shared_ptr<boost::asio::ssl::context> make_fetch_tls_context(const std::string& ca_file, std::string& error);

// Starts GET `url` on `executor` (a single-threaded io_context: the control thread's).
// `done` is called exactly once, on that executor, unless the io_context is stopped and
// destroyed first (then never). `tls` is shared by the exchange until it ends. Never
// throws into the io_context.
void https_get(const boost::asio::any_io_executor& executor, std::shared_ptr<boost::asio::ssl::context> tls,
               const HttpsUrl& url, const HttpsGetOptions& options, std::function<void(HttpsResponse)> done);

}  // namespace sparkgate::policy
