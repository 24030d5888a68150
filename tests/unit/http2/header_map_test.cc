#include "http2/header_map.h"

#include <doctest/doctest.h>

using namespace sparkgate::http2;

TEST_CASE("header map keeps order, finds, sets and removes") {
  HeaderMap h;
  h.add(":path", "/x");
  h.add("x-a", "1");
  h.add("x-a", "2");
  h.add("grpc-timeout", "10S");
  CHECK(h.size() == 4);
  REQUIRE(h.find("x-a"));
  CHECK(*h.find("x-a") == "1");
  CHECK(h.find("missing") == nullptr);
  CHECK(h.bytes() == std::string(":path/xx-a1x-a2grpc-timeout10S").size());
  h.set("x-a", "3");
  CHECK(h.size() == 3);
  CHECK(*h.find("x-a") == "3");
  CHECK(h.fields().back().first == "x-a");
  h.remove("grpc-timeout");
  CHECK(h.find("grpc-timeout") == nullptr);
  CHECK(h.bytes() == std::string(":path/xx-a3").size());
}

TEST_CASE("header map to_nv marks credentials as never indexed") {
  HeaderMap h;
  h.add("authorization", "Bearer secret");
  h.add("x-sparkgate-cluster", "etl");
  auto nv = h.to_nv();
  REQUIRE(nv.size() == 2);
  CHECK((nv[0].flags & NGHTTP2_NV_FLAG_NO_INDEX) != 0);
  CHECK((nv[1].flags & NGHTTP2_NV_FLAG_NO_INDEX) == 0);
  CHECK(std::string(reinterpret_cast<char*>(nv[1].value), nv[1].valuelen) == "etl");
}

TEST_CASE("hop-by-hop headers are recognised") {
  for (auto n : {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host", "te"})
    CHECK(is_hop_by_hop(n));
  for (auto n : {"grpc-timeout", "authorization", "x-sparkgate-cluster", "user-agent", "content-type"})
    CHECK_FALSE(is_hop_by_hop(n));
}
