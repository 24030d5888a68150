#include "grpcwire/status.h"

#include <doctest/doctest.h>

using namespace sparkgate::grpcwire;

TEST_CASE("grpc-message percent-encoding round-trips and escapes what the spec requires") {
  std::string msg = "backend 127.0.0.1:1 is 100% down\n\xc3\xa9";
  auto enc = percent_encode(msg);
  CHECK(enc == "backend 127.0.0.1:1 is 100%25 down%0A%C3%A9");
  CHECK(percent_decode(enc) == msg);
  CHECK(percent_decode("50%") == "50%");
  CHECK(percent_decode("%zz") == "%zz");
}

TEST_CASE("status names") {
  CHECK(status_name(StatusCode::kUnavailable) == "UNAVAILABLE");
  CHECK(status_name(StatusCode::kResourceExhausted) == "RESOURCE_EXHAUSTED");
  CHECK(status_name(static_cast<StatusCode>(99)) == "UNKNOWN");
}
