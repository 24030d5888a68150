#include "spark/user_context.h"

#include <doctest/doctest.h>
#include <google/protobuf/any.pb.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "grpcwire/framer.h"
#include "spark/inspector.h"
#include "spark_view.pb.h"

using namespace sparkgate::spark;
namespace view = sparkgate::view;
using google::protobuf::internal::WireFormatLite;

namespace {

const RpcInfo& rpc(const char* name) {
  const RpcInfo* r = find_rpc_by_path(std::string("/spark.connect.SparkConnectService/") + name);
  REQUIRE(r != nullptr);
  return *r;
}

// ---- hand encoding ----

std::string varint(uint64_t v) {
  std::string s;
  while (v >= 0x80) {
    s.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  s.push_back(static_cast<char>(v));
  return s;
}

std::string tag(int field, int wire_type) { return varint((static_cast<uint64_t>(field) << 3) | wire_type); }
std::string ld(int field, std::string_view bytes) { return tag(field, 2) + varint(bytes.size()) + std::string(bytes); }
std::string vi(int field, uint64_t v) { return tag(field, 0) + varint(v); }
std::string f32(int field, uint32_t v) { return tag(field, 5) + std::string(reinterpret_cast<const char*>(&v), 4); }
std::string f64(int field, uint64_t v) { return tag(field, 1) + std::string(reinterpret_cast<const char*>(&v), 8); }

std::string any_extension(const std::string& type_url, const std::string& value) {
  google::protobuf::Any any;
  any.set_type_url(type_url);
  any.set_value(value);
  return ld(999, any.SerializeAsString());
}

std::string frame(const std::string& payload) {
  return sparkgate::grpcwire::encode_prefix(static_cast<uint32_t>(payload.size())) + payload;
}

uint32_t prefix_length(std::string_view head) {
  REQUIRE(head.size() >= 5);
  uint32_t n = 0;
  for (size_t i = 1; i < 5; ++i) n = (n << 8) | static_cast<uint8_t>(head[i]);
  return n;
}

// ---- test-side decoding ----

struct Field {
  int number;
  std::string bytes;  // tag through end of the field, as on the wire
};

// Splits a user_context occurrence (tag + length + UserContext) into its inner fields.
std::vector<Field> inner_fields(std::string_view occurrence) {
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(occurrence.data()),
                                            static_cast<int>(occurrence.size()));
  REQUIRE(in.ReadTag() == WireFormatLite::MakeTag(2, WireFormatLite::WIRETYPE_LENGTH_DELIMITED));
  uint32_t length = 0;
  REQUIRE(in.ReadVarint32(&length));
  REQUIRE(static_cast<size_t>(in.CurrentPosition()) + length == occurrence.size());
  std::vector<Field> out;
  while (in.CurrentPosition() < static_cast<int>(occurrence.size())) {
    int start = in.CurrentPosition();
    uint32_t t = in.ReadTag();
    REQUIRE(t != 0);
    REQUIRE(WireFormatLite::SkipField(&in, t));
    out.push_back({static_cast<int>(WireFormatLite::GetTagFieldNumber(t)),
                   std::string(occurrence.substr(static_cast<size_t>(start),
                                                 static_cast<size_t>(in.CurrentPosition() - start)))});
  }
  return out;
}

std::vector<std::string> other_inner_fields(std::string_view occurrence) {
  std::vector<std::string> out;
  for (auto& f : inner_fields(occurrence))
    if (f.number != 1 && f.number != 2) out.push_back(f.bytes);
  return out;
}

struct ScanResult {
  std::vector<FieldSpan> spans;
  Envelope envelope;
};

// Feeds `available` (a prefix of a message of `message_length` bytes) in random chunks.
ScanResult scan(const RpcInfo& r, uint64_t message_length, std::string_view available, std::mt19937& rng) {
  EnvelopeScanner s(r, message_length);
  static constexpr size_t kMaxChunks[] = {1, 2, 7, 64, 4096, size_t{1} << 30};
  size_t max_chunk = kMaxChunks[rng() % std::size(kMaxChunks)];
  size_t pos = 0;
  while (pos < available.size()) {
    size_t n = std::min<size_t>(available.size() - pos, 1 + rng() % max_chunk);
    bool ok = s.feed({reinterpret_cast<const uint8_t*>(available.data() + pos), n});
    INFO(s.error());
    REQUIRE(ok);
    pos += n;
  }
  const auto spans = s.user_context_spans();
  return {{spans.begin(), spans.end()}, s.envelope()};
}

struct Case {
  std::string payload{};                // the whole first message
  size_t head_payload_bytes = SIZE_MAX;  // how much of it the head holds (SIZE_MAX: all)
  std::string later{};                  // bytes of later messages (only with a whole payload)
  std::string user_id = "principal";
  std::string user_name{};              // empty: expect user_id
  const char* rpc = "ExecutePlan";
};

struct Checked {
  SpliceResult result;
  std::string new_payload;  // the whole new first message payload
};

// Splices `c` and checks every property the splice promises. Returns the result and the
// whole new payload (the head's part plus the untouched rest of the original).
Checked splice_and_check(const Case& c, std::mt19937& rng) {
  const RpcInfo& r = rpc(c.rpc);
  const size_t have = std::min(c.head_payload_bytes, c.payload.size());
  const bool whole = have == c.payload.size();
  const std::string head = frame(c.payload).substr(0, 5 + have) + (whole ? c.later : std::string());
  const std::string_view old_payload = std::string_view(head).substr(5, have);
  const std::string expected_name = c.user_name.empty() ? c.user_id : c.user_name;

  ScanResult before = scan(r, c.payload.size(), old_payload, rng);
  SpliceResult res = splice_user_context(head, before.spans, c.user_id, c.user_name);
  INFO(res.error);
  REQUIRE(res.ok());

  // (a) the prefix announces the new payload length; the head grew by exactly delta.
  CHECK(res.head.size() == static_cast<size_t>(static_cast<int64_t>(head.size()) + res.delta));
  CHECK(res.head[0] == '\0');
  const uint64_t new_length = prefix_length(res.head);
  CHECK(static_cast<int64_t>(new_length) == static_cast<int64_t>(c.payload.size()) + res.delta);
  const size_t new_have = static_cast<size_t>(static_cast<int64_t>(have) + res.delta);
  const std::string_view new_payload = std::string_view(res.head).substr(5, new_have);
  // Later messages are untouched.
  CHECK(std::string_view(res.head).substr(5 + new_have) == (whole ? c.later : std::string()));

  // (b) a scan of the new bytes sees the principal.
  ScanResult after = scan(r, new_length, new_payload, rng);
  CHECK(after.envelope.has_user_context);
  CHECK(after.envelope.user_id == c.user_id);
  CHECK(after.envelope.user_name == expected_name);
  CHECK(after.envelope.session_id == before.envelope.session_id);
  CHECK(after.envelope.client_type == before.envelope.client_type);
  CHECK(after.envelope.operation_id == before.envelope.operation_id);
  REQUIRE(after.spans.size() == std::max<size_t>(1, before.spans.size()));

  // (c) every byte outside the spans is identical, and the spans shift by the growth so far.
  if (before.spans.empty()) {
    CHECK(after.spans[0].offset == 0);
    CHECK(new_payload.substr(after.spans[0].length) == old_payload);
  } else {
    uint64_t old_end = 0, new_end = 0;
    for (size_t i = 0; i < before.spans.size(); ++i) {
      const auto& o = before.spans[i];
      const auto& n = after.spans[i];
      CAPTURE(i);
      REQUIRE(o.offset - old_end == n.offset - new_end);
      CHECK(old_payload.substr(old_end, o.offset - old_end) == new_payload.substr(new_end, n.offset - new_end));
      old_end = o.offset + o.length;
      new_end = n.offset + n.length;
    }
    CHECK(static_cast<int64_t>(new_end) - static_cast<int64_t>(old_end) == res.delta);
    CHECK(old_payload.substr(old_end) == new_payload.substr(new_end));
  }

  // (d) the first occurrence starts with the principal; every occurrence keeps its other
  // fields byte for byte; no user_id/user_name is left anywhere else.
  for (size_t i = 0; i < after.spans.size(); ++i) {
    CAPTURE(i);
    auto fields = inner_fields(new_payload.substr(after.spans[i].offset, after.spans[i].length));
    size_t first_other = 0;
    if (i == 0) {
      REQUIRE(fields.size() >= 2);
      CHECK(fields[0].bytes == ld(1, c.user_id));
      CHECK(fields[1].bytes == ld(2, expected_name));
      first_other = 2;
    }
    std::vector<std::string> others;
    for (size_t k = first_other; k < fields.size(); ++k) {
      CHECK(fields[k].number != 1);
      CHECK(fields[k].number != 2);
      others.push_back(fields[k].bytes);
    }
    if (!before.spans.empty()) {
      auto& o = before.spans[i];
      CHECK(others == other_inner_fields(old_payload.substr(o.offset, o.length)));
    } else {
      CHECK(others.empty());
    }
  }

  std::string full = std::string(new_payload) + c.payload.substr(have);
  CHECK(full.size() == new_length);
  // (b) again, with protobuf itself over the whole new message.
  view::ExecutePlanRequest parsed;
  REQUIRE(parsed.ParseFromString(full));
  CHECK(parsed.user_context().user_id() == c.user_id);
  CHECK(parsed.user_context().user_name() == expected_name);
  return {std::move(res), std::move(full)};
}

std::string user_context(const std::string& inner) { return ld(2, inner); }

}  // namespace

