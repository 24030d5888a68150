// Quoting untrusted values (from a token, a URL, a fetched document) for error messages.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace sparkgate::base {

// Returns `s` in single quotes when it is at most `max_len` bytes of printable ASCII without
// a quote character, else "(unprintable)", so that a hostile value can neither forge a log
// line nor bloat a message. Pure; any thread.
std::string quote_for_message(std::string_view s, std::size_t max_len = 120);

}  // namespace sparkgate::base
