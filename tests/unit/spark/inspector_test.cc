#include "spark/inspector.h"

#include <doctest/doctest.h>

#include "spark_view.pb.h"

using namespace sparkgate::spark;
namespace view = sparkgate::view;

namespace {
const RpcInfo& rpc(const char* name) {
  const RpcInfo* r = find_rpc_by_path(std::string("/spark.connect.SparkConnectService/") + name);
  REQUIRE(r != nullptr);
  return *r;
}

std::string execute_plan(const std::string& session, const std::string& user, size_t plan_bytes) {
  view::ExecutePlanRequest req;
  req.set_session_id(session);
  req.mutable_user_context()->set_user_id(user);
  req.mutable_user_context()->set_user_name(user + "-name");
  req.set_client_type("_SPARK_CONNECT_PYTHON");
  req.set_operation_id("op-1");
  std::string bytes = req.SerializeAsString();
  // Insert a plan (field 3) after user_context, as clients serialize in field order.
  view::UserContext uc = req.user_context();
  std::string head;
  {
    view::ExecutePlanRequest h;
    h.set_session_id(session);
    *h.mutable_user_context() = uc;
    head = h.SerializeAsString();
  }
  std::string plan;
  plan.push_back(static_cast<char>((3 << 3) | 2));
  uint64_t len = plan_bytes;
  while (len >= 0x80) {
    plan.push_back(static_cast<char>((len & 0x7f) | 0x80));
    len >>= 7;
  }
  plan.push_back(static_cast<char>(len));
  plan.append(plan_bytes, 'p');
  view::ExecutePlanRequest tail;
  tail.set_client_type("_SPARK_CONNECT_PYTHON");
  tail.set_operation_id("op-1");
  return head + plan + tail.SerializeAsString();
}

bool feed_all(EnvelopeScanner& s, const std::string& bytes, size_t chunk) {
  for (size_t i = 0; i < bytes.size(); i += chunk) {
    size_t n = std::min(chunk, bytes.size() - i);
    if (!s.feed({reinterpret_cast<const uint8_t*>(bytes.data() + i), n})) return false;
  }
  return true;
}
}  // namespace

TEST_CASE("inspector reads the envelope of an ExecutePlan in any chunking") {
  auto bytes = execute_plan("sess-1", "alice", 5000);
  for (size_t chunk : {size_t{1}, size_t{3}, size_t{7}, size_t{64}, size_t{100000}}) {
    CAPTURE(chunk);
    EnvelopeScanner s(rpc("ExecutePlan"), bytes.size());
    REQUIRE(feed_all(s, bytes, chunk));
    CHECK(s.finished());
    CHECK(s.complete());
    CHECK(s.routable());
    CHECK(s.envelope().session_id == "sess-1");
    CHECK(s.envelope().user_id == "alice");
    CHECK(s.envelope().user_name == "alice-name");
    REQUIRE(s.envelope().client_type.has_value());
    CHECK(*s.envelope().client_type == "_SPARK_CONNECT_PYTHON");
    REQUIRE(s.envelope().operation_id.has_value());
    CHECK(*s.envelope().operation_id == "op-1");
  }
}

TEST_CASE("inspector is routable after session_id and user_context, before a large plan has arrived") {
  auto bytes = execute_plan("s", "bob", 10 << 20);
  EnvelopeScanner s(rpc("ExecutePlan"), bytes.size());
  REQUIRE(s.feed({reinterpret_cast<const uint8_t*>(bytes.data()), 200}));
  CHECK(s.routable());
  CHECK_FALSE(s.complete());
  CHECK(s.envelope().user_id == "bob");
}

TEST_CASE("inspector reads the operation_id of ReattachExecute") {
  view::ReattachExecuteRequest r;
  r.set_session_id("s2");
  r.mutable_user_context()->set_user_id("u");
  r.set_operation_id("op-9");
  r.set_client_type("ct");
  r.set_last_response_id("resp-3");
  auto bytes = r.SerializeAsString();
  EnvelopeScanner s(rpc("ReattachExecute"), bytes.size());
  REQUIRE(feed_all(s, bytes, 5));
  CHECK(s.complete());
  CHECK(*s.envelope().operation_id == "op-9");
}

TEST_CASE("inspector: a request without session_id is not routable") {
  view::ConfigRequest r;
  r.mutable_user_context()->set_user_id("u");
  auto bytes = r.SerializeAsString();
  EnvelopeScanner s(rpc("Config"), bytes.size());
  REQUIRE(feed_all(s, bytes, 100));
  CHECK(s.finished());
  CHECK_FALSE(s.routable());
}

TEST_CASE("inspector: an empty message is finished and not routable") {
  EnvelopeScanner s(rpc("Config"), 0);
  CHECK(s.finished());
  CHECK_FALSE(s.routable());
}

TEST_CASE("inspector rejects truncated input") {
  view::ConfigRequest r;
  r.set_session_id("session");
  auto bytes = r.SerializeAsString();
  // Declare a message one byte longer than what the field says: the field header promises
  // 7 bytes, but the message ends inside a following header.
  SUBCASE("length runs past the end") {
    std::string bad = bytes.substr(0, bytes.size() - 2);
    EnvelopeScanner s(rpc("Config"), bad.size());
    CHECK_FALSE(feed_all(s, bad, 100));
    CHECK_FALSE(s.error().empty());
  }
  SUBCASE("message ends inside a tag varint") {
    std::string bad = bytes + std::string(1, '\x80');
    EnvelopeScanner s(rpc("Config"), bad.size());
    CHECK_FALSE(feed_all(s, bad, 1));
    CHECK_FALSE(s.error().empty());
  }
}

