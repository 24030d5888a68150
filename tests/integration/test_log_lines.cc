// The access log and the text log in one file, as `sparkgate >log 2>&1`, systemd or a log
// shipper that merges the streams leave them: under load, every line of that file must be
// either one whole JSON access-log record or one whole text log line. The access log used
// to go out through stdio's 4 KiB buffer, which cut records wherever a block ended, and a
// text line written to stderr in between landed inside the record.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <atomic>
#include <regex>
#include <sstream>
#include <thread>

#include "harness.h"

namespace sparkgate::itest {
namespace {

namespace json = boost::json;

// spdlog's pattern of the text log (main.cc): "2026-12-02T00:12:34.567 debug ...".
const std::regex kTextLine(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} (trace|debug|info|warning|error|critical) .*)");

}  // namespace

TEST_CASE("stdout and stderr in one file under load: every line is a whole record or a whole text line") {
  FakeServer fake;
  auto opts = one_backend(fake.address());
  opts.merge_output = true;
  // debug: every locally answered RPC and every closed connection writes a text line to
  // stderr, interleaved with the access-log records on stdout.
  opts.log_level = "debug";
  opts.workers = 2;
  Gateway gw(opts);

  constexpr int kThreads = 4;
  constexpr int kConnectionsPerThread = 60;
  constexpr int kRpcsPerConnection = 50;  // half Config (forwarded), half an unknown method
  std::atomic<int> ok{0}, unimplemented{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int c = 0; c < kConnectionsPerThread; ++c) {
        auto channel = make_channel(gw.address());
        const std::string session = "00000000-0000-4000-8000-" + std::to_string(100000000000 + t * 1000 + c);
        for (int i = 0; i < kRpcsPerConnection; ++i) {
          CallResult r = (i % 2 == 0) ? call(channel, "Config", {request_for("Config", session)})
                                      : call(channel, "NoSuchRpc", {request_for("Config", session)});
          if (r.status.ok()) {
            ++ok;
          } else if (r.status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
            ++unimplemented;
          } else {
            ++other;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  const int total = kThreads * kConnectionsPerThread * kRpcsPerConnection;
  REQUIRE(other.load() == 0);
  REQUIRE(ok.load() == total / 2);
  REQUIRE(unimplemented.load() == total / 2);

  // SIGTERM: the gateway drains and writes what it still holds at exit.
  REQUIRE(gw.terminate(10s).has_value());

  std::istringstream in(gw.stdout_text());
  std::string line;
  int records = 0, rpc_records = 0, text_lines = 0, local_replies = 0, lines = 0;
  std::vector<std::string> broken;
  while (std::getline(in, line)) {
    ++lines;
    if (!line.empty() && line.front() == '{') {
      boost::system::error_code ec;
      json::value v = json::parse(line, ec);
      if (ec || !v.is_object() || !v.as_object().contains("type")) {
        broken.push_back(line);
        continue;
      }
      ++records;
      if (v.as_object().at("type").as_string() == "rpc") ++rpc_records;
    } else if (std::regex_match(line, kTextLine) && line.find("{\"time\"") == std::string::npos) {
      ++text_lines;
      if (line.find("gateway replies UNIMPLEMENTED") != std::string::npos) ++local_replies;
    } else {
      broken.push_back(line);
    }
  }
  INFO(lines << " lines: " << records << " records, " << text_lines << " text lines, " << broken.size()
             << " broken");
  std::string sample;
  for (size_t i = 0; i < broken.size() && i < 5; ++i) sample += "\n  broken line: " + broken[i].substr(0, 300);
  CHECK_MESSAGE(broken.empty(), broken.size() << " broken lines, the first ones:" << sample);
  // Every RPC left its record, and stderr really was busy in between.
  CHECK(rpc_records == total);
  CHECK(local_replies == total / 2);
  CHECK(text_lines > total / 2);
}

}  // namespace sparkgate::itest
