// A streaming scan of a response message for its session_id and server_side_session_id
// (the field numbers depend on the RPC: RpcInfo::response_*_field). Copies only those two
// short strings; everything else is skipped as it streams past, so an ExecutePlan
// response whose server_side_session_id follows a 4 MiB Arrow batch costs no buffering.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "spark/rpc.h"

namespace sparkgate::spark {

// One captured id: in place up to kInline bytes (Spark's ids are 36-character UUIDs, some
// servers prefix them), so
// that the usual response costs no allocation; a longer one moves to the heap.
class CapturedId {
 public:
  void clear() {
    size_ = 0;
    heap_.clear();
  }
  void append(const char* p, size_t n) {
    if (heap_.empty() && size_ + n <= kInline) {
      std::memcpy(inline_ + size_, p, n);
      size_ += n;
      return;
    }
    if (heap_.empty()) heap_.assign(inline_, size_);
    heap_.append(p, n);
    size_ = heap_.size();
  }
  std::string_view view() const { return heap_.empty() ? std::string_view(inline_, size_) : std::string_view(heap_); }

 private:
  static constexpr size_t kInline = 48;
  char inline_[kInline];
  size_t size_ = 0;
  std::string heap_;
};

// One per response message; single-threaded.
class ResponseScanner {
 public:
  ResponseScanner(const RpcInfo& rpc, uint64_t message_length);

  // Feeds the next bytes of the message payload (never past its end). Malformed input
  // stops the scan (failed()); the response itself is the backend's business.
  void feed(std::span<const uint8_t> chunk);

  bool finished() const { return consumed_ == message_length_ || failed_; }
  bool failed() const { return failed_; }
  uint64_t remaining() const { return message_length_ - consumed_; }
  // The ids seen so far (empty if absent); valid while the scanner lives.
  std::string_view session_id() const { return session_id_.view(); }
  std::string_view server_side_session_id() const { return server_side_session_id_.view(); }
  // CloneSession only: the new session and its server-side id.
  std::string_view new_session_id() const { return new_session_id_.view(); }
  std::string_view new_server_side_session_id() const { return new_server_side_session_id_.view(); }

 private:
  enum class State { kHeader, kSkip, kCapture };
  size_t parse_header();

  int session_field_;
  int server_session_field_;
  int new_session_field_ = 0;
  int new_server_session_field_ = 0;
  uint64_t message_length_;
  uint64_t consumed_ = 0;
  State state_ = State::kHeader;
  std::string header_;
  uint64_t field_remaining_ = 0;
  CapturedId* target_ = nullptr;
  bool failed_ = false;
  CapturedId session_id_;
  CapturedId server_side_session_id_;
  CapturedId new_session_id_;
  CapturedId new_server_side_session_id_;
};

}  // namespace sparkgate::spark
