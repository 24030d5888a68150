#include "proc_stats.h"

#include <unistd.h>

#include <array>
#include <cstdio>

#include <fstream>
#include <sstream>
#include <string>

namespace sparkgate::bench {

namespace {

// The first fields of alloc_counter.cc's Counters: magic, allocations, frees, then (after
// six per-function counts) bytes.
void read_alloc_counts(const std::string& path, ProcSample& sample) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return;
  std::array<uint64_t, 10> c{};
  const size_t n = std::fread(c.data(), sizeof(uint64_t), c.size(), f);
  std::fclose(f);
  constexpr uint64_t kMagic = 0x616c6c6f63636e74;  // "alloccnt"
  if (n != c.size() || c[0] != kMagic) return;
  sample.allocations = c[1];
  sample.frees = c[2];
  sample.alloc_bytes = c[9];
}

}  // namespace

std::optional<ProcSample> sample_process(pid_t pid, const std::string& alloc_file) {
  if (pid <= 0) return std::nullopt;
  const std::string dir = "/proc/" + std::to_string(pid);
  std::ifstream stat(dir + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return std::nullopt;
  // The command name (field 2) may hold spaces: the fields we want follow its ')'.
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  // After ')': state is field 3; utime is field 14 and stime field 15.
  for (int index = 3; index <= 15 && fields >> field; ++index) {
    if (index == 14) utime = std::stoull(field);
    if (index == 15) stime = std::stoull(field);
  }
  ProcSample sample;
  sample.cpu_s = static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  std::ifstream status(dir + "/status");
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) sample.rss_kib = std::stoull(line.substr(6));
    if (line.rfind("VmHWM:", 0) == 0) sample.hwm_kib = std::stoull(line.substr(6));
  }
  if (!alloc_file.empty()) read_alloc_counts(alloc_file, sample);
  return sample;
}

}  // namespace sparkgate::bench