// ---- the scanner's record of user_context ----

TEST_CASE("inspector records where each user_context lies, in any chunking") {
  // A user_context longer than 127 bytes has a 2-byte length, so its header can straddle
  // chunks in several ways; unknown fields before it move its offset.
  const std::string uc1 = user_context(ld(1, std::string(200, 'u')) + any_extension("type.googleapis.com/x", "v"));
  const std::string uc2 = user_context(ld(2, "name"));
  const std::string payload =
      vi(100, 300) + ld(1, "session") + f64(5000, 7) + uc1 + ld(3, std::string(1000, 'p')) + uc2 + ld(4, "ct");
  const uint64_t uc1_at = vi(100, 300).size() + ld(1, "session").size() + f64(5000, 7).size();
  const uint64_t uc2_at = uc1_at + uc1.size() + ld(3, std::string(1000, 'p')).size();
  for (size_t chunk = 1; chunk <= 20; ++chunk) {
    CAPTURE(chunk);
    EnvelopeScanner s(rpc("ExecutePlan"), payload.size());
    for (size_t i = 0; i < payload.size(); i += chunk) {
      size_t n = std::min(chunk, payload.size() - i);
      REQUIRE(s.feed({reinterpret_cast<const uint8_t*>(payload.data() + i), n}));
    }
    REQUIRE(s.user_context_spans().size() == 2);
    CHECK(s.user_context_spans()[0].offset == uc1_at);
    CHECK(s.user_context_spans()[0].length == uc1.size());
    CHECK(s.user_context_spans()[1].offset == uc2_at);
    CHECK(s.user_context_spans()[1].length == uc2.size());
  }
}

