// Incremental scanner for the gRPC length-prefixed message stream
// (1 byte compressed flag, 4 bytes big-endian length, payload). It never copies the
// payload: it reports where each message starts and enforces the size limit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace sparkgate::grpcwire {

inline constexpr size_t kPrefixBytes = 5;

struct MessageHeader {
  bool compressed = false;
  uint32_t length = 0;
};

enum class FramerError {
  kNone,
  kTooLarge,     // a message's declared length exceeds the limit
  kBadFlag,      // compressed flag other than 0 or 1
};

// One per direction of one stream; owned by that stream; single-threaded.
class Framer {
 public:
  explicit Framer(uint64_t max_message_bytes) : max_message_bytes_(max_message_bytes) {}

  // Advances over `data`, the next bytes of the stream, calling
  // `on_message(const MessageHeader&, size_t payload_offset)` once per message when its
  // 5-byte prefix is complete. `payload_offset` is the offset inside `data` where the
  // payload begins (it may equal data.size() when the payload starts in a later chunk).
  // Stops at the first error and keeps returning it. The callback is called in place, not
  // stored: a lambda that captures by reference costs nothing.
  template <typename OnMessage>
  FramerError scan(std::span<const uint8_t> data, OnMessage&& on_message) {
    size_t pos = 0;
    while (next_prefix(data, pos)) on_message(last_, pos);
    return error_;
  }
  FramerError scan(std::span<const uint8_t> data) {
    return scan(data, [](const MessageHeader&, size_t) {});
  }

  // True when the bytes seen so far end exactly at a message boundary.
  bool at_boundary() const { return prefix_have_ == 0 && remaining_ == 0; }
  uint64_t messages() const { return messages_; }
  // The last message's declared length (valid after the first prefix).
  const MessageHeader& last_header() const { return last_; }
  uint64_t max_message_bytes() const { return max_message_bytes_; }
  // Lowers or raises the limit for the messages whose prefix comes next.
  void set_max_message_bytes(uint64_t limit) { max_message_bytes_ = limit; }

 private:
  // Advances `pos` over `data` up to the end of the next complete prefix (true, last_ set)
  // or to the end of `data` or the first error (false).
  bool next_prefix(std::span<const uint8_t> data, size_t& pos);

  uint64_t max_message_bytes_;
  uint8_t prefix_[kPrefixBytes] = {};
  size_t prefix_have_ = 0;
  uint64_t remaining_ = 0;  // payload bytes still to skip in the current message
  uint64_t messages_ = 0;
  MessageHeader last_;
  FramerError error_ = FramerError::kNone;
};

// Builds the 5-byte prefix for a payload of `length` bytes.
std::string encode_prefix(uint32_t length, bool compressed = false);

}  // namespace sparkgate::grpcwire
