#include "grpcwire/local_reply.h"

#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

using namespace sparkgate::grpcwire;

namespace {
struct Fields {
  void add(std::string n, std::string v) { f.emplace_back(std::move(n), std::move(v)); }
  std::vector<std::pair<std::string, std::string>> f;
};
using List = std::vector<std::pair<std::string, std::string>>;
}  // namespace

TEST_CASE("local replies: trailers-only carries :status, content-type and the encoded status") {
  Fields h;
  add_trailers_only(h, StatusCode::kResourceExhausted, "quota 100% used");
  CHECK(h.f == List{{":status", "200"},
                    {"content-type", "application/grpc"},
                    {"grpc-status", "8"},
                    {"grpc-message", "quota 100%25 used"}});
  Fields http;
  add_trailers_only(http, StatusCode::kUnimplemented, "no", 405);
  CHECK(http.f[0] == std::pair<std::string, std::string>{":status", "405"});
}

TEST_CASE("local replies: headers and trailers of a reply with a message") {
  Fields h;
  add_reply_headers(h);
  CHECK(h.f == List{{":status", "200"}, {"content-type", "application/grpc"}});
  Fields ok;
  add_status_trailers(ok, StatusCode::kOk, "");
  CHECK(ok.f == List{{"grpc-status", "0"}});
  Fields err;
  add_status_trailers(err, StatusCode::kUnavailable, "gone");
  CHECK(err.f == List{{"grpc-status", "14"}, {"grpc-message", "gone"}});
}

TEST_CASE("parse_status: a peer's grpc-status as a typed code") {
  CHECK(parse_status("0") == StatusCode::kOk);
  CHECK(parse_status("14") == StatusCode::kUnavailable);
  CHECK(static_cast<int>(parse_status("99")) == 99);  // kept for the metrics to show
  CHECK(parse_status("") == StatusCode::kUnknown);
  CHECK(parse_status("x") == StatusCode::kUnknown);
  CHECK(parse_status("-1") == StatusCode::kUnknown);
}
