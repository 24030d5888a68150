#include "http2/header_map.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "http2/session_memory.h"

using namespace sparkgate::http2;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kGlibcChunks = false;  // see session_memory_test.cc
#else
constexpr bool kGlibcChunks = true;
#endif

TEST_CASE("header map keeps order, finds, sets and removes") {
  HeaderMap h;
  CHECK(h.empty());
  h.add(":path", "/x");
  h.add("x-a", "1");
  h.add("x-a", "2");
  h.add("grpc-timeout", "10S");
  CHECK(h.size() == 4);
  REQUIRE(h.find("x-a"));
  CHECK(*h.find("x-a") == "1");
  CHECK_FALSE(h.find("missing"));
  CHECK_FALSE(h.find("x-"));  // a prefix of a name is not the name
  CHECK(h.bytes() == std::string(":path/xx-a1x-a2grpc-timeout10S").size());
  h.set("x-a", "3");
  CHECK(h.size() == 3);
  CHECK(*h.find("x-a") == "3");
  CHECK(h.fields()[2].name == "x-a");
  h.remove("grpc-timeout");
  CHECK_FALSE(h.find("grpc-timeout"));
  CHECK(h.bytes() == std::string(":path/xx-a3").size());
  std::vector<std::string> seen;
  for (auto [name, value] : h.fields()) seen.push_back(std::string(name) + "=" + std::string(value));
  CHECK(seen == std::vector<std::string>{":path=/x", "x-a=3"});
  h.clear();
  CHECK(h.empty());
  CHECK(h.bytes() == 0);
  h.add("a", "b");
  CHECK(*h.find("a") == "b");
}

TEST_CASE("header map copies a field from itself, also when its block grows") {
  HeaderMap h;
  h.add("x-request-id", "abc");
  // The value views the map's own bytes; the adds below move them to a larger block.
  for (int i = 0; i < 60; ++i) {
    const std::string_view id = *h.find("x-request-id");
    h.add("x-copy-" + std::to_string(i), id);
  }
  CHECK(h.bytes() > HeaderMap::kUsualBytes);
  CHECK(h.size() == 61);
  for (int i = 0; i < 60; ++i) CHECK(*h.find("x-copy-" + std::to_string(i)) == "abc");
  // set() with a value that views the field it replaces.
  h.set("x-request-id", h.find("x-request-id")->substr(1));
  CHECK(*h.find("x-request-id") == "bc");
  CHECK(h.size() == 61);
  // A copy is independent of the original.
  HeaderMap copy = h;
  h.set("x-request-id", "changed");
  CHECK(*copy.find("x-request-id") == "bc");
  // A moved map keeps its fields.
  HeaderMap moved = std::move(copy);
  CHECK(*moved.find("x-copy-59") == "abc");
}

