#include "base/quote.h"

namespace sparkgate::base {

std::string quote_for_message(std::string_view s, std::size_t max_len) {
  bool printable = s.size() <= max_len;
  for (char c : s) {
    if (c < 0x20 || c > 0x7e || c == '\'') printable = false;
  }
  if (!printable) return "(unprintable)";
  // Not `"'" + std::string(s)`: g++ 12 at -O3 reports a false -Wrestrict on it, and
  // release builds use -Werror.
  std::string out;
  out.reserve(s.size() + 2);
  out += '\'';
  out += s;
  out += '\'';
  return out;
}

}  // namespace sparkgate::base
