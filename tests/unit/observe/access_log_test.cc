#include "observe/access_log.h"

#include <boost/json.hpp>
#include <doctest/doctest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace sparkgate::observe;

namespace {

struct CapturedLog {
  std::ostringstream out;
  AccessLog log{std::make_shared<spdlog::logger>("access-test", std::make_shared<spdlog::sinks::ostream_sink_mt>(out))};
};

// The line AccessLog::rpc must write for `r`, made with boost::json (the session_end
// lines' serializer): same keys, same order, same escaping; `time` as the line had it.
std::string expected_line(const RpcRecord& r, const std::string& time) {
  boost::json::object o;
  o["time"] = time;
  o["type"] = "rpc";
  o["request_id"] = r.request_id;
  o["traceparent"] = r.traceparent;
  o["peer"] = r.peer;
  o["session"] = r.session;
  o["user"] = r.user;
  o["rpc"] = r.rpc;
  o["cluster"] = r.cluster;
  o["backend"] = r.backend;
  o["operation_id"] = r.operation_id;
  o["code"] = r.code;
  o["status"] = r.code == 0 ? "OK" : r.code == 14 ? "UNAVAILABLE" : "CANCELLED";
  o["duration_us"] = static_cast<int64_t>(r.duration_s * 1e6);
  o["bytes_in"] = r.bytes_in;
  o["bytes_out"] = r.bytes_out;
  return boost::json::serialize(o) + "\n";
}

// The time field of a line: it is plain (digits, '-', ':', 'T', '.', 'Z').
std::string time_of(const std::string& line) {
  const std::string key = "{\"time\":\"";
  REQUIRE(line.rfind(key, 0) == 0);
  return line.substr(key.size(), 24);
}

}  // namespace

TEST_CASE("access log rpc lines escape every field exactly as boost::json::serialize does") {
  // Every byte that needs an escape, at every offset in and across the 8-byte words the
  // writer scans, next to plain ASCII, UTF-8 and DEL.
  std::vector<std::string> values = {"", "a", "plain-ascii-of-more-than-eight-bytes", "quote\"in", "back\\slash",
                                     "\"", "\\", "ünïcödé — 日本語", "del\x7f", std::string(1, '\0') + "nul"};
  for (int c = 0; c < 0x20; ++c) {
    for (size_t at : {0, 3, 7, 8, 9, 15, 16}) {
      std::string v(17, 'x');
      v[at] = static_cast<char>(c);
      values.push_back(v);
    }
  }
  CapturedLog captured;
  size_t checked = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    RpcRecord r;
    r.request_id = values[i];
    r.traceparent = values[(i + 1) % values.size()];
    r.peer = values[(i + 2) % values.size()];
    r.session = values[(i + 3) % values.size()];
    r.user = values[(i + 4) % values.size()];
    r.rpc = "Config";
    r.cluster = values[(i + 5) % values.size()];
    r.backend = values[(i + 6) % values.size()];
    r.operation_id = values[(i + 7) % values.size()];
    r.code = i % 3 == 0 ? 0 : i % 3 == 1 ? 14 : 1;
    r.duration_s = 0.001234 * static_cast<double>(i);
    r.bytes_in = i * 1000003;
    r.bytes_out = UINT64_MAX - i;
    captured.out.str("");
    captured.log.rpc(r);
    const std::string line = captured.out.str();
    CAPTURE(i);
    REQUIRE(line == expected_line(r, time_of(line)));
    // And it parses back to the same values (all of these are valid UTF-8).
    const auto parsed = boost::json::parse(std::string_view(line).substr(0, line.size() - 1)).as_object();
    CHECK(parsed.at("request_id").as_string() == r.request_id);
    CHECK(parsed.at("operation_id").as_string() == r.operation_id);
    CHECK(parsed.at("bytes_out").to_number<uint64_t>() == r.bytes_out);
    ++checked;
  }
  CHECK(checked == values.size());
}

TEST_CASE("access log rpc lines: random bytes in every field, compared with boost::json::serialize") {
  std::mt19937 rng(20261204);
  std::uniform_int_distribution<int> byte(0, 255), len(0, 70), kind(0, 3);
  auto random_string = [&] {
    std::string s(static_cast<size_t>(len(rng)), '\0');
    // Mostly plain text, sometimes any byte (control characters, quotes, 0x80-0xff).
    const bool any = kind(rng) == 0;
    for (char& c : s) c = static_cast<char>(any ? byte(rng) : 0x20 + byte(rng) % 0x5f);
    return s;
  };
  CapturedLog captured;
  for (int i = 0; i < 2000; ++i) {
    std::string f[8];
    for (auto& s : f) s = random_string();
    RpcRecord r;
    r.request_id = f[0];
    r.traceparent = f[1];
    r.peer = f[2];
    r.session = f[3];
    r.user = f[4];
    r.rpc = f[5];
    r.cluster = f[6];
    r.backend = f[7];
    r.operation_id = f[0];
    r.code = 14;
    r.duration_s = 12.5;
    r.bytes_in = static_cast<uint64_t>(i);
    captured.out.str("");
    captured.log.rpc(r);
    const std::string line = captured.out.str();
    CAPTURE(i);
    REQUIRE(line == expected_line(r, time_of(line)));
  }
}
