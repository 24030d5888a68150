#include "redis/redis_client.h"

#include <spdlog/spdlog.h>

#include <boost/asio.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <deque>
#include <optional>

namespace sparkgate::redis {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// After a failed connect, new commands fail at once for this long instead of each
// starting another connect to a server that is down.
constexpr std::chrono::milliseconds kConnectBackoff{1000};
// Consumed input is dropped from the parser's buffer once it is at least this large
// and at least half of the buffer, so a long pipeline does not copy on every read.
constexpr size_t kCompactBytes = 4096;

void append_command(std::string& out, const std::vector<std::string>& args) {
  out += '*';
  out += std::to_string(args.size());
  out += "\r\n";
  for (const auto& a : args) {
    out += '$';
    out += std::to_string(a.size());
    out += "\r\n";
    out += a;
    out += "\r\n";
  }
}

bool parse_int(std::string_view text, int64_t& value) {
  if (text.empty()) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size();
}

// asio's messages start upper case ("Connection refused"); ours are lower case.
std::string lower_first(std::string text) {
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

}  // namespace

std::string encode_command(const std::vector<std::string>& args) {
  std::string out;
  append_command(out, args);
  return out;
}

// ---- RespParser ----

void RespParser::feed(std::string_view bytes) {
  if (pos_ == buf_.size()) {
    buf_.clear();
    line_scan_ = 0;
    pos_ = 0;
  } else if (pos_ >= kCompactBytes && pos_ * 2 >= buf_.size()) {
    buf_.erase(0, pos_);
    line_scan_ -= pos_;
    pos_ = 0;
  }
  buf_.append(bytes);
}

RespParser::Result RespParser::fail(std::string why) {
  error_ = std::move(why);
  return Result::kMalformed;
}

bool RespParser::take_line(std::string_view& line) {
  const size_t from = std::max(pos_, line_scan_);
  const size_t crlf = buf_.find("\r\n", from);
  if (crlf == std::string::npos) {
    if (buf_.size() - pos_ > kRedisMaxLineBytes) fail("line longer than " + std::to_string(kRedisMaxLineBytes) + " bytes");
    // A trailing '\r' may be the first half of the CRLF.
    line_scan_ = buf_.empty() ? pos_ : std::max(pos_, buf_.size() - 1);
    return false;
  }
  if (crlf - pos_ > kRedisMaxLineBytes) {
    fail("line longer than " + std::to_string(kRedisMaxLineBytes) + " bytes");
    return false;
  }
  line = std::string_view(buf_).substr(pos_, crlf - pos_);
  pos_ = crlf + 2;
  line_scan_ = pos_;
  return true;
}

bool RespParser::complete(RedisReply& value) {
  while (!stack_.empty()) {
    Frame& top = stack_.back();
    top.reply.elements.push_back(std::move(value));
    if (--top.remaining > 0) return false;
    value = std::move(top.reply);
    stack_.pop_back();
  }
  return true;
}

RespParser::Result RespParser::next(RedisReply& out) {
  if (!error_.empty()) return Result::kMalformed;
  for (;;) {
    RedisReply value;
    if (bulk_len_ >= 0) {
      const size_t len = static_cast<size_t>(bulk_len_);
      if (buf_.size() - pos_ < len + 2) return Result::kNeedMore;
      if (buf_[pos_ + len] != '\r' || buf_[pos_ + len + 1] != '\n') {
        return fail("bulk string not followed by CRLF");
      }
      value.type = RedisReply::Type::kString;
      value.str.assign(buf_, pos_, len);
      pos_ += len + 2;
      line_scan_ = pos_;
      bulk_len_ = -1;
    } else {
      std::string_view line;
      if (!take_line(line)) return error_.empty() ? Result::kNeedMore : Result::kMalformed;
      if (line.empty()) return fail("empty line");
      const char type = line[0];
      const std::string_view body = line.substr(1);
      int64_t n = 0;
      switch (type) {
        case '+':
          value.type = RedisReply::Type::kStatus;
          value.str = body;
          break;
        case '-':
          value.type = RedisReply::Type::kError;
          value.str = body;
          break;
        case ':':
          if (!parse_int(body, n)) return fail("bad integer");
          value.type = RedisReply::Type::kInteger;
          value.integer = n;
          break;
        case '$':
          if (!parse_int(body, n) || n < -1) return fail("bad bulk string length");
          if (n > static_cast<int64_t>(kRedisMaxBulkBytes)) return fail("bulk string too large");
          if (n >= 0) {
            bulk_len_ = n;
            continue;
          }
          break;  // $-1: nil
        case '*':
          if (!parse_int(body, n) || n < -1) return fail("bad array length");
          if (n > kRedisMaxArrayElements) return fail("array too large");
          if (n > 0) {
            if (stack_.size() >= kRedisMaxNesting) return fail("arrays nested too deeply");
            Frame frame;
            frame.reply.type = RedisReply::Type::kArray;
            // The count is untrusted: grow as elements arrive rather than reserve it all.
            frame.reply.elements.reserve(static_cast<size_t>(std::min<int64_t>(n, 64)));
            frame.remaining = n;
            stack_.push_back(std::move(frame));
            continue;
          }
          if (n == 0) value.type = RedisReply::Type::kArray;
          break;  // *-1: nil
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned char>(type));
          return fail(std::string("bad type byte ") + hex);
        }
      }
    }
    if (complete(value)) {
      out = std::move(value);
      return Result::kReply;
    }
  }
}