TEST_CASE("inspector records an empty user_context and none when it is absent") {
  std::string with_empty = ld(1, "s") + user_context("");
  EnvelopeScanner a(rpc("Config"), with_empty.size());
  REQUIRE(a.feed({reinterpret_cast<const uint8_t*>(with_empty.data()), with_empty.size()}));
  REQUIRE(a.user_context_spans().size() == 1);
  CHECK(a.user_context_spans()[0].offset == 3);
  CHECK(a.user_context_spans()[0].length == 2);

  std::string without = ld(1, "s") + ld(4, "ct");
  EnvelopeScanner b(rpc("Config"), without.size());
  REQUIRE(b.feed({reinterpret_cast<const uint8_t*>(without.data()), without.size()}));
  CHECK(b.user_context_spans().empty());
}

TEST_CASE("inspector refuses more user_context occurrences than it records") {
  std::string payload = ld(1, "s");
  for (size_t i = 0; i < EnvelopeScanner::kMaxUserContextSpans; ++i) payload += user_context(ld(1, "u"));
  {
    EnvelopeScanner s(rpc("Config"), payload.size());
    REQUIRE(s.feed({reinterpret_cast<const uint8_t*>(payload.data()), payload.size()}));
    CHECK(s.user_context_spans().size() == EnvelopeScanner::kMaxUserContextSpans);
  }
  payload += user_context(ld(1, "u"));
  EnvelopeScanner s(rpc("Config"), payload.size());
  CHECK_FALSE(s.feed({reinterpret_cast<const uint8_t*>(payload.data()), payload.size()}));
  CHECK(s.error().find("user_context appears more than 16 times") != std::string::npos);
}

