// Helpers for the tests that load configs and check their errors.
#pragma once

#include <string>

#include "config/config_loader.h"

namespace sparkgate::testing {

// Whether `r` has an error on `line` whose reason contains `fragment`.
inline bool has_error(const config::LoadResult& r, int line, const std::string& fragment) {
  for (const auto& e : r.errors) {
    if (e.line == line && e.reason.find(fragment) != std::string::npos) return true;
  }
  return false;
}

// Every error of `r`, one per line (for INFO / CAPTURE).
inline std::string all_errors(const config::LoadResult& r) {
  std::string s;
  for (const auto& e : r.errors) s += e.to_string() + "\n";
  return s;
}

}  // namespace sparkgate::testing