// ---- RedisClient ----

class RedisClient::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(asio::any_io_executor ex, base::Endpoint address, std::chrono::milliseconds timeout)
      : executor_(ex),
        address_(std::move(address)),
        name_(address_.to_string()),
        timeout_(timeout),
        resolver_(ex),
        timer_(ex) {}

  void command(std::vector<std::string> args, Callback cb);
  void close();
  void destroy();
  const base::Endpoint& address() const { return address_; }

 private:
  // One TCP connection and what belongs to it. Handlers hold it by shared_ptr and ignore
  // their completion once it is no longer conn_, so a new connection never sees the old
  // one's stragglers.
  struct Connection {
    explicit Connection(const asio::any_io_executor& ex) : socket(ex) {}
    tcp::socket socket;
    bool connected = false;
    std::string out;      // encoded commands not yet handed to the socket
    std::string writing;  // the buffer of the write in flight
    bool write_in_flight = false;
    RespParser parser;
    std::array<char, 16384> read_buf{};
  };
  struct Pending {
    Callback cb;
    Clock::time_point deadline;
  };

  void connect();
  void connect_failed(const std::string& error);
  void start_read(const std::shared_ptr<Connection>& c);
  void flush(const std::shared_ptr<Connection>& c);
  void fail_all(const std::string& error);
  void deliver(Callback cb, RedisReply reply, std::string error);
  void arm_timer();
  void on_timer();

  asio::any_io_executor executor_;
  base::Endpoint address_;
  std::string name_;
  std::chrono::milliseconds timeout_;
  tcp::resolver resolver_;
  asio::steady_timer timer_;
  bool timer_armed_ = false;
  std::shared_ptr<Connection> conn_;  // null: idle
  std::deque<Pending> pending_;       // sent or queued, in the order replies will come
  bool closed_ = false;
  bool destroyed_ = false;
  std::string last_connect_error_;
  std::optional<Clock::time_point> last_connect_failure_;
};

void RedisClient::Impl::deliver(Callback cb, RedisReply reply, std::string error) {
  // Posted, never called inline: the caller may be inside command() or inside our own
  // read loop, and the callback may issue commands or destroy the client.
  asio::post(executor_, [self = shared_from_this(), cb = std::move(cb), reply = std::move(reply),
                         error = std::move(error)] {
    if (!self->destroyed_) cb(reply, error);
  });
}

void RedisClient::Impl::command(std::vector<std::string> args, Callback cb) {
  if (closed_) {
    deliver(std::move(cb), {}, "closed");
    return;
  }
  if (!conn_ && last_connect_failure_ && Clock::now() - *last_connect_failure_ < kConnectBackoff) {
    deliver(std::move(cb), {}, last_connect_error_);
    return;
  }
  pending_.push_back({std::move(cb), Clock::now() + timeout_});
  if (!conn_) connect();
  append_command(conn_->out, args);
  if (conn_->connected) flush(conn_);
  arm_timer();
}

void RedisClient::Impl::connect() {
  auto c = std::make_shared<Connection>(executor_);
  conn_ = c;
  resolver_.async_resolve(
      address_.host, std::to_string(address_.port),
      [self = shared_from_this(), c](const boost::system::error_code& ec,
                                     const tcp::resolver::results_type& results) {
        if (self->conn_ != c) return;
        if (ec) {
          self->connect_failed("cannot resolve " + self->address_.host + ": " + ec.message());
          return;
        }
        asio::async_connect(c->socket, results,
                            [self, c](const boost::system::error_code& cec, const tcp::endpoint&) {
                              if (self->conn_ != c) return;
                              if (cec) {
                                self->connect_failed(lower_first(cec.message()));
                                return;
                              }
                              c->connected = true;
                              self->last_connect_failure_.reset();
                              boost::system::error_code ignored;
                              c->socket.set_option(tcp::no_delay(true), ignored);
                              self->start_read(c);
                              self->flush(c);
                            });
      });
}