TEST_CASE("header map: a usual header block takes its blocks from the free lists") {
  auto fill = [](HeaderMap& h) {
    h.add(":method", "POST");
    h.add(":scheme", "http");
    h.add(":path", "/spark.connect.SparkConnectService/Config");
    h.add(":authority", "localhost:15002");
    h.add("content-type", "application/grpc");
    h.add("te", "trailers");
    h.add("user-agent", "grpc-python/1.67.0 grpc-c/44.0.0 (linux; chttp2)");
    h.add("grpc-timeout", "299999m");
    h.add("x-request-id", "0b7a3c1e-5d1f-4e2a-9f00-1c2d3e4f5a6b");
  };
  { HeaderMap warm; fill(warm); }  // its two blocks go to this thread's lists
  const size_t cached = session_memory_cached_bytes();
  {
    HeaderMap h;
    fill(h);
    // Both blocks came off the lists (nothing new was cached; glibc chunk sizes only).
    if (kGlibcChunks) CHECK(session_memory_cached_bytes() < cached);
    CHECK(h.size() == 9);
  }
  if (kGlibcChunks) CHECK(session_memory_cached_bytes() == cached);
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

TEST_CASE("header map to_nv keeps per-request values out of the HPACK table, and only those") {
  HeaderMap h;
  h.add("x-request-id", "3f1c8a52-7d0e-4b6a-9c21-5e8f0a1b2c3d");
  h.add("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  h.add("grpc-timeout", "29999m");
  h.add("cookie", "a=b");
  h.add("authentication", "x");
  h.add(":path", "/spark.connect.SparkConnectService/Config");
  h.add("content-type", "application/grpc");
  h.add("user-agent", "grpc-python/1.85");
  h.add("x-request-ids", "not the same name");
  h.add("tracestate", "vendor=1");
  auto nv = h.to_nv();
  REQUIRE(nv.size() == 10);
  for (size_t i = 0; i < nv.size(); ++i) {
    const std::string name(reinterpret_cast<char*>(nv[i].name), nv[i].namelen);
    CAPTURE(name);
    CHECK(((nv[i].flags & NGHTTP2_NV_FLAG_NO_INDEX) != 0) == (i < 5));
  }
}

TEST_CASE("hop-by-hop headers are recognised") {
  for (auto n : {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host", "te"})
    CHECK(is_hop_by_hop(n));
  for (auto n : {"grpc-timeout", "authorization", "x-sparkgate-cluster", "user-agent", "content-type"})
    CHECK_FALSE(is_hop_by_hop(n));
}

TEST_CASE("header map erase_if drops the matching fields in place and keeps the rest in order") {
  HeaderMap h;
  h.add(":status", "200");
  h.add("connection", "keep-alive");
  h.add("content-type", "application/grpc");
  h.add("te", "trailers");
  h.add("grpc-encoding", "identity");
  const size_t bytes = h.bytes();
  h.erase_if([](const HeaderMap::Field& f) { return is_hop_by_hop(f.name); });
  REQUIRE(h.size() == 3);
  CHECK(h.fields()[0].name == ":status");
  CHECK(h.fields()[1].name == "content-type");
  CHECK(h.fields()[2].value == "identity");
  CHECK(h.bytes() == bytes - std::string_view("connectionkeep-alivetetrailers").size());
  CHECK_FALSE(h.find("te"));
  // The map stays usable: a later add and find see the kept fields and the new one.
  h.add("grpc-status", "0");
  CHECK(*h.find("grpc-status") == "0");
  h.erase_if([](const HeaderMap::Field&) { return true; });
  CHECK(h.empty());
  CHECK(h.bytes() == 0);
}

TEST_CASE("header map: copy and move assignment, including onto a map with fields, and self-assignment") {
  HeaderMap a;
  for (int i = 0; i < 40; ++i) a.add("x-field-" + std::to_string(i), std::string(30, static_cast<char>('a' + i % 26)));
  HeaderMap b;
  b.add("old", "value");
  b = a;  // copy onto a map that has a block of its own
  REQUIRE(b.size() == 40);
  CHECK(*b.find("x-field-39") == std::string(30, 'n'));
  a.set("x-field-39", "changed");
  CHECK(*b.find("x-field-39") == std::string(30, 'n'));  // independent of the original
  const HeaderMap& same = b;
  b = same;  // self-assignment keeps the fields
  CHECK(b.size() == 40);
  CHECK(*b.find("x-field-0") == std::string(30, 'a'));
  HeaderMap c;
  c.add("c", "1");
  c = std::move(b);
  CHECK(c.size() == 40);
  CHECK(*c.find("x-field-1") == std::string(30, 'b'));
  c.clear();
  CHECK(c.empty());
  c.add("after", "clear");  // the kept block is reused
  CHECK(*c.find("after") == "clear");
  HeaderMap empty;
  HeaderMap copy_of_empty = empty;
  CHECK(copy_of_empty.empty());
  copy_of_empty.add("", "");  // an empty field in a map without a block
  CHECK(copy_of_empty.size() == 1);
}
