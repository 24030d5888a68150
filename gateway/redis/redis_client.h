// A small Redis client over boost.asio: the RESP2 wire format (encode_command,
// RespParser) and one pipelined connection (RedisClient). Written by hand because the
// stack has no Redis library (no hiredis); it speaks only what RedisAffinityStore needs:
// commands in, replies out, FIFO.
//
// Threading: RespParser and encode_command are plain values, usable anywhere.
// A RedisClient lives on one executor (a worker's io_context); every call and every
// callback on that executor's thread.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/endpoint.h"

namespace sparkgate::redis {

// One RESP2 reply. An error reply ("-ERR ...") is a reply of type kError, not a
// transport error: the connection is still fine.
struct RedisReply {
  enum class Type { kNil, kString, kInteger, kArray, kError, kStatus } type = Type::kNil;
  std::string str;  // bulk string, status text or error text
  int64_t integer = 0;
  std::vector<RedisReply> elements;
};

// Limits of what RespParser accepts; a reply beyond them is malformed.
inline constexpr size_t kRedisMaxBulkBytes = 64u << 20;     // one bulk string
inline constexpr int64_t kRedisMaxArrayElements = 1 << 20;  // one array
inline constexpr size_t kRedisMaxNesting = 8;               // arrays inside arrays
inline constexpr size_t kRedisMaxLineBytes = 64u << 10;     // status, error, integer, header

// The RESP2 array of bulk strings that sends `args` as one command. Binary safe.
std::string encode_command(const std::vector<std::string>& args);

// Incremental RESP2 reply parser: feed() bytes as they arrive, in chunks of any size,
// then call next() until it stops returning kReply. Only RESP2 types are accepted (+ - :
// $ *); RESP3 types, bad lengths, non-numeric integers, missing CRLFs and anything over
// the limits above are malformed. After kMalformed the parser stays failed.
class RespParser {
 public:
  enum class Result { kReply, kNeedMore, kMalformed };

  // Appends bytes to the unparsed input (copied).
  void feed(std::string_view bytes);
  // kReply: `out` holds the next complete reply (overwritten). kNeedMore: no complete
  // reply yet, `out` untouched. kMalformed: error() says why.
  Result next(RedisReply& out);
  const std::string& error() const { return error_; }
  // Bytes fed but not yet returned as part of a reply.
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  // One array being filled: how many elements it still needs.
  struct Frame {
    RedisReply reply;
    int64_t remaining = 0;
  };
  Result fail(std::string why);
  // Reads a CRLF-terminated line at pos_ (without the CRLF) or returns false.
  bool take_line(std::string_view& line);
  // Adds a finished value to the innermost open array; true if `value` now holds a
  // finished top-level reply.
  bool complete(RedisReply& value);

  std::string buf_;
  size_t pos_ = 0;
  size_t line_scan_ = 0;       // where the search for the next CRLF resumes
  int64_t bulk_len_ = -1;      // >= 0: a bulk header was read, its body is awaited
  std::vector<Frame> stack_;   // arrays in progress, outermost first
  std::string error_;
};

// One connection to a Redis server; commands are pipelined and answered in order.
//
// - Connects lazily, on the first command (the host is resolved asynchronously each
//   time). At most one connect attempt is in progress. If the connection fails or
//   drops, every pending command fails with the reason and the next command
//   reconnects — except within 1 s of a failed connect, when new commands fail at once
//   with that connect's error.
// - Each command has `timeout`, counted from command(). When it expires the connection
//   is closed (later replies could no longer be matched) and every pending command fails.
// - Callbacks are always posted to the executor, never run inside command(), and are
//   never run once the RedisClient is destroyed (destruction drops them unrun).
//
// Error texts (the `error` argument): "connection refused" and other socket errors in
// lower case, "cannot resolve HOST: ...", "connect timed out after N ms",
// "timed out after N ms", "connection closed by server", "redis: malformed reply",
// "closed".
class RedisClient {
 public:
  // reply is meaningful only when error is empty; on error it is kNil.
  using Callback = std::function<void(const RedisReply& reply, const std::string& error)>;

  RedisClient(boost::asio::any_io_executor ex, base::Endpoint address,
              std::chrono::milliseconds timeout);
  // Closes the connection; pending callbacks are dropped without being called.
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Sends `args` (e.g. {"SET", key, value}) after every earlier command; cb gets its
  // reply. An error reply from Redis arrives as a kError reply with an empty `error`.
  void command(std::vector<std::string> args, Callback cb);
  // Closes the connection for good: pending commands and every later one fail with
  // "closed".
  void close();

  const base::Endpoint& address() const;

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace sparkgate::redis
