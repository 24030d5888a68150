// Samples of another process's CPU time and memory, read from /proc. Safe from any
// thread; every function only reads files.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace sparkgate::bench {

struct ProcSample {
  double cpu_s = 0;      // utime + stime of all threads, from /proc/<pid>/stat
  uint64_t rss_kib = 0;  // VmRSS
  uint64_t hwm_kib = 0;  // VmHWM: peak RSS since the process started
  // From the counting allocator's file (alloc_counter.cc), when one is given and mapped.
  std::optional<uint64_t> allocations, frees, alloc_bytes;
};

// The current figures of process `pid`; nullopt if it does not exist (or pid <= 0).
// With `alloc_file` (the ALLOC_COUNTER_FILE of that process under alloc_counter.so), also
// its heap allocation counts so far.
std::optional<ProcSample> sample_process(pid_t pid, const std::string& alloc_file = "");

}  // namespace sparkgate::bench
