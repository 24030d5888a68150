#include "observe/correlation.h"

#include <array>
#include <cstdint>
#include <cstring>
#include <random>

namespace sparkgate::observe {

namespace {

std::mt19937_64& rng() {
  thread_local std::mt19937_64 gen([] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }());
  return gen;
}

// The two lower-case hex digits of every byte value.
constexpr std::array<char, 512> kHexPairs = [] {
  constexpr char kHex[] = "0123456789abcdef";
  std::array<char, 512> t{};
  for (size_t b = 0; b < 256; ++b) {
    t[2 * b] = kHex[b >> 4];
    t[2 * b + 1] = kHex[b & 0xf];
  }
  return t;
}();

// Writes the low `digits` (an even number) lower-case hex digits of `v` at `out`, a byte
// (two digits) at a time; returns the end.
char* put_hex(char* out, uint64_t v, int digits) {
  for (int shift = (digits - 2) * 4; shift >= 0; shift -= 8) {
    std::memcpy(out, &kHexPairs[2 * ((v >> shift) & 0xff)], 2);
    out += 2;
  }
  return out;
}

bool lower_hex(std::string_view s, bool& all_zero) {
  all_zero = true;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    if (c != '0') all_zero = false;
  }
  return true;
}

}  // namespace

IdText<36> new_request_id() {
  uint64_t hi = rng()(), lo = rng()();
  hi = (hi & ~0xf000ull) | 0x4000ull;                       // version 4
  lo = (lo & ~(0xc000ull << 48)) | (0x8000ull << 48);       // variant 10
  IdText<36> id;
  char* p = put_hex(id.chars.data(), hi >> 32, 8);
  *p++ = '-';
  p = put_hex(p, (hi >> 16) & 0xffff, 4);
  *p++ = '-';
  p = put_hex(p, hi & 0xffff, 4);
  *p++ = '-';
  p = put_hex(p, lo >> 48, 4);
  *p++ = '-';
  put_hex(p, lo & 0xffffffffffffull, 12);
  return id;
}

bool usable_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

bool valid_traceparent(std::string_view tp) {
  // version "-" trace-id "-" parent-id "-" flags
  if (tp.size() < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-') return false;
  bool zero = false;
  std::string_view version = tp.substr(0, 2);
  if (!lower_hex(version, zero) || version == "ff") return false;
  if (version == "00" && tp.size() != 55) return false;
  if (tp.size() > 55 && tp[55] != '-') return false;
  if (!lower_hex(tp.substr(3, 32), zero) || zero) return false;
  if (!lower_hex(tp.substr(36, 16), zero) || zero) return false;
  return lower_hex(tp.substr(53, 2), zero);
}

IdText<55> new_traceparent() {
  uint64_t a = 0, b = 0;
  while (a == 0 && b == 0) {
    a = rng()();
    b = rng()();
  }
  uint64_t span = 0;
  while (span == 0) span = rng()();
  IdText<55> tp;
  char* p = tp.chars.data();
  *p++ = '0';
  *p++ = '0';
  *p++ = '-';
  p = put_hex(p, a, 16);
  p = put_hex(p, b, 16);
  *p++ = '-';
  p = put_hex(p, span, 16);
  *p++ = '-';
  *p++ = '0';
  *p = '1';
  return tp;
}

std::string_view trace_id(std::string_view traceparent) {
  return valid_traceparent(traceparent) ? traceparent.substr(3, 32) : std::string_view();
}

}  // namespace sparkgate::observe
