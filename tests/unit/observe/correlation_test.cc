#include "observe/correlation.h"

#include <doctest/doctest.h>

#include <regex>
#include <set>

using namespace sparkgate::observe;

TEST_CASE("new request ids are distinct version-4 UUIDs") {
  const std::regex uuid("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string id(new_request_id().view());
    CHECK(std::regex_match(id, uuid));
    seen.insert(id);
  }
  CHECK(seen.size() == 1000);
}

TEST_CASE("a client's request id is kept only when it is short visible ASCII") {
  CHECK(usable_request_id("req-42"));
  CHECK(usable_request_id(std::string(128, 'a')));
  CHECK_FALSE(usable_request_id(""));
  CHECK_FALSE(usable_request_id(std::string(129, 'a')));
  CHECK_FALSE(usable_request_id("has space"));
  CHECK_FALSE(usable_request_id("tab\t"));
}

TEST_CASE("traceparent validation follows W3C Trace Context") {
  const std::string good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  CHECK(valid_traceparent(good));
  CHECK(trace_id(good) == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK_FALSE(valid_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));  // upper case
  CHECK_FALSE(valid_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));  // zero trace
  CHECK_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));  // zero parent
  CHECK_FALSE(valid_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));  // version ff
  CHECK_FALSE(valid_traceparent(good + "-x"));  // version 00 has exactly four fields
  CHECK(valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"));
  CHECK_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"));
  CHECK_FALSE(valid_traceparent("garbage"));
  CHECK(trace_id("garbage").empty());
}

TEST_CASE("a new traceparent is valid, sampled, and new each time") {
  const std::string a(new_traceparent().view());
  const std::string b(new_traceparent().view());
  CHECK(valid_traceparent(a));
  CHECK(a.size() == 55);
  CHECK(a.ends_with("-01"));
  CHECK(trace_id(a) != trace_id(b));
}
