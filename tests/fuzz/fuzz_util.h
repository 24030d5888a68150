// Helpers shared by the libFuzzer targets in this folder.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sparkgate::fuzz {

// A failed invariant: print what and where, then abort so that libFuzzer records the input
// as a crash. (assert() is compiled out of release builds; this never is.)
[[noreturn]] inline void fail(const char* file, int line, const char* what) {
  std::fprintf(stderr, "%s:%d: invariant failed: %s\n", file, line, what);
  std::abort();
}

#define FUZZ_CHECK(cond)                                                  \
  do {                                                                    \
    if (!(cond)) ::sparkgate::fuzz::fail(__FILE__, __LINE__, #cond);      \
  } while (0)

// Splits a byte string into consecutive chunks whose sizes follow from `seed`, as a socket
// would deliver them: seed 0 feeds one byte at a time; otherwise a xorshift sequence picks
// a mix of tiny (1-7), small (8-300) and large (up to 64 KiB) chunks. Deterministic, so a
// crash reproduces from the same input.
inline std::vector<std::span<const uint8_t>> chunk(std::span<const uint8_t> data, uint32_t seed) {
  std::vector<std::span<const uint8_t>> out;
  uint32_t x = seed * 2654435761u + 0x9e3779b9u;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t n = 1;
    if (seed != 0) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      switch (x % 4) {
        case 0: n = 1 + (x >> 8) % 7; break;
        case 1:
        case 2: n = 8 + (x >> 8) % 293; break;
        default: n = 1 + (x >> 8) % 65536; break;
      }
    }
    n = std::min(n, data.size() - pos);
    out.push_back(data.subspan(pos, n));
    pos += n;
  }
  return out;
}

// Reads a little-endian integer from the front of `data` (missing bytes read as zero) and
// drops those bytes.
template <typename T>
T take(std::span<const uint8_t>& data) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) {
    if (!data.empty()) {
      v |= static_cast<T>(static_cast<T>(data[0]) << (8 * i));
      data = data.subspan(1);
    }
  }
  return v;
}

inline std::string_view as_chars(std::span<const uint8_t> data) {
  return {reinterpret_cast<const char*>(data.data()), data.size()};
}

}  // namespace sparkgate::fuzz
