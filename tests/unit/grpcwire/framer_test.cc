#include "grpcwire/framer.h"

#include <doctest/doctest.h>

#include <vector>

using namespace sparkgate::grpcwire;

namespace {
std::vector<uint8_t> frame(const std::string& payload, bool compressed = false) {
  auto p = encode_prefix(static_cast<uint32_t>(payload.size()), compressed) + payload;
  return {p.begin(), p.end()};
}
}  // namespace

TEST_CASE("framer finds every message in one chunk") {
  auto a = frame("hello");
  auto b = frame("");
  auto c = frame(std::string(1000, 'x'));
  std::vector<uint8_t> all;
  for (auto* v : {&a, &b, &c}) all.insert(all.end(), v->begin(), v->end());
  Framer f(1 << 20);
  std::vector<std::pair<uint32_t, size_t>> seen;
  CHECK(f.scan(all, [&](const MessageHeader& h, size_t off) { seen.emplace_back(h.length, off); }) ==
        FramerError::kNone);
  REQUIRE(seen.size() == 3);
  CHECK(seen[0] == std::make_pair(5u, size_t{5}));
  CHECK(seen[1] == std::make_pair(0u, size_t{15}));
  CHECK(seen[2] == std::make_pair(1000u, size_t{20}));
  CHECK(f.at_boundary());
  CHECK(f.messages() == 3);
}

TEST_CASE("framer handles a prefix split across chunks, byte by byte") {
  auto a = frame("abcdef");
  auto b = frame("xyz");
  std::vector<uint8_t> all(a);
  all.insert(all.end(), b.begin(), b.end());
  Framer f(1 << 20);
  std::vector<uint32_t> lengths;
  for (size_t i = 0; i < all.size(); ++i) {
    CHECK(f.scan(std::span<const uint8_t>(&all[i], 1),
                 [&](const MessageHeader& h, size_t) { lengths.push_back(h.length); }) == FramerError::kNone);
    if (i == 4) CHECK(lengths.size() == 1);
    if (i == 5) CHECK_FALSE(f.at_boundary());
  }
  CHECK(lengths == std::vector<uint32_t>{6, 3});
  CHECK(f.at_boundary());
}

TEST_CASE("framer rejects a message above the limit from its prefix alone") {
  auto prefix = encode_prefix(128u * 1024 * 1024 + 1);
  Framer f(128u * 1024 * 1024);
  std::vector<uint8_t> bytes(prefix.begin(), prefix.end());
  CHECK(f.scan(bytes) == FramerError::kTooLarge);
  CHECK(f.last_header().length == 128u * 1024 * 1024 + 1);
  // The error sticks.
  CHECK(f.scan(bytes) == FramerError::kTooLarge);
}

TEST_CASE("framer accepts a message exactly at the limit") {
  Framer f(16);
  auto m = frame(std::string(16, 'a'));
  CHECK(f.scan(m) == FramerError::kNone);
  CHECK(f.at_boundary());
}

TEST_CASE("framer rejects an invalid compressed flag") {
  std::vector<uint8_t> bad{2, 0, 0, 0, 1, 'x'};
  Framer f(1024);
  CHECK(f.scan(bad) == FramerError::kBadFlag);
}

TEST_CASE("framer reports the compressed flag") {
  Framer f(1024);
  auto m = frame("zz", true);
  bool compressed = false;
  f.scan(m, [&](const MessageHeader& h, size_t) { compressed = h.compressed; });
  CHECK(compressed);
}
