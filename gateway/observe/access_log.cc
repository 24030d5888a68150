#include "observe/access_log.h"

#include <boost/json/serialize.hpp>
#include <spdlog/sinks/base_sink.h>

#include <cstdio>
#include <ctime>
#include <mutex>

namespace sparkgate::observe {

namespace {

// stdout through stdio's buffer: spdlog's stdout sink flushes (one write(2)) per line,
// which would be a system call per RPC. Lines reach the file when the buffer fills or at
// flush() (spdlog::flush_every, and exit).
class BufferedStdoutSink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    std::fwrite(formatted.data(), 1, formatted.size(), stdout);
  }
  void flush_() override { std::fflush(stdout); }
};

}  // namespace

std::string format_utc(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

AccessLog::AccessLog(std::shared_ptr<spdlog::logger> sink_logger) : logger_(std::move(sink_logger)) {
  if (!logger_) {
    // Not registered in spdlog's global registry: each AccessLog owns its logger.
    logger_ = std::make_shared<spdlog::logger>("access", std::make_shared<BufferedStdoutSink>());
  }
  logger_->set_pattern("%v");
  logger_->set_level(spdlog::level::info);
}

namespace {
boost::json::object line(const char* type) {
  boost::json::object o;
  o["time"] = format_utc(std::chrono::system_clock::now());
  o["type"] = type;
  return o;
}
}  // namespace

void AccessLog::rpc(const RpcRecord& r) {
  if (!enabled()) return;
  boost::json::object o = line("rpc");
  o["request_id"] = r.request_id;
  o["traceparent"] = r.traceparent;
  o["peer"] = r.peer;
  o["session"] = r.session;
  o["user"] = r.user;
  o["rpc"] = r.rpc;
  o["cluster"] = r.cluster;
  o["backend"] = r.backend;
  o["operation_id"] = r.operation_id;
  o["code"] = r.code;
  o["status"] = code_label_name(code_label(r.code));
  o["duration_us"] = static_cast<int64_t>(r.duration_s * 1e6);
  o["bytes_in"] = r.bytes_in;
  o["bytes_out"] = r.bytes_out;
  logger_->info(boost::json::serialize(o));
}

void AccessLog::session_ended(const SessionRecord& r) {
  if (!enabled()) return;
  boost::json::object o = line("session_end");
  o["session"] = r.session;
  o["user"] = r.user;
  o["tenant"] = r.tenant;
  o["cluster"] = r.cluster;
  o["backend"] = r.backend;
  o["server_side_session_id"] = r.server_side_session_id;
  o["reason"] = r.reason;
  o["created"] = format_utc(r.created);
  o["duration_ms"] = static_cast<int64_t>(r.duration_s * 1e3);
  if (r.stats) r.stats->to_json(o);
  logger_->info(boost::json::serialize(o));
}

}  // namespace sparkgate::observe