// ---- splice shapes ----

TEST_CASE("splice inserts a user_context when the request has none") {
  std::mt19937 rng(1);
  SUBCASE("session only") {
    view::ConfigRequest r;
    r.set_session_id("sess");
    r.set_client_type("ct");
    auto checked = splice_and_check({.payload = r.SerializeAsString(), .rpc = "Config"}, rng);
    // The new field goes first; the original message follows unchanged.
    CHECK(checked.new_payload == user_context(ld(1, "principal") + ld(2, "principal")) + r.SerializeAsString());
  }
  SUBCASE("an empty message") {
    auto checked = splice_and_check({.payload = "", .rpc = "Config"}, rng);
    CHECK(checked.new_payload == user_context(ld(1, "principal") + ld(2, "principal")));
  }
}

TEST_CASE("splice replaces a user_context that has only user_id") {
  std::mt19937 rng(2);
  view::ExecutePlanRequest r;
  r.set_session_id("sess");
  r.mutable_user_context()->set_user_id("mallory");
  r.set_client_type("ct");
  r.set_operation_id("op");
  auto checked = splice_and_check({.payload = r.SerializeAsString(), .user_id = "alice", .user_name = "Alice A."}, rng);
  view::ExecutePlanRequest expected = r;
  expected.mutable_user_context()->set_user_id("alice");
  expected.mutable_user_context()->set_user_name("Alice A.");
  CHECK(checked.new_payload == expected.SerializeAsString());
}

TEST_CASE("splice sets user_name to user_id when the principal has no name") {
  std::mt19937 rng(3);
  view::ExecutePlanRequest r;
  r.set_session_id("sess");
  r.mutable_user_context()->set_user_id("mallory");
  r.mutable_user_context()->set_user_name("Mallory");
  auto checked = splice_and_check({.payload = r.SerializeAsString(), .user_id = "bob"}, rng);
  view::ExecutePlanRequest parsed;
  REQUIRE(parsed.ParseFromString(checked.new_payload));
  CHECK(parsed.user_context().user_name() == "bob");
}

