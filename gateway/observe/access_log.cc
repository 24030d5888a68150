#include "observe/access_log.h"

#include <boost/json/serialize.hpp>
#include <spdlog/fmt/fmt.h>
#include <spdlog/sinks/base_sink.h>

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <concepts>
#include <cstdio>
#include <cstring>
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
  // The pattern is the bare message (AccessLog sets "%v"), so a line is the payload and
  // a newline: appended as it is, without spdlog's formatter, whose buffer goes to the
  // heap for any line over 250 bytes (every RPC record).
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    const size_t line = payload.size() + 1;
    if (buf_.size() + line > kMaxWrite) {
      write_out(buf_.data(), buf_.size());
      buf_.clear();
    }
    if (line > kMaxWrite) {
      std::string alone;
      alone.reserve(line);
      alone.append(payload).push_back('\n');
      write_out(alone.data(), alone.size());
      return;
    }
    buf_.append(payload).push_back('\n');
  }
  // Always "%v" (see sink_it_).
  void set_pattern_(const std::string&) override {}
  void set_formatter_(std::unique_ptr<spdlog::formatter>) override {}
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

namespace {

// RFC 3339 UTC with milliseconds into `out` (24 characters and a NUL); the length. The
// part up to the second is formatted once per second per thread (snprintf and gmtime_r
// were a tenth of a record's cost).
size_t format_utc_to(std::chrono::system_clock::time_point t, char (&out)[96]) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  const int milli = static_cast<int>(ms % 1000);
  constexpr size_t kPrefix = 20;  // "2026-11-29T15:46:14."
  thread_local std::time_t cached_secs = -1;
  thread_local char cached[32];
  if (secs != cached_secs) {
    std::tm tm{};
    gmtime_r(&secs, &tm);
    const int n = std::snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
                                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (n != static_cast<int>(kPrefix) || milli < 0) {
      // A year past 9999 or before 1970: not worth a fast path.
      cached_secs = -1;
      const int m = std::snprintf(out, sizeof out, "%.*s%03dZ", n > 0 ? n : 0, cached, milli < 0 ? 0 : milli);
      return m > 0 ? static_cast<size_t>(m) : 0;
    }
    cached_secs = secs;
  }
  std::memcpy(out, cached, kPrefix);
  out[kPrefix] = static_cast<char>('0' + milli / 100);
  out[kPrefix + 1] = static_cast<char>('0' + milli / 10 % 10);
  out[kPrefix + 2] = static_cast<char>('0' + milli % 10);
  out[kPrefix + 3] = 'Z';
  out[kPrefix + 4] = '\0';
  return kPrefix + 4;
}

// A record is formatted into a buffer sized for its worst case first (every byte of
// every string escaped as \u00XX), then written through a plain pointer: no capacity
// check per character.
class LineWriter {
 public:
  explicit LineWriter(char* out) : p_(out) {}
  char* end() const { return p_; }

  // `s` as it is (the file's own keys and separators, which need no escape).
  void text(std::string_view s) {
    std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }

  // `s` as a JSON string without its quotes, escaped as boost::json::serialize does: '"',
  // '\\' and the control characters; every other byte as it is. Eight bytes at a time:
  // a word with none of those bytes (the usual case) is copied whole.
  void escaped(std::string_view s) {
    const char* in = s.data();
    const char* const end = in + s.size();
    while (end - in >= 8) {
      uint64_t w;
      std::memcpy(&w, in, 8);
      if (!needs_escape(w)) {
        std::memcpy(p_, in, 8);
        p_ += 8;
        in += 8;
        continue;
      }
      for (const char* stop = in + 8; in != stop; ++in) byte(static_cast<unsigned char>(*in));
    }
    if (in != end && s.size() >= 8) {
      // The last 1-7 bytes: the word that ends with them, which overlaps bytes already
      // written; when it is clean it is written again over them, in place.
      uint64_t w;
      std::memcpy(&w, end - 8, 8);
      if (!needs_escape(w)) {
        const size_t rest = static_cast<size_t>(end - in);
        std::memcpy(p_ - (8 - rest), end - 8, 8);
        p_ += rest;
        return;
      }
    }
    for (; in != end; ++in) byte(static_cast<unsigned char>(*in));
  }

  template <std::integral Int>
  void integer(Int value) {
    fmt::format_int digits(value);
    std::memcpy(p_, digits.data(), digits.size());
    p_ += digits.size();
  }

