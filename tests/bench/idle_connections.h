// Scenario 4 of the benchmark: many idle HTTP/2 client connections, each of which has
// completed one Config RPC on its own Spark session. grpc++ channels cost tens of KiB and
// a few file descriptors each in the client, so this mode speaks h2c itself with one
// nghttp2 client session per connection, all on one epoll loop in the calling thread.
//
// The proxy's VmRSS is sampled after `baseline` connections are up and again after all
// of them; the difference over the extra connections is the RSS each idle connection
// (and its session) costs.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "proc_stats.h"

namespace sparkgate::bench {

struct IdleOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  int connections = 10000;
  int baseline = 100;    // connections up when the first sample is taken
  int in_flight = 128;   // connections being set up at once
  int users = 50;
  double settle_s = 2;   // wait before each sample (the proxy frees per-stream state)
  double hold_s = 0;     // keep the connections open this long after the last sample
  double timeout_s = 120;
  pid_t proxy_pid = 0;
};

struct IdleResult {
  int completed = 0;         // connections whose RPC succeeded and that are still open
  uint64_t errors = 0;       // failed connects or RPCs, connections closed by the peer
  std::string first_error;
  double setup_s = 0;        // time to open every connection and finish every RPC
  std::optional<ProcSample> at_baseline, at_full;
};

// Blocks until every connection is set up (or failed) and sampled, then the hold time;
// closes them all before returning. Needs connections + a few file descriptors.
IdleResult run_idle_connections(const IdleOptions& options);

}  // namespace sparkgate::bench
