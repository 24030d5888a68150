#include "trace/span.h"

#include <chrono>
#include <random>

namespace sparkgate::trace {

namespace {

// xoshiro256** (Blackman and Vigna): fast, statistically sound, and not a system call.
struct Xoshiro {
  uint64_t s[4];
  Xoshiro() {
    std::random_device rd;
    // splitmix64 spreads one random seed over the state (never all zero).
    uint64_t x = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    for (auto& v : s) {
      uint64_t z = (x += 0x9e3779b97f4a7c15ull);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      v = z ^ (z >> 31);
    }
  }
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t next() {
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
  }
};

Xoshiro& rng() {
  thread_local Xoshiro gen;
  return gen;
}

void put64(uint8_t* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<uint8_t>(v);
    v >>= 8;
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Lower-case hex only; false on anything else.
bool from_hex(std::string_view s, uint8_t* out) {
  for (size_t i = 0; i < s.size() / 2; ++i) {
    int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

template <size_t N>
bool all_zero(const std::array<uint8_t, N>& a) {
  for (auto b : a) {
    if (b) return false;
  }
  return true;
}

}  // namespace

std::optional<SpanContext> parse_traceparent(std::string_view tp) {
  if (tp.size() < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-') return std::nullopt;
  uint8_t version = 0;
  if (!from_hex(tp.substr(0, 2), &version) || version == 0xff) return std::nullopt;
  if (version == 0 && tp.size() != 55) return std::nullopt;
  if (tp.size() > 55 && tp[55] != '-') return std::nullopt;
  SpanContext c;
  if (!from_hex(tp.substr(3, 32), c.trace_id.data()) || all_zero(c.trace_id)) return std::nullopt;
  if (!from_hex(tp.substr(36, 16), c.span_id.data()) || all_zero(c.span_id)) return std::nullopt;
  if (!from_hex(tp.substr(53, 2), &c.flags)) return std::nullopt;
  return c;
}

std::string to_hex(const uint8_t* bytes, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  s.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    s.push_back(kHex[bytes[i] >> 4]);
    s.push_back(kHex[bytes[i] & 0xf]);
  }
  return s;
}

std::string format_traceparent(const SpanContext& c) {
  std::string s = "00-";
  s.reserve(55);
  s += to_hex(c.trace_id.data(), c.trace_id.size());
  s.push_back('-');
  s += to_hex(c.span_id.data(), c.span_id.size());
  s.push_back('-');
  s += to_hex(&c.flags, 1);
  return s;
}

TraceId new_trace_id() {
  TraceId id{};
  while (all_zero(id)) {
    put64(id.data(), rng().next());
    put64(id.data() + 8, rng().next());
  }
  return id;
}

SpanId new_span_id() {
  SpanId id{};
  while (all_zero(id)) put64(id.data(), rng().next());
  return id;
}

bool sample(const SpanContext* parent, const TraceId& trace_id, double ratio) {
  if (parent) return parent->sampled();
  if (ratio >= 1.0) return true;
  if (ratio <= 0.0) return false;
  uint64_t low = 0;
  for (size_t i = 8; i < 16; ++i) low = low << 8 | trace_id[i];
  // ratio * 2^64 as a bound; the comparison is exact enough for any ratio in (0, 1).
  const auto bound = static_cast<uint64_t>(ratio * 18446744073709551616.0);
  return low < bound;
}

const Attribute* Span::find(std::string_view key) const {
  for (const auto& a : attributes) {
    if (a.key == key) return &a;
  }
  return nullptr;
}

uint64_t unix_nanos_now() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

}  // namespace sparkgate::trace
