// Samples of another process's CPU time and memory, read from /proc. Safe from any
// thread; every function only reads files.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace sparkgate::bench {

struct ProcSample {
  double cpu_s = 0;      // utime + stime of all threads, from /proc/<pid>/stat
  uint64_t rss_kib = 0;  // VmRSS
  uint64_t hwm_kib = 0;  // VmHWM: peak RSS since the process started
};

// The current figures of process `pid`; nullopt if it does not exist (or pid <= 0).
std::optional<ProcSample> sample_process(pid_t pid);

}  // namespace sparkgate::bench