TEST_CASE("splice keeps extensions and unknown inner fields byte for byte") {
  std::mt19937 rng(4);
  const std::string ext1 = any_extension("type.googleapis.com/spark.connect.Tag", std::string("\x0a\x03") + "abc");
  const std::string ext2 = any_extension("type.example.com/Other", std::string(300, '\xff'));
  const std::string inner = vi(3, 1) + ld(1, "mallory") + f32(100, 0xdeadbeef) + ld(2, "Mallory") +
                            f64(5000, 0x0102030405060708ull) + ext1 + ld(7, "seven") + ext2 + vi(536870911, 9);
  const std::string payload = ld(1, "sess") + user_context(inner) + ld(4, "ct") + ld(6, "op");
  auto checked = splice_and_check({.payload = payload, .user_id = "alice", .user_name = "Alice"}, rng);
  const std::string expected_inner = ld(1, "alice") + ld(2, "Alice") + vi(3, 1) + f32(100, 0xdeadbeef) +
                                     f64(5000, 0x0102030405060708ull) + ext1 + ld(7, "seven") + ext2 +
                                     vi(536870911, 9);
  CHECK(checked.new_payload == ld(1, "sess") + user_context(expected_inner) + ld(4, "ct") + ld(6, "op"));
  // The extensions still parse as the same Any values.
  auto fields = inner_fields(user_context(expected_inner));
  std::vector<std::string> type_urls;
  for (auto& f : fields) {
    if (f.number != 999) continue;
    google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(f.bytes.data()),
                                              static_cast<int>(f.bytes.size()));
    in.ReadTag();
    std::string body;
    uint32_t n = 0;
    REQUIRE(in.ReadVarint32(&n));
    REQUIRE(in.ReadString(&body, static_cast<int>(n)));
    google::protobuf::Any any;
    REQUIRE(any.ParseFromString(body));
    type_urls.push_back(any.type_url());
  }
  CHECK(type_urls == std::vector<std::string>{"type.googleapis.com/spark.connect.Tag", "type.example.com/Other"});
}

TEST_CASE("splice keeps top-level unknown fields before, between and after byte for byte") {
  std::mt19937 rng(5);
  const std::string payload = f32(100, 1) + ld(5000, "before") + ld(1, "sess") + vi(9, 1ull << 62) +
                              f64(100, 3) + user_context(ld(1, "mallory")) + ld(5000, std::string(200, 'z')) +
                              vi(100, 0) + ld(4, "ct") + f32(123456, 4);
  auto checked = splice_and_check({.payload = payload, .user_id = "alice"}, rng);
  CHECK(checked.new_payload == f32(100, 1) + ld(5000, "before") + ld(1, "sess") + vi(9, 1ull << 62) + f64(100, 3) +
                                   user_context(ld(1, "alice") + ld(2, "alice")) + ld(5000, std::string(200, 'z')) +
                                   vi(100, 0) + ld(4, "ct") + f32(123456, 4));
}

TEST_CASE("splice rewrites every occurrence of a split user_context") {
  std::mt19937 rng(6);
  const std::string ext = any_extension("type.googleapis.com/x", "y");
  SUBCASE("user_id in one occurrence, user_name and an extension in the next") {
    const std::string payload =
        ld(1, "sess") + user_context(ld(1, "mallory")) + f32(100, 5) + user_context(ld(2, "Mallory") + ext);
    auto checked = splice_and_check({.payload = payload, .user_id = "alice"}, rng);
    CHECK(checked.new_payload == ld(1, "sess") + user_context(ld(1, "alice") + ld(2, "alice")) + f32(100, 5) +
                                     user_context(ext));
  }
  SUBCASE("the backend's merge of three occurrences sees only the principal") {
    const std::string payload = ld(1, "sess") + user_context(ext) + ld(3, "plan") +
                                user_context(ld(2, "n") + ld(1, "mallory")) + user_context(ld(1, "eve") + ext);
    auto checked = splice_and_check({.payload = payload, .user_id = "alice", .user_name = "Alice"}, rng);
    CHECK(checked.new_payload == ld(1, "sess") + user_context(ld(1, "alice") + ld(2, "Alice") + ext) + ld(3, "plan") +
                                     user_context("") + user_context(ext));
  }
}

TEST_CASE("splice rewrites the head of a 1 MiB ExecutePlan without the rest of the payload") {
  std::mt19937 rng(7);
  view::ExecutePlanRequest r;
  r.set_session_id("sess");
  r.mutable_user_context()->set_user_id("mallory");
  r.mutable_user_context()->set_user_name("Mallory");
  std::string plan(1 << 20, '\0');
  for (auto& ch : plan) ch = static_cast<char>(rng());
  std::string payload = r.SerializeAsString() + ld(3, plan);
  view::ExecutePlanRequest tail;
  tail.set_client_type("_SPARK_CONNECT_PYTHON");
  tail.set_operation_id("op-1");
  payload += tail.SerializeAsString();
  for (size_t have : {size_t{60}, size_t{300}, size_t{64 << 10}}) {
    CAPTURE(have);
    auto checked = splice_and_check(
        {.payload = payload, .head_payload_bytes = have, .user_id = "a-much-longer-principal-name"}, rng);
    CHECK(checked.result.delta == static_cast<int64_t>(2 * (std::string("a-much-longer-principal-name").size() - 7)));
    // The head ends where the original head ended: no plan byte was read past it.
    CHECK(checked.result.head.size() == 5 + have + static_cast<size_t>(checked.result.delta));
    view::ExecutePlanRequest parsed;
    REQUIRE(parsed.ParseFromString(checked.new_payload));
    CHECK(parsed.operation_id() == "op-1");
  }
}

