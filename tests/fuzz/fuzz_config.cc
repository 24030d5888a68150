// libFuzzer target: the YAML config loader (gateway/config/config_loader.h).
//
// Input: the text of a config file.
// Invariants checked:
//   - loading never crashes or throws, whatever the text;
//   - the result is either a config or errors, never both or neither;
//   - every error names a file and has a reason; an error about the fuzzed text names it
//     and a line inside it (0 for the file as a whole); to_string() is "file:line: reason"
//     ("file: reason" for line 0);
//   - loading the same text twice gives the same errors (no hidden state).
// Relative paths in the text resolve against an empty temporary directory, so file
// references fail the same way every time.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>

#include "config/config_loader.h"
#include "policy/jwt_key_builder.h"
#include "fuzz_util.h"

using namespace sparkgate;

namespace {
const std::string& base_dir() {
  static const std::string dir = [] {
    auto p = std::filesystem::temp_directory_path() / ("sparkgate-fuzz-config-" + std::to_string(::getpid()));
    std::filesystem::create_directories(p);
    return p.string();
  }();
  return dir;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  const std::string name = "fuzz.yaml";
  const auto r = config::load_config_string(yaml, name, base_dir(), policy::config_load_options());
  FUZZ_CHECK((r.config == nullptr) == !r.errors.empty());
  const int lines = static_cast<int>(std::count(yaml.begin(), yaml.end(), '\n')) + 1;
  for (const auto& e : r.errors) {
    FUZZ_CHECK(!e.file.empty());
    FUZZ_CHECK(!e.reason.empty());
    FUZZ_CHECK(e.line >= 0);
    if (e.file == name) FUZZ_CHECK(e.line <= lines + 1);
    FUZZ_CHECK(e.to_string() ==
               (e.line > 0 ? e.file + ":" + std::to_string(e.line) + ": " : e.file + ": ") + e.reason);
  }
  if (r.config) {
    FUZZ_CHECK(!r.config->listeners.empty());
  }
  const auto again = config::load_config_string(yaml, name, base_dir(), policy::config_load_options());
  FUZZ_CHECK(again.errors.size() == r.errors.size());
  for (size_t i = 0; i < r.errors.size(); ++i) FUZZ_CHECK(again.errors[i].to_string() == r.errors[i].to_string());
  FUZZ_CHECK((again.config == nullptr) == (r.config == nullptr));
  return 0;
}
