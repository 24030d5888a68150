#include "spark/response_scanner.h"

#include <algorithm>

#include "spark_view.pb.h"

namespace sparkgate::spark {

namespace {
constexpr size_t kMaxHeaderBytes = 15;     // a tag (5) and a varint (10)
constexpr uint64_t kMaxIdBytes = 1024;     // ids are UUIDs; anything longer is not ours to keep

// Reads a varint from [p, end); returns bytes used, 0 if incomplete, -1 if malformed.
int read_varint(const uint8_t* p, const uint8_t* end, uint64_t& out) {
  out = 0;
  for (int i = 0; i < 10; ++i) {
    if (p + i >= end) return 0;
    out |= static_cast<uint64_t>(p[i] & 0x7f) << (7 * i);
    if ((p[i] & 0x80) == 0) return i + 1;
  }
  return -1;
}
}  // namespace

ResponseScanner::ResponseScanner(const RpcInfo& rpc, uint64_t message_length)
    : session_field_(rpc.response_session_field),
      server_session_field_(rpc.response_server_session_field),
      message_length_(message_length) {
  if (rpc.rpc == Rpc::kCloneSession) {
    new_session_field_ = view::CloneSessionResponse::kNewSessionIdFieldNumber;
    new_server_session_field_ = view::CloneSessionResponse::kNewServerSideSessionIdFieldNumber;
  }
}

// header_ holds the start of a field. Returns how many of its bytes the field header
// (tag, and the varint value or length) takes; 0 if more bytes are needed or on error.
size_t ResponseScanner::parse_header() {
  const auto* p = reinterpret_cast<const uint8_t*>(header_.data());
  const auto* end = p + header_.size();
  uint64_t tag = 0;
  int n = read_varint(p, end, tag);
  if (n < 0) failed_ = true;
  if (n <= 0) return 0;
  int wire = static_cast<int>(tag & 7);
  int field = static_cast<int>(tag >> 3);
  uint64_t value = 0;
  int m = 0;
  switch (wire) {
    case 0:  // varint: the value is part of the header
      m = read_varint(p + n, end, value);
      field_remaining_ = 0;
      break;
    case 1:
      field_remaining_ = 8;
      break;
    case 5:
      field_remaining_ = 4;
      break;
    case 2:
      m = read_varint(p + n, end, value);
      field_remaining_ = value;
      break;
    default:  // groups are not used by Spark Connect
      failed_ = true;
      return 0;
  }
  if (m < 0) failed_ = true;
  if (m < 0 || ((wire == 0 || wire == 2) && m == 0)) return 0;
  target_ = nullptr;
  if (wire == 2 && field_remaining_ <= kMaxIdBytes) {
    if (field == session_field_) target_ = &session_id_;
    else if (field == server_session_field_) target_ = &server_side_session_id_;
    else if (new_session_field_ != 0 && field == new_session_field_) target_ = &new_session_id_;
    else if (new_server_session_field_ != 0 && field == new_server_session_field_)
      target_ = &new_server_side_session_id_;
  }
  if (target_) target_->clear();
  state_ = field_remaining_ == 0 ? State::kHeader : target_ ? State::kCapture : State::kSkip;
  return static_cast<size_t>(n + m);
}

void ResponseScanner::feed(std::span<const uint8_t> chunk) {
  chunk = chunk.first(static_cast<size_t>(std::min<uint64_t>(chunk.size(), remaining())));
  size_t pos = 0;
  while (pos < chunk.size() && !failed_) {
    if (state_ == State::kHeader) {
      size_t before = header_.size();
      size_t take = std::min(kMaxHeaderBytes - before, chunk.size() - pos);
      header_.append(reinterpret_cast<const char*>(chunk.data() + pos), take);
      size_t used = parse_header();
      if (failed_) return;
      if (used == 0) {
        if (header_.size() >= kMaxHeaderBytes) failed_ = true;
        pos += take;
        consumed_ += take;
        continue;
      }
      size_t from_chunk = used - before;
      pos += from_chunk;
      consumed_ += from_chunk;
      header_.clear();
      if (consumed_ + field_remaining_ > message_length_) failed_ = true;
      continue;
    }
    size_t take = static_cast<size_t>(std::min<uint64_t>(field_remaining_, chunk.size() - pos));
    if (state_ == State::kCapture) target_->append(reinterpret_cast<const char*>(chunk.data() + pos), take);
    pos += take;
    consumed_ += take;
    field_remaining_ -= take;
    if (field_remaining_ == 0) state_ = State::kHeader;
  }
}

}  // namespace sparkgate::spark