  // The most that escaped(s) writes.
  static constexpr size_t escaped_bound(size_t n) { return 6 * n; }

 private:
  static constexpr uint64_t kOnes = 0x0101010101010101ULL;
  static constexpr uint64_t kHighs = 0x8080808080808080ULL;
  // Whether any byte of `w` is below 0x20, '"' or '\\' (the exact tests of "a byte less
  // than n" and "a zero byte": https://graphics.stanford.edu/~seander/bithacks.html).
  static bool needs_escape(uint64_t w) {
    const uint64_t control = (w - kOnes * 0x20) & ~w;
    const uint64_t quote = w ^ (kOnes * '"');
    const uint64_t backslash = w ^ (kOnes * '\\');
    return ((control | ((quote - kOnes) & ~quote) | ((backslash - kOnes) & ~backslash)) & kHighs) != 0;
  }

  void byte(unsigned char c) {
    static constexpr char kHex[] = "0123456789abcdef";
    if (c >= 0x20 && c != '"' && c != '\\') {
      *p_++ = static_cast<char>(c);
      return;
    }
    *p_++ = '\\';
    switch (c) {
      case '"': *p_++ = '"'; break;
      case '\\': *p_++ = '\\'; break;
      case '\b': *p_++ = 'b'; break;
      case '\f': *p_++ = 'f'; break;
      case '\n': *p_++ = 'n'; break;
      case '\r': *p_++ = 'r'; break;
      case '\t': *p_++ = 't'; break;
      default:
        *p_++ = 'u';
        *p_++ = '0';
        *p_++ = '0';
        *p_++ = kHex[c >> 4];
        *p_++ = kHex[c & 0xf];
    }
  }

  char* p_;
};

}  // namespace

std::string format_utc(std::chrono::system_clock::time_point t) {
  char buf[96];
  const size_t n = format_utc_to(t, buf);
  return std::string(buf, n);
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

// Formatted by hand into a per-thread buffer that keeps its capacity, and handed to the
// sink as one whole line: no allocation per record once the buffer has grown (the
// boost::json object this replaced cost 27 per RPC: tests/bench/RESULTS.md). Same keys,
// same order, same escaping as the session_end lines' boost::json::serialize.
void AccessLog::rpc(const RpcRecord& r) {
  if (!enabled()) return;
  char time[96];
  const size_t time_len = format_utc_to(std::chrono::system_clock::now(), time);
  // Each string field with what goes before its value: the key, its quotes, the comma.
  struct Field {
    std::string_view before;
    std::string_view value;
  };
  const Field strings[] = {{"{\"time\":\"", {time, time_len}},
                           {"\",\"type\":\"rpc\",\"request_id\":\"", r.request_id},
                           {"\",\"traceparent\":\"", r.traceparent},
                           {"\",\"peer\":\"", r.peer},
                           {"\",\"session\":\"", r.session},
                           {"\",\"user\":\"", r.user},
                           {"\",\"rpc\":\"", r.rpc},
                           {"\",\"cluster\":\"", r.cluster},
                           {"\",\"backend\":\"", r.backend},
                           {"\",\"operation_id\":\"", r.operation_id}};
  const std::string_view status = code_label_name(code_label(r.code));
  // The keys, quotes and separators (under 256 bytes), four integers of at most 20
  // digits and a sign, and every string at its most escaped.
  size_t bound = 256 + 4 * 21 + LineWriter::escaped_bound(status.size());
  for (const Field& f : strings) bound += LineWriter::escaped_bound(f.value.size());

  thread_local fmt::memory_buffer buf;
  buf.resize(bound);
  LineWriter w(buf.data());
  for (const Field& f : strings) {
    w.text(f.before);
    w.escaped(f.value);
  }
  w.text("\",\"code\":");
  w.integer(r.code);
  w.text(",\"status\":\"");
  w.escaped(status);
  w.text("\",\"duration_us\":");
  w.integer(static_cast<int64_t>(r.duration_s * 1e6));
  w.text(",\"bytes_in\":");
  w.integer(r.bytes_in);
  w.text(",\"bytes_out\":");
  w.integer(r.bytes_out);
  w.text("}");
  const size_t len = static_cast<size_t>(w.end() - buf.data());
  buf.resize(len);
  logger_->info(std::string_view(buf.data(), len));
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
