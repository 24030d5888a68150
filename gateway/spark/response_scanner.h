// A streaming scan of a response message for its session_id and server_side_session_id
// (the field numbers depend on the RPC: RpcInfo::response_*_field). Copies only those two
// short strings; everything else is skipped as it streams past, so an ExecutePlan
// response whose server_side_session_id follows a 4 MiB Arrow batch costs no buffering.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "spark/rpc.h"

namespace sparkgate::spark {

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
  const std::string& session_id() const { return session_id_; }
  const std::string& server_side_session_id() const { return server_side_session_id_; }
  // CloneSession only: the new session and its server-side id.
  const std::string& new_session_id() const { return new_session_id_; }
  const std::string& new_server_side_session_id() const { return new_server_side_session_id_; }

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
  std::string* target_ = nullptr;
  bool failed_ = false;
  std::string session_id_;
  std::string server_side_session_id_;
  std::string new_session_id_;
  std::string new_server_side_session_id_;
};

}  // namespace sparkgate::spark
