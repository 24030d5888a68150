#include "observe/access_log.h"

#include <boost/json/serialize.hpp>
#include <spdlog/sinks/base_sink.h>

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>

namespace sparkgate::observe {

namespace {

// Whole lines to a file descriptor (stdout), in writes of at most PIPE_BUF bytes.
// spdlog's stdout sink flushes (one write(2)) per line, which would be a system call per
// RPC; stdio's buffer instead cuts its writes every 4 KiB wherever that falls, so a record
// straddled two writes and text log lines on stderr landed inside it when both streams go
// to one file or pipe (`>log 2>&1`, systemd, a log shipper). Here every write ends at a
// line boundary; a write of at most PIPE_BUF bytes is atomic on a pipe too. A line longer
// than that goes out alone, in one write. Same number of system calls as stdio's 4 KiB
// buffer. Lines reach the fd when the next line would not fit, at flush()
// (spdlog::flush_every, every second) and when the sink is destroyed (exit).
class WholeLineFdSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit WholeLineFdSink(int fd) : fd_(fd) { buf_.reserve(kMaxWrite); }
  ~WholeLineFdSink() override {
    std::lock_guard<std::mutex> lock(mutex_);
    write_out(buf_.data(), buf_.size());
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    if (buf_.size() + formatted.size() > kMaxWrite) {
      write_out(buf_.data(), buf_.size());
      buf_.clear();
    }
    if (formatted.size() > kMaxWrite) {
      write_out(formatted.data(), formatted.size());
      return;
    }
    buf_.append(formatted.data(), formatted.size());
  }
  void flush_() override {
    write_out(buf_.data(), buf_.size());
    buf_.clear();
  }

 private:
  static constexpr size_t kMaxWrite = PIPE_BUF;

  // A partial write (a full disk, a signal on a pipe) continues where it stopped; an fd
  // opened non-blocking is waited for. Other errors drop the block: the access log never
  // blocks the gateway on a broken stdout.
  void write_out(const char* data, size_t len) {
    while (len > 0) {
      ssize_t n = ::write(fd_, data, len);
      if (n > 0) {
        data += n;
        len -= static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        pollfd p{fd_, POLLOUT, 0};
        ::poll(&p, 1, 1000);
      } else {
        return;
      }
    }
  }

  int fd_;
  std::string buf_;
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
    logger_ = std::make_shared<spdlog::logger>("access", std::make_shared<WholeLineFdSink>(STDOUT_FILENO));
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

void AccessLog::engine(const EngineRecord& r) {
  if (!enabled()) return;
  boost::json::object o = line(r.event);
  o["cluster"] = r.cluster;
  o["key"] = r.key;
  o["address"] = r.address;
  o["pid"] = r.pid;
  if (!r.reason.empty()) o["reason"] = r.reason;
  if (r.start_s >= 0) o["start_ms"] = static_cast<int64_t>(r.start_s * 1e3);
  logger_->info(boost::json::serialize(o));
}

}  // namespace sparkgate::observe
