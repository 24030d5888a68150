// The grpc++ load shapes of the benchmark: closed loop, open loop, parallel ExecutePlan
// streams and session churn, against one target (the backend itself or a proxy in front
// of it). Each run makes its own channels (separate TCP connections), checks that every
// response echoes its request's session_id, and samples the CPU time of the processes
// given in LoadOptions at the edges of its measurement window.
//
// Every function blocks the calling thread until the run is over; grpc's own threads
// do the I/O. Not reentrant: run one at a time.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proc_stats.h"

namespace sparkgate::bench {

struct LoadOptions {
  std::string target;          // host:port
  int channels = 1;            // separate HTTP/2 connections
  int concurrency = 1;         // closed loop: RPCs in flight; churn: sessions in flight
  double rate = 0;             // open loop: RPCs per second
  double warmup_s = 1;         // not measured
  double duration_s = 5;       // the measurement window
  std::string rpc = "Config";  // unary RPC of the closed and open loops
  int sessions = 1000;         // session ids the unary loops spread over
  int users = 50;              // user ids the sessions belong to
  int streams = 4;             // stream: ExecutePlan calls in parallel
  long long messages = 256;    // stream: responses per call
  long long message_bytes = 4 << 20;  // stream: arrow_batch size
  long long churn_sessions = 20000;   // churn: sessions created and released
  long long max_outstanding = 20000;  // open loop: beyond this, a scheduled RPC is dropped
  pid_t proxy_pid = 0;         // sampled if > 0
  pid_t backend_pid = 0;       // sampled if > 0
  std::string proxy_alloc_file;  // the proxy's ALLOC_COUNTER_FILE (alloc_counter.cc), if any
};

struct LoadResult {
  uint64_t rpcs = 0;          // completed in the window
  uint64_t errors = 0;        // non-OK status or a wrong session_id, in the whole run
  std::string first_error;
  uint64_t dropped = 0;       // open loop: not sent because max_outstanding was reached
  uint64_t sessions = 0;      // churn: sessions completed
  uint64_t bytes = 0;         // stream: response message bytes received
  uint64_t messages = 0;      // stream: response messages received
  double seconds = 0;         // the window's length
  std::vector<double> latencies_us;  // one per RPC (churn: per session), unsorted
  std::optional<ProcSample> proxy_before, proxy_after;
  std::optional<ProcSample> backend_before, backend_after;
};

// One Config RPC, retried until it succeeds or `timeout_s` passes; the error if it never
// succeeded.
std::optional<std::string> probe(const std::string& target, double timeout_s);

// `concurrency` callers, each sending its next RPC when the previous one completes.
LoadResult run_closed_loop(const LoadOptions& options);
// RPCs sent at `rate` per second whatever the answers; latency counts from the scheduled
// send time, so a stalled target shows up in it.
LoadResult run_open_loop(const LoadOptions& options);
// `streams` ExecutePlan calls at once, each `messages` × `message_bytes`; the window runs
// from the first start to the last end.
LoadResult run_streams(const LoadOptions& options);
// `concurrency` callers, each repeating: new session id → Config, ExecutePlan (2 small
// responses), AnalyzePlan → ReleaseSession, until `churn_sessions` sessions are done.
LoadResult run_churn(const LoadOptions& options);

}  // namespace sparkgate::bench
