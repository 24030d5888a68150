// Spans as sparkgate records them, the W3C Trace Context they travel in, the ids they
// carry and the sampling decision. Plain data and pure functions, except that ids come
// from a generator per thread (seeded once per thread; no system call per id).
//
// Threading: everything here is safe from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sparkgate::trace {

using TraceId = std::array<uint8_t, 16>;
using SpanId = std::array<uint8_t, 8>;

// A span's place in a trace, as a W3C traceparent carries it.
struct SpanContext {
  TraceId trace_id{};
  SpanId span_id{};
  uint8_t flags = 0;  // bit 0: sampled

  bool sampled() const { return (flags & 1) != 0; }
};

// Parses a traceparent header: version 00 exactly "00-<32 hex>-<16 hex>-<2 hex>" in lower
// case, neither id all zero; a later version (not "ff") with that prefix, followed by
// '-' if longer (W3C Trace Context §3.2.4). nullopt for anything else.
std::optional<SpanContext> parse_traceparent(std::string_view header);
// "00-<trace-id>-<span-id>-<flags>".
std::string format_traceparent(const SpanContext& context);
std::string to_hex(const uint8_t* bytes, size_t n);

// Random, non-zero ids from this thread's generator (xoshiro256**, seeded once per thread
// from std::random_device).
TraceId new_trace_id();
SpanId new_span_id();

// Whether an RPC is traced: a parent's sampled flag when there is a valid parent, else
// the trace id decides against `ratio` (0: never, 1: always), so every service that uses
// the same rule on the same trace id agrees (the low 8 bytes of the trace id as an
// integer against ratio * 2^64, like OpenTelemetry's TraceIdRatioBased).
bool sample(const SpanContext* parent, const TraceId& trace_id, double ratio);

enum class SpanKind : uint8_t { kInternal = 1, kServer = 2, kClient = 3 };

struct Attribute {
  enum class Type : uint8_t { kString, kInt, kBool };
  std::string_view key;  // always a string literal (static storage)
  Type type = Type::kString;
  std::string text;
  int64_t number = 0;
};

struct Event {
  uint64_t time_unix_nano = 0;
  std::string name;
};

// One finished span, ready for export.
struct Span {
  TraceId trace_id{};
  SpanId span_id{};
  SpanId parent_span_id{};  // all zero: a root span
  bool has_parent = false;
  uint8_t flags = 1;
  std::string name;
  SpanKind kind = SpanKind::kInternal;
  uint64_t start_unix_nano = 0;
  uint64_t end_unix_nano = 0;
  std::vector<Attribute> attributes;
  std::vector<Event> events;
  bool error = false;          // status ERROR (else UNSET)
  std::string status_message;  // with error

  void set(std::string_view key, std::string value) {
    attributes.push_back({key, Attribute::Type::kString, std::move(value), 0});
  }
  void set(std::string_view key, int64_t value) { attributes.push_back({key, Attribute::Type::kInt, {}, value}); }
  void set_bool(std::string_view key, bool value) {
    attributes.push_back({key, Attribute::Type::kBool, {}, value ? 1 : 0});
  }
  // The attribute named `key`, or null.
  const Attribute* find(std::string_view key) const;
};

// Wall-clock time now, in nanoseconds since the Unix epoch.
uint64_t unix_nanos_now();

}  // namespace sparkgate::trace