void RedisClient::Impl::connect_failed(const std::string& error) {
  spdlog::warn("redis {}: {}", name_, error);
  last_connect_error_ = error;
  last_connect_failure_ = Clock::now();
  fail_all(error);
}

void RedisClient::Impl::start_read(const std::shared_ptr<Connection>& c) {
  c->socket.async_read_some(
      asio::buffer(c->read_buf),
      [self = shared_from_this(), c](const boost::system::error_code& ec, size_t n) {
        if (self->conn_ != c) return;
        if (ec) {
          const std::string why = ec == asio::error::eof ? "connection closed by server"
                                                         : lower_first(ec.message());
          if (!self->pending_.empty()) spdlog::warn("redis {}: {}", self->name_, why);
          self->fail_all(why);
          return;
        }
        c->parser.feed(std::string_view(c->read_buf.data(), n));
        for (;;) {
          RedisReply reply;
          const auto r = c->parser.next(reply);
          if (r == RespParser::Result::kNeedMore) break;
          if (r == RespParser::Result::kMalformed || self->pending_.empty()) {
            spdlog::warn("redis {}: malformed reply: {}", self->name_,
                         r == RespParser::Result::kMalformed ? c->parser.error()
                                                             : "a reply nobody asked for");
            self->fail_all("redis: malformed reply");
            return;
          }
          Pending p = std::move(self->pending_.front());
          self->pending_.pop_front();
          self->deliver(std::move(p.cb), std::move(reply), "");
        }
        self->start_read(c);
      });
}

void RedisClient::Impl::flush(const std::shared_ptr<Connection>& c) {
  if (c->write_in_flight || c->out.empty()) return;
  c->writing.swap(c->out);
  c->out.clear();
  c->write_in_flight = true;
  asio::async_write(c->socket, asio::buffer(c->writing),
                    [self = shared_from_this(), c](const boost::system::error_code& ec, size_t) {
                      c->write_in_flight = false;
                      c->writing.clear();
                      if (self->conn_ != c) return;
                      if (ec) {
                        spdlog::warn("redis {}: write failed: {}", self->name_, ec.message());
                        self->fail_all("write failed: " + lower_first(ec.message()));
                        return;
                      }
                      self->flush(c);
                    });
}

void RedisClient::Impl::fail_all(const std::string& error) {
  if (conn_) {
    boost::system::error_code ignored;
    conn_->socket.close(ignored);
    conn_.reset();
  }
  resolver_.cancel();
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& p : pending) deliver(std::move(p.cb), {}, error);
}

// One timer for the oldest command: deadlines are in queue order, so it is the first to
// expire. It is not moved when replies arrive; on firing it re-arms for the new oldest.
void RedisClient::Impl::arm_timer() {
  if (timer_armed_ || pending_.empty()) return;
  timer_armed_ = true;
  timer_.expires_at(pending_.front().deadline);
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code&) {
    self->timer_armed_ = false;
    if (self->closed_) return;
    self->on_timer();
  });
}

void RedisClient::Impl::on_timer() {
  if (pending_.empty()) return;
  if (pending_.front().deadline > Clock::now()) {
    arm_timer();
    return;
  }
  const std::string after = "timed out after " + std::to_string(timeout_.count()) + " ms";
  if (conn_ && !conn_->connected) {
    connect_failed("connect " + after);
    return;
  }
  spdlog::warn("redis {}: command {}; closing the connection", name_, after);
  fail_all(after);
}

void RedisClient::Impl::close() {
  if (closed_) return;
  closed_ = true;
  timer_.cancel();
  fail_all("closed");
}

void RedisClient::Impl::destroy() {
  destroyed_ = true;
  closed_ = true;
  timer_.cancel();
  if (conn_) {
    boost::system::error_code ignored;
    conn_->socket.close(ignored);
    conn_.reset();
  }
  resolver_.cancel();
  pending_.clear();
}

RedisClient::RedisClient(asio::any_io_executor ex, base::Endpoint address,
                         std::chrono::milliseconds timeout)
    : impl_(std::make_shared<Impl>(std::move(ex), std::move(address), timeout)) {}

RedisClient::~RedisClient() { impl_->destroy(); }

void RedisClient::command(std::vector<std::string> args, Callback cb) {
  impl_->command(std::move(args), std::move(cb));
}

void RedisClient::close() { impl_->close(); }

const base::Endpoint& RedisClient::address() const { return impl_->address(); }

}  // namespace sparkgate::redis
