// One HTTP/1.1 POST of an OTLP export request, for the control thread, over the shared
// client of base/http_client.h: plain TCP (http://) or TLS (https://: the peer certificate
// verified against the configured CA or the system trust store, and the host name or IP
// address checked). One connection per request (`Connection: close`): a batch goes out
// every few seconds at most. The whole exchange has one deadline; the response body is
// capped, and any 2xx is a success.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/https_url.h"

namespace sparkgate::trace {

// Each value is a bounded metric label (sparkgate_span_batches_total{result}).
enum class PostResult { kOk, kUnreachable, kTimeout, kTls, kHttpStatus };
// "ok", "unreachable", "timeout", "tls", "http_status".
std::string_view post_result_label(PostResult r);

struct PostResponse {
  PostResult result = PostResult::kOk;
  unsigned status = 0;  // the HTTP status, when one was read
  std::string error;    // not kOk: what happened, naming the URL (never a header value)
  std::string body;     // up to the cap
};

struct PostRequest {
  base::HttpsUrl url;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers (secrets: never logged)
  std::string content_type = "application/x-protobuf";
  std::string body;
  std::chrono::milliseconds timeout{10000};
};

// A client TLS context for the collector: TLS 1.2 or later, peer verification on,
// trusting `ca_file` or the system trust store. Null with `error` set on failure.
std::shared_ptr<boost::asio::ssl::context> make_client_tls_context(const std::string& ca_file, std::string& error);

// Starts the POST on `executor` (a single-threaded io_context). `tls` is required for an
// https:// URL and ignored otherwise. A 2xx answer is kOk. `done` is called exactly once
// on that executor, unless the io_context is stopped and destroyed first. Never throws.
void http_post(const boost::asio::any_io_executor& executor, std::shared_ptr<boost::asio::ssl::context> tls,
               PostRequest request, std::function<void(PostResponse)> done);

}  // namespace sparkgate::trace
