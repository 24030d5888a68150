#include "policy/https_get.h"
#include "base/http_client.h"
#include "base/tls_client_context.h"

namespace sparkgate::policy {

namespace {

HttpsResponse failure(FetchResult r, std::string error) {
  HttpsResponse out;
  out.result = r;
  out.error = std::move(error);
  return out;
}

// What a key fetch makes of the exchange: only a complete 200 is a document.
HttpsResponse to_fetch_response(base::HttpResponse r, const std::string& where) {
  switch (r.outcome) {
    case base::HttpOutcome::kOk: break;
    case base::HttpOutcome::kUnreachable: return failure(FetchResult::kUnreachable, std::move(r.error));
    case base::HttpOutcome::kTls: return failure(FetchResult::kTls, std::move(r.error));
    case base::HttpOutcome::kTimeout: return failure(FetchResult::kTimeout, std::move(r.error));
    case base::HttpOutcome::kHeadersTooLarge:
    case base::HttpOutcome::kBodyTooLarge: return failure(FetchResult::kTooLarge, std::move(r.error));
  }
  HttpsResponse out;
  out.status = r.status;
  if (out.status != 200) {
    out.result = FetchResult::kHttpStatus;
    out.error = where + ": answered HTTP " + std::to_string(out.status);
    if (out.status >= 300 && out.status < 400) {
      out.error += " (a redirect";
      if (!r.location.empty()) out.error += " to " + r.location;
      out.error += ", not followed)";
    }
    return out;
  }
  out.body = std::move(r.body);
  return out;
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

std::shared_ptr<boost::asio::ssl::context> make_fetch_tls_context(const std::string& ca_file, std::string& error) {
  return base::make_tls_client_context(ca_file, error);
}

void https_get(const boost::asio::any_io_executor& executor, std::shared_ptr<boost::asio::ssl::context> tls,
               const HttpsUrl& url, const HttpsGetOptions& options, std::function<void(HttpsResponse)> done) {
  base::HttpRequest req;
  req.method = base::HttpMethod::kGet;
  req.url = url;
  req.accept = "application/json";
  req.timeout = options.timeout;
  req.max_body_bytes = options.max_body_bytes;
  std::string where = base::describe(req);
  base::http_exchange(executor, std::move(tls), std::move(req),
                      [done = std::move(done), where = std::move(where)](base::HttpResponse r) {
                        done(to_fetch_response(std::move(r), where));
                      });
}

}  // namespace sparkgate::policy
