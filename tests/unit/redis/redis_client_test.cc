#include "redis/redis_client.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace sparkgate::redis;
using Type = RedisReply::Type;
using Result = RespParser::Result;

namespace {

// Every complete reply in `input`, fed in one chunk; REQUIREs no malformed input.
std::vector<RedisReply> parse_all(RespParser& p) {
  std::vector<RedisReply> out;
  RedisReply r;
  Result res;
  while ((res = p.next(r)) == Result::kReply) out.push_back(r);
  REQUIRE_MESSAGE(res == Result::kNeedMore, p.error());
  return out;
}

RedisReply parse_one(const std::string& input) {
  RespParser p;
  p.feed(input);
  auto replies = parse_all(p);
  REQUIRE(replies.size() == 1);
  CHECK(p.buffered() == 0);
  return replies[0];
}

std::string malformed(const std::string& input) {
  RespParser p;
  p.feed(input);
  RedisReply r;
  Result res;
  while ((res = p.next(r)) == Result::kReply) {
  }
  REQUIRE_MESSAGE(res == Result::kMalformed, "accepted: " << input.substr(0, 80));
  CHECK(!p.error().empty());
  CHECK(p.next(r) == Result::kMalformed);  // stays failed
  return p.error();
}

bool same(const RedisReply& a, const RedisReply& b) {
  if (a.type != b.type || a.str != b.str || a.integer != b.integer ||
      a.elements.size() != b.elements.size()) {
    return false;
  }
  for (size_t i = 0; i < a.elements.size(); ++i) {
    if (!same(a.elements[i], b.elements[i])) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("RESP encode_command writes an array of bulk strings, binary safe") {
  CHECK(encode_command({"PING"}) == "*1\r\n$4\r\nPING\r\n");
  CHECK(encode_command({"SET", "k", ""}) == "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
  const std::string binary("a\r\n\0b", 5);
  CHECK(encode_command({"ECHO", binary}) == "*2\r\n$4\r\nECHO\r\n$5\r\n" + binary + "\r\n");
  CHECK(encode_command({}) == "*0\r\n");
  // What we encode, a server-side parser would read back as the same strings: check by
  // parsing the encoding as a reply (same grammar).
  const RedisReply r = parse_one(encode_command({"SET", "key", binary}));
  REQUIRE(r.type == Type::kArray);
  REQUIRE(r.elements.size() == 3);
  CHECK(r.elements[2].str == binary);
}

TEST_CASE("RESP parser reads every reply type") {
  auto s = parse_one("+OK\r\n");
  CHECK(s.type == Type::kStatus);
  CHECK(s.str == "OK");

  auto e = parse_one("-ERR unknown command 'FOO'\r\n");
  CHECK(e.type == Type::kError);
  CHECK(e.str == "ERR unknown command 'FOO'");

  auto i = parse_one(":-9223372036854775808\r\n");
  CHECK(i.type == Type::kInteger);
  CHECK(i.integer == INT64_MIN);
  CHECK(parse_one(":0\r\n").integer == 0);
  CHECK(parse_one(":1000\r\n").integer == 1000);

  auto b = parse_one("$5\r\nhe\r\no\r\n");
  CHECK(b.type == Type::kString);
  CHECK(b.str == "he\r\no");
  auto empty = parse_one("$0\r\n\r\n");
  CHECK(empty.type == Type::kString);
  CHECK(empty.str.empty());

  CHECK(parse_one("$-1\r\n").type == Type::kNil);
  CHECK(parse_one("*-1\r\n").type == Type::kNil);

  auto a0 = parse_one("*0\r\n");
  CHECK(a0.type == Type::kArray);
  CHECK(a0.elements.empty());

  auto a = parse_one("*4\r\n$3\r\nfoo\r\n$-1\r\n:7\r\n+ok\r\n");
  REQUIRE(a.type == Type::kArray);
  REQUIRE(a.elements.size() == 4);
  CHECK(a.elements[0].str == "foo");
  CHECK(a.elements[1].type == Type::kNil);
  CHECK(a.elements[2].integer == 7);
  CHECK(a.elements[3].type == Type::kStatus);
}

TEST_CASE("RESP parser reads nested arrays, including nil and empty ones inside") {
  auto r = parse_one("*3\r\n*2\r\n:1\r\n*1\r\n$1\r\nx\r\n*-1\r\n*0\r\n");
  REQUIRE(r.type == Type::kArray);
  REQUIRE(r.elements.size() == 3);
  REQUIRE(r.elements[0].elements.size() == 2);
  CHECK(r.elements[0].elements[0].integer == 1);
  REQUIRE(r.elements[0].elements[1].elements.size() == 1);
  CHECK(r.elements[0].elements[1].elements[0].str == "x");
  CHECK(r.elements[1].type == Type::kNil);
  CHECK(r.elements[2].type == Type::kArray);
  CHECK(r.elements[2].elements.empty());

  // Exactly kRedisMaxNesting levels are accepted.
  std::string deep;
  for (size_t d = 0; d < kRedisMaxNesting; ++d) deep += "*1\r\n";
  deep += ":5\r\n";
  RedisReply v = parse_one(deep);
  for (size_t d = 0; d < kRedisMaxNesting; ++d) {
    REQUIRE(v.elements.size() == 1);
    RedisReply inner = v.elements[0];
    v = inner;
  }
  CHECK(v.integer == 5);
}

TEST_CASE("RESP parser yields several replies from one chunk, in order") {
  RespParser p;
  p.feed("+PONG\r\n:1\r\n$3\r\nabc\r\n*1\r\n:2\r\n$-1\r\n-ERR x\r\n+partial");
  auto replies = parse_all(p);
  REQUIRE(replies.size() == 6);
  CHECK(replies[0].str == "PONG");
  CHECK(replies[1].integer == 1);
  CHECK(replies[2].str == "abc");
  CHECK(replies[3].elements.at(0).integer == 2);
  CHECK(replies[4].type == Type::kNil);
  CHECK(replies[5].type == Type::kError);
  CHECK(p.buffered() == 8);
  p.feed("\r\n");
  auto rest = parse_all(p);
  REQUIRE(rest.size() == 1);
  CHECK(rest[0].str == "partial");
}

TEST_CASE("RESP parser gives the same replies whatever the split") {
  const std::string stream =
      "+OK\r\n-ERR bad\r\n:-42\r\n$6\r\nfoo\r\nb\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n"
      "*3\r\n*2\r\n$1\r\na\r\n:3\r\n$-1\r\n*1\r\n*1\r\n+deep\r\n";
  RespParser whole;
  whole.feed(stream);
  const auto expected = parse_all(whole);
  REQUIRE(expected.size() == 9);

  SUBCASE("split once at every byte boundary") {
    for (size_t cut = 0; cut <= stream.size(); ++cut) {
      RespParser p;
      p.feed(stream.substr(0, cut));
      auto got = parse_all(p);
      p.feed(stream.substr(cut));
      auto more = parse_all(p);
      got.insert(got.end(), more.begin(), more.end());
      REQUIRE_MESSAGE(got.size() == expected.size(), "cut at " << cut);
      for (size_t i = 0; i < got.size(); ++i) CHECK_MESSAGE(same(got[i], expected[i]), "cut at " << cut);
      CHECK(p.buffered() == 0);
    }
  }
  SUBCASE("one byte at a time") {
    RespParser p;
    std::vector<RedisReply> got;
    for (char c : stream) {
      p.feed(std::string_view(&c, 1));
      auto more = parse_all(p);
      got.insert(got.end(), more.begin(), more.end());
    }
    REQUIRE(got.size() == expected.size());
    for (size_t i = 0; i < got.size(); ++i) CHECK(same(got[i], expected[i]));
  }
}

TEST_CASE("RESP parser handles a long pipeline and a large bulk string in pieces") {
  RespParser p;
  std::string chunk;
  for (int i = 0; i < 5000; ++i) chunk += ":" + std::to_string(i) + "\r\n";
  int next = 0;
  for (size_t off = 0; off < chunk.size(); off += 1000) {
    p.feed(std::string_view(chunk).substr(off, 1000));
    for (const auto& r : parse_all(p)) CHECK(r.integer == next++);
  }
  CHECK(next == 5000);

  const std::string big(1 << 20, 'z');
  const std::string wire = "$" + std::to_string(big.size()) + "\r\n" + big + "\r\n";
  RespParser q;
  size_t replies = 0;
  for (size_t off = 0; off < wire.size(); off += 16384) {
    q.feed(std::string_view(wire).substr(off, 16384));
    for (const auto& r : parse_all(q)) {
      CHECK(r.str == big);
      ++replies;
    }
  }
  CHECK(replies == 1);
}

TEST_CASE("RESP parser rejects malformed input") {
  CHECK(malformed("?what\r\n").find("bad type byte 0x3f") != std::string::npos);
  malformed("%2\r\n");           // RESP3 map
  malformed("_\r\n");            // RESP3 null
  malformed("\r\n");             // empty line
  malformed(":\r\n");            // integer without digits
  malformed(":12a\r\n");         // trailing junk
  malformed(":+5\r\n");          // explicit plus sign
  malformed(":99999999999999999999\r\n");  // overflow
  malformed("$abc\r\n");         // bad length
  malformed("$-2\r\n");          // negative length other than -1
  malformed("$\r\n");
  malformed("*-5\r\n");
  malformed("*x\r\n");
  malformed("$3\r\nabcde\r\n");  // body longer than its length: no CRLF after 3 bytes
  malformed("$3\r\nab\r\n\r\n"); // body shorter: bytes after 3 are not CRLF
  malformed("*2\r\n:1\r\n!\r\n");  // bad element inside an array
}

TEST_CASE("RESP parser bounds sizes") {
  CHECK(malformed("$" + std::to_string(kRedisMaxBulkBytes + 1) + "\r\n") == "bulk string too large");
  CHECK(malformed("*" + std::to_string(kRedisMaxArrayElements + 1) + "\r\n") == "array too large");
  std::string deep;
  for (size_t d = 0; d <= kRedisMaxNesting; ++d) deep += "*1\r\n";
  CHECK(malformed(deep + ":1\r\n") == "arrays nested too deeply");
  // A line that never ends is not buffered forever.
  CHECK(malformed("+" + std::string(kRedisMaxLineBytes + 1, 'a')).find("line longer") == 0);
  // The limits themselves are fine: a header announcing the largest allowed bulk.
  RespParser p;
  p.feed("$" + std::to_string(kRedisMaxBulkBytes) + "\r\n");
  RedisReply r;
  CHECK(p.next(r) == Result::kNeedMore);
}