TEST_CASE("splice leaves a later message in the head untouched") {
  std::mt19937 rng(8);
  view::AddArtifactsRequest first;
  first.set_session_id("sess");
  first.mutable_user_context()->set_user_id("mallory");
  view::AddArtifactsRequest second;
  second.set_session_id("sess");
  second.mutable_user_context()->set_user_id("mallory");
  const std::string later = frame(second.SerializeAsString() + ld(3, "chunk"));
  SUBCASE("whole later message") {
    splice_and_check({.payload = first.SerializeAsString(), .later = later, .user_id = "alice", .rpc = "AddArtifacts"},
                     rng);
  }
  SUBCASE("part of the later message's prefix") {
    splice_and_check(
        {.payload = first.SerializeAsString(), .later = later.substr(0, 3), .user_id = "alice", .rpc = "AddArtifacts"},
        rng);
  }
}

TEST_CASE("splice handles length varints that change size") {
  std::mt19937 rng(9);
  // 127 -> 128 bytes and beyond moves the user_context and string length varints from one
  // byte to two or three.
  for (size_t old_len : {size_t{0}, size_t{1}, size_t{60}, size_t{127}, size_t{128}, size_t{20000}}) {
    for (size_t new_len : {size_t{1}, size_t{61}, size_t{62}, size_t{127}, size_t{128}, size_t{16384}, size_t{30000}}) {
      CAPTURE(old_len);
      CAPTURE(new_len);
      std::string inner = old_len ? ld(1, std::string(old_len, 'o')) : std::string();
      std::string payload = ld(1, "sess") + user_context(inner) + ld(4, "ct");
      splice_and_check({.payload = payload, .user_id = std::string(new_len, 'n')}, rng);
    }
  }
}

TEST_CASE("splice writes a UTF-8 principal as is") {
  std::mt19937 rng(10);
  std::string payload = ld(1, "sess") + user_context(ld(1, "x"));
  const std::string id = "j\xc3\xbcrgen";             // jürgen
  const std::string name = "J\xc3\xbcrgen \xe2\x9c\x93";  // Jürgen ✓
  auto checked = splice_and_check({.payload = payload, .user_id = id, .user_name = name}, rng);
  CHECK(checked.new_payload == ld(1, "sess") + user_context(ld(1, id) + ld(2, name)));
}

// ---- errors ----

