// The access log: one JSON object per line on stdout for every finished RPC, and one
// summary line for every session that ends. Fields are listed in docs/operations.md; they
// never hold credentials.
//
// Cost: the caller checks enabled() before it gathers a record, so with log.access off
// no RPC formats anything.
//
// Threading: thread-safe (spdlog's stdout sink serializes lines).
#pragma once

#include <spdlog/logger.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>

#include "observe/session_stats.h"

namespace sparkgate::observe {

struct RpcRecord {
  std::string_view request_id;
  std::string_view traceparent;
  std::string_view peer;
  std::string_view session;  // "" when the request was refused before its envelope was read
  std::string_view user;
  std::string_view rpc;
  std::string_view cluster;
  std::string_view backend;
  std::string_view operation_id;
  int code = 0;
  double duration_s = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
};

struct SessionRecord {
  std::string_view session;
  std::string_view user;
  std::string_view tenant;
  std::string_view cluster;
  std::string_view backend;
  std::string_view server_side_session_id;
  std::string_view reason;  // "released", "expired", "closed_by_operator", "backend_lost", ...
  std::chrono::system_clock::time_point created;
  double duration_s = 0;
  const SessionStats* stats = nullptr;
};

// An engine started or stopped (engines/). Never carries the engine's token.
struct EngineRecord {
  const char* event = "";  // "engine_start", "engine_ready", "engine_stop"
  std::string_view cluster;
  std::string_view key;
  std::string_view address;  // host:port, "" before it is known
  int64_t pid = 0;
  std::string_view reason;  // stop: "idle", "admin", "crashed: ...", "shutdown", "start failed: ..."
  double start_s = -1;      // ready: launch to ready
};

class AccessLog {
 public:
  // Writes to `sink_logger` (its pattern is set to the bare message); by default a
  // logger on stdout.
  explicit AccessLog(std::shared_ptr<spdlog::logger> sink_logger = nullptr);

  // The logger, to register with spdlog so that spdlog::flush_every reaches it. Lines are
  // buffered: they reach stdout at that flush, when the buffer fills, or at exit. Every
  // write(2) to stdout ends at a line boundary and, unless one line is longer, holds at
  // most PIPE_BUF (4096) bytes, so a record is never split, even when stdout and stderr
  // go to one file or pipe.
  const std::shared_ptr<spdlog::logger>& logger() const { return logger_; }

  bool enabled() const { return enabled_.load(std::memory_order_relaxed); }
  void set_enabled(bool on) { enabled_.store(on, std::memory_order_relaxed); }

  // {"time":…,"type":"rpc","request_id":…,"traceparent":…,"peer":…,"session":…,"user":…,
  //  "rpc":…,"cluster":…,"backend":…,"operation_id":…,"code":…,"status":…,
  //  "duration_us":…,"bytes_in":…,"bytes_out":…}
  void rpc(const RpcRecord& r);
  // {"time":…,"type":"session_end","session":…,"user":…,"tenant":…,"cluster":…,"backend":…,
  //  "server_side_session_id":…,"reason":…,"created":…,"duration_ms":…, plus SessionStats}
  void session_ended(const SessionRecord& r);
  // {"time":…,"type":"engine_start"|"engine_ready"|"engine_stop","cluster":…,"key":…,
  //  "address":…,"pid":…,"reason":…,"start_ms":…}
  void engine(const EngineRecord& r);

 private:
  std::shared_ptr<spdlog::logger> logger_;
  std::atomic<bool> enabled_{true};
};

// RFC 3339 UTC with milliseconds: "2026-11-29T15:46:14.123Z".
std::string format_utc(std::chrono::system_clock::time_point t);

}  // namespace sparkgate::observe