TEST_CASE("inspector rejects garbage without crashing") {
  // A deterministic pseudo-random walk over byte strings: every outcome must be a clean
  // success or a clean error.
  uint32_t x = 12345;
  for (int round = 0; round < 2000; ++round) {
    std::string junk(static_cast<size_t>(round % 97), '\0');
    for (auto& c : junk) {
      x = x * 1103515245 + 12345;
      c = static_cast<char>(x >> 16);
    }
    EnvelopeScanner s(rpc(round % 2 ? "ExecutePlan" : "Interrupt"), junk.size());
    bool ok = feed_all(s, junk, 1 + round % 5);
    if (!ok) CHECK_FALSE(s.error().empty());
  }
}

TEST_CASE("inspector rejects a tag with field number 0 and group wire types") {
  std::string zero = std::string("\x02\x00", 2);  // field 0, length-delimited
  EnvelopeScanner a(rpc("Config"), zero.size());
  CHECK_FALSE(feed_all(a, zero, 10));
  std::string group = "\x0b";  // field 1, start group
  EnvelopeScanner b(rpc("Config"), group.size());
  CHECK_FALSE(feed_all(b, group, 10));
}

TEST_CASE("inspector rejects a session_id field with the wrong wire type") {
  std::string varint_session = "\x08\x01";  // field 1 as varint
  EnvelopeScanner s(rpc("Config"), varint_session.size());
  CHECK_FALSE(feed_all(s, varint_session, 10));
  CHECK(s.error().find("length-delimited") != std::string::npos);
}

TEST_CASE("inspector caps the size of an envelope field") {
  view::ConfigRequest r;
  r.set_session_id(std::string(100000, 's'));
  auto bytes = r.SerializeAsString();
  EnvelopeScanner s(rpc("Config"), bytes.size(), 64 * 1024);
  CHECK_FALSE(feed_all(s, bytes, 4096));
  CHECK(s.error().find("allowed") != std::string::npos);
}

TEST_CASE("inspector merges repeated user_context like protobuf, and refuses repeats after routing") {
  view::ConfigRequest first;
  first.set_session_id("s");
  first.mutable_user_context()->set_user_id("alice");
  view::ConfigRequest second;
  second.mutable_user_context()->set_user_id("mallory");
  auto bytes = first.SerializeAsString() + second.SerializeAsString();
  SUBCASE("before freeze: last value wins, as the backend would see it") {
    EnvelopeScanner s(rpc("Config"), bytes.size());
    REQUIRE(feed_all(s, bytes, 3));
    CHECK(s.envelope().user_id == "mallory");
  }
  SUBCASE("after freeze: a repeated envelope field is an error") {
    auto head = first.SerializeAsString();
    EnvelopeScanner s(rpc("Config"), bytes.size());
    REQUIRE(feed_all(s, head, 3));
    REQUIRE(s.routable());
    s.freeze();
    auto rest = second.SerializeAsString();
    CHECK_FALSE(feed_all(s, rest, 3));
    CHECK(s.error().find("after the gateway routed") != std::string::npos);
  }
}

TEST_CASE("inspector refuses bytes past the declared message end") {
  std::string bytes = "\x0a\x01x";
  EnvelopeScanner s(rpc("Config"), 2);
  CHECK_FALSE(s.feed({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}));
}

TEST_CASE("rpc table knows all 12 SparkConnectService methods and nothing else") {
  CHECK(all_rpcs().size() == 12);
  for (const auto& r : all_rpcs()) {
    auto path = std::string(kServicePrefix) + std::string(r.name);
    CHECK(find_rpc_by_path(path) == &r);
  }
  CHECK(find_rpc_by_path("/spark.connect.SparkConnectService/Nope") == nullptr);
  CHECK(find_rpc_by_path("/other.Service/Config") == nullptr);
  CHECK(rpc("ExecutePlan").server_streaming);
  CHECK(rpc("ReattachExecute").server_streaming);
  CHECK(rpc("AddArtifacts").client_streaming);
  CHECK(rpc("AddArtifacts").response_session_field == 2);
  CHECK(rpc("FetchErrorDetails").response_session_field == 4);
  CHECK(rpc("AnalyzePlan").client_type_field == 3);
  CHECK(rpc("Interrupt").operation_id_field == 6);
}

TEST_CASE("inspector refuses an overlong field tag however the bytes are chunked") {
  // session_id, an empty user_context, then field 3 (length-delimited) with its tag
  // written in 6 bytes instead of 1: protobuf's reader accepts that when the whole varint
  // is buffered, the scanner must not let the chunking decide.
  const std::string bytes = std::string("\x0a\x01s\x12\x00", 5) + std::string("\x9a\x80\x80\x80\x80\x00", 6) + "\x01x";
  for (size_t chunk : {size_t{1}, size_t{2}, size_t{100}}) {
    CAPTURE(chunk);
    EnvelopeScanner s(rpc("ExecutePlan"), bytes.size());
    CHECK_FALSE(feed_all(s, bytes, chunk));
    CHECK(s.error() == "invalid field tag");
  }
  // A 5-byte tag (field 300000000: numbers above 2^25 need 5 bytes) is valid in any chunking.
  const std::string five = std::string("\x0a\x01s\x12\x00", 5) + std::string("\x82\xb0\xb4\xf8\x08", 5) + "\x01x";
  for (size_t chunk : {size_t{1}, size_t{100}}) {
    CAPTURE(chunk);
    EnvelopeScanner s(rpc("ExecutePlan"), five.size());
    CHECK(feed_all(s, five, chunk));
    CHECK(s.finished());
  }
}