TEST_CASE("splice refuses what it cannot rewrite") {
  const std::string payload = ld(1, "sess") + user_context(ld(1, "mallory")) + ld(4, "ct");
  const std::string head = frame(payload);
  const std::vector<FieldSpan> good = {{6, ld(1, "mallory").size() + 2}};
  REQUIRE(splice_user_context(head, good, "alice", "").ok());

  auto error_of = [](std::string_view h, std::vector<FieldSpan> spans, std::string_view uid = "alice",
                     std::string_view uname = "") {
    auto r = splice_user_context(h, spans, uid, uname);
    CHECK_FALSE(r.ok());
    CHECK(r.head.empty());
    return r.error;
  };

  CHECK(error_of(head.substr(0, 4), {}).find("shorter than the gRPC message prefix") != std::string::npos);
  CHECK(error_of("", {}).find("shorter") != std::string::npos);

  std::string compressed = head;
  compressed[0] = 1;
  CHECK(error_of(compressed, good).find("compressed") != std::string::npos);
  compressed[0] = 2;
  CHECK(error_of(compressed, good).find("invalid gRPC compressed flag") != std::string::npos);

  SUBCASE("spans outside the payload bytes in the head") {
    CHECK(error_of(head.substr(0, 5 + 10), good).find("outside") != std::string::npos);
    CHECK(error_of(head, {{payload.size(), 1}}).find("outside") != std::string::npos);
    CHECK(error_of(head, {{UINT64_MAX, 2}}).find("outside") != std::string::npos);
    CHECK(error_of(head, {{6, UINT64_MAX}}).find("outside") != std::string::npos);
    // Bytes of a later message are not the first message's.
    std::string two = head + frame(payload);
    CHECK(error_of(two, {{payload.size() + 5 + 6, good[0].length}}).find("outside") != std::string::npos);
  }
  SUBCASE("spans that overlap or go backwards") {
    CHECK(error_of(head, {good[0], good[0]}).find("overlap") != std::string::npos);
    CHECK(error_of(head, {{0, 6}, {5, 2}}).find("overlap") != std::string::npos);
  }
  SUBCASE("a span that is not a user_context field") {
    CHECK(error_of(head, {{0, 6}}).find("field 2") != std::string::npos);        // session_id
    CHECK(error_of(head, {{6, good[0].length - 1}}).find("length") != std::string::npos);
    CHECK(error_of(head, {{6, 0}}).find("field 2") != std::string::npos);
  }
  SUBCASE("a user_context that is not a valid UserContext") {
    auto error_for_inner = [&](const std::string& inner) {
      std::string p = user_context(inner);
      return error_of(frame(p), {{0, p.size()}});
    };
    CHECK(error_for_inner(vi(1, 5)).find("must be length-delimited") != std::string::npos);
    CHECK(error_for_inner(f32(2, 5)).find("must be length-delimited") != std::string::npos);
    CHECK(error_for_inner(tag(7, 3) + tag(7, 4)).find("wire type 3") != std::string::npos);
    CHECK(error_for_inner(tag(7, 4)).find("wire type 4") != std::string::npos);
    CHECK(error_for_inner(tag(7, 6)).find("wire type") != std::string::npos);
    CHECK(error_for_inner(std::string("\x00", 1)).find("invalid field tag") != std::string::npos);
    CHECK(error_for_inner(tag(0, 2) + varint(0)).find("field number 0") != std::string::npos);
    CHECK(error_for_inner(tag(1, 2) + varint(5) + "abc").find("truncated") != std::string::npos);
    CHECK(error_for_inner(f64(100, 1).substr(0, 5)).find("truncated") != std::string::npos);
    CHECK(error_for_inner(tag(100, 0) + "\x80").find("truncated") != std::string::npos);
    CHECK(error_for_inner("\x80").find("invalid field tag") != std::string::npos);
  }
  SUBCASE("a principal the backend would refuse") {
    CHECK(error_of(head, good, "").find("user_id is empty") != std::string::npos);
    CHECK(error_of(head, good, "", "name").find("user_id is empty") != std::string::npos);
    CHECK(error_of(head, good, "\xff").find("UTF-8") != std::string::npos);
    CHECK(error_of(head, good, "alice", "\xc3").find("UTF-8") != std::string::npos);
  }
  SUBCASE("a message that would outgrow the 4-byte length") {
    // The head holds 10 bytes of a message that declares 2^32 - 8 bytes.
    std::string big = sparkgate::grpcwire::encode_prefix(UINT32_MAX - 7) + ld(1, "sessxxxx");
    CHECK(error_of(big, {}).find("longer than 4 GiB") != std::string::npos);
    // Shrinking one is fine even at the limit.
    std::string uc = user_context(ld(1, std::string(100, 'm')));
    std::string at_limit = sparkgate::grpcwire::encode_prefix(UINT32_MAX) + uc;
    auto r = splice_user_context(at_limit, std::vector<FieldSpan>{{0, uc.size()}}, "a", "");
    REQUIRE(r.ok());
    CHECK(prefix_length(r.head) == UINT32_MAX - (uc.size() - user_context(ld(1, "a") + ld(2, "a")).size()));
  }
}

