// Request correlation: the x-request-id and W3C Trace Context `traceparent` headers that
// every upstream request carries, so that backend logs and traces join the gateway's
// access log.
//
// Threading: every function is thread-safe (random ids come from a per-thread generator).
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

namespace sparkgate::observe {

// The text of a new id, kept by value: making one allocates nothing.
template <size_t N>
struct IdText {
  std::array<char, N> chars;
  std::string_view view() const { return {chars.data(), N}; }
};

// A new request id: a random UUID (version 4), e.g. "3f2a…-…".
IdText<36> new_request_id();
// A client's x-request-id is kept when it is 1–128 visible ASCII characters.
bool usable_request_id(std::string_view id);

// True for a traceparent this gateway can pass on: version 00 exactly
// "00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>" in lower case, trace-id and
// parent-id not all zero; a later version (not "ff") with that prefix.
bool valid_traceparent(std::string_view tp);
// A new trace: "00-<random trace-id>-<random parent-id>-01".
IdText<55> new_traceparent();
// The trace-id of a valid traceparent ("" otherwise).
std::string_view trace_id(std::string_view traceparent);

}  // namespace sparkgate::observe
