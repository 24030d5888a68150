#include "trace/http_post.h"
#include "base/http_client.h"
#include "base/tls_client_context.h"

namespace sparkgate::trace {

namespace {

PostResponse failure(PostResult r, std::string error) {
  PostResponse out;
  out.result = r;
  out.error = std::move(error);
  return out;
}

// What the export makes of the exchange: any 2xx is accepted, whatever the body (a
// collector's long answer is cut, not an error).
PostResponse to_post_response(base::HttpResponse r, const std::string& where) {
  switch (r.outcome) {
    case base::HttpOutcome::kOk:
    case base::HttpOutcome::kBodyTooLarge: break;
    case base::HttpOutcome::kTls: return failure(PostResult::kTls, std::move(r.error));
    case base::HttpOutcome::kTimeout: return failure(PostResult::kTimeout, std::move(r.error));
    case base::HttpOutcome::kUnreachable:
    case base::HttpOutcome::kHeadersTooLarge: return failure(PostResult::kUnreachable, std::move(r.error));
  }
  PostResponse out;
  out.status = r.status;
  out.body = std::move(r.body);
  if (out.status < 200 || out.status > 299) {
    out.result = PostResult::kHttpStatus;
    out.error = where + ": answered HTTP " + std::to_string(out.status);
  }
  return out;
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

std::shared_ptr<boost::asio::ssl::context> make_client_tls_context(const std::string& ca_file, std::string& error) {
  return base::make_tls_client_context(ca_file, error);
}

void http_post(const boost::asio::any_io_executor& executor, std::shared_ptr<boost::asio::ssl::context> tls,
               PostRequest request, std::function<void(PostResponse)> done) {
  base::HttpRequest req;
  req.method = base::HttpMethod::kPost;
  req.url = std::move(request.url);
  req.headers = std::move(request.headers);
  req.content_type = std::move(request.content_type);
  req.body = std::move(request.body);
  req.timeout = request.timeout;
  std::string where = base::describe(req);
  base::http_exchange(executor, std::move(tls), std::move(req),
                      [done = std::move(done), where = std::move(where)](base::HttpResponse r) {
                        done(to_post_response(std::move(r), where));
                      });
}

}  // namespace sparkgate::trace