// ---- property ----

TEST_CASE("splice keeps every other byte of random messages") {
  std::mt19937 rng(20240601);
  auto random_bytes = [&](size_t n) {
    std::string s(n, '\0');
    for (auto& ch : s) ch = static_cast<char>(rng());
    return s;
  };
  auto random_string = [&](size_t n) {
    // ASCII and two- and three-byte UTF-8 sequences.
    std::string s;
    while (s.size() < n) {
      switch (rng() % 3) {
        case 0: s.push_back(static_cast<char>('a' + rng() % 26)); break;
        case 1: s += "\xc3\xa9"; break;
        default: s += "\xe2\x82\xac"; break;
      }
    }
    return s;
  };
  // Field numbers the scanner and the ExecutePlan view do not read (3 = plan, 5 = options).
  const int kUnknown[] = {3, 5, 9, 15, 16, 100, 999, 2047, 2048, 5000, 123456, 536870911};
  auto random_unknown_field = [&](int number) {
    switch (rng() % 4) {
      case 0: return vi(number, rng() % 2 ? rng() % 128 : (uint64_t{rng()} << 32 | rng()));
      case 1: return f32(number, rng());
      case 2: return f64(number, uint64_t{rng()} << 32 | rng());
      default: return ld(number, random_bytes(rng() % 3 == 0 ? 100 + rng() % 400 : rng() % 20));
    }
  };
  auto random_unknowns = [&](int max) {
    std::string s;
    for (int n = static_cast<int>(rng() % (max + 1)); n > 0; --n)
      s += random_unknown_field(kUnknown[rng() % std::size(kUnknown)]);
    return s;
  };
  auto random_user_context = [&] {
    std::string inner;
    for (int n = static_cast<int>(rng() % 6); n > 0; --n) {
      switch (rng() % 5) {
        case 0: inner += ld(1, random_string(rng() % 40)); break;
        case 1: inner += ld(2, random_string(rng() % 200)); break;
        case 2:
          inner += any_extension("type.googleapis.com/t" + std::to_string(rng() % 100), random_bytes(rng() % 50));
          break;
        default: inner += random_unknown_field(kUnknown[rng() % std::size(kUnknown)]); break;
      }
    }
    return user_context(inner);
  };

  for (int round = 0; round < 400; ++round) {
    CAPTURE(round);
    std::string payload = random_unknowns(2);
    if (rng() % 4) payload += ld(1, "sess-" + std::to_string(round)) + random_unknowns(2);
    int occurrences = static_cast<int>(rng() % 4);
    if (occurrences == 3 && rng() % 2) occurrences = static_cast<int>(EnvelopeScanner::kMaxUserContextSpans);
    for (int i = 0; i < occurrences; ++i) payload += random_user_context() + random_unknowns(1);
    const size_t envelope_end = payload.size();
    if (rng() % 2) payload += ld(3, random_bytes(rng() % 3 == 0 ? 70000 : rng() % 300));
    if (rng() % 2) payload += ld(4, "_SPARK_CONNECT_PYTHON");
    if (rng() % 2) payload += ld(6, "op-" + std::to_string(round));
    payload += random_unknowns(2);

    Case c;
    c.payload = payload;
    // A head covers at least every user_context; it may hold the whole message and a
    // piece of the next one.
    if (rng() % 2) c.head_payload_bytes = envelope_end + rng() % (payload.size() - envelope_end + 1);
    if (c.head_payload_bytes >= payload.size() && rng() % 2)
      c.later = frame(random_bytes(rng() % 50)).substr(0, rng() % 55);
    c.user_id = random_string(1 + rng() % (rng() % 8 == 0 ? 300 : 30));
    if (rng() % 2) c.user_name = random_string(1 + rng() % 150);
    splice_and_check(c, rng);
  }
}
