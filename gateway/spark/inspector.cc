#include "spark/inspector.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include <algorithm>
#include <cstddef>
#include <optional>

#include "spark_view.pb.h"

namespace sparkgate::spark {

namespace {
using google::protobuf::internal::WireFormatLite;
constexpr int kSessionIdField = view::ExecutePlanRequest::kSessionIdFieldNumber;
constexpr int kUserContextField = view::ExecutePlanRequest::kUserContextFieldNumber;
// A tag is at most 5 bytes and a varint at most 10.
constexpr size_t kMaxHeaderBytes = 15;
// A user_context up to this size is parsed into a message that the thread keeps and
// clears between requests (its strings keep their capacity, so a usual one costs no
// malloc, and no arena is set up and torn down per request); a larger one into a message
// of its own, so that one large request does not leave its memory with the thread.
constexpr size_t kReusedUserContextBytes = 1024;
}  // namespace

std::string Envelope::describe() const {
  std::string s = "session=" + session_id + " user=" + user_id;
  if (client_type) s += " client_type=\"" + *client_type + "\"";
  if (operation_id) s += " operation=" + *operation_id;
  return s;
}

EnvelopeScanner::EnvelopeScanner(const RpcInfo& rpc, uint64_t message_length, uint32_t max_field_bytes)
    : rpc_(rpc), message_length_(message_length), max_field_bytes_(max_field_bytes) {}

bool EnvelopeScanner::fail(std::string reason) {
  if (error_.empty()) error_ = std::move(reason);
  return false;
}

bool EnvelopeScanner::routable() const {
  if (!error_.empty() || !seen_session_) return false;
  return envelope_.has_user_context || highest_field_seen_ > kUserContextField || finished();
}

bool EnvelopeScanner::complete() const {
  if (!error_.empty()) return false;
  if (finished()) return true;
  return seen_session_ && envelope_.has_user_context && seen_client_type_ &&
         (rpc_.operation_id_field == 0 || seen_operation_);
}

bool EnvelopeScanner::feed(std::span<const uint8_t> chunk) {
  if (!error_.empty()) return false;
  if (chunk.size() > message_length_ - consumed_) return fail("more bytes fed than the message holds");
  size_t pos = 0;
  while (pos < chunk.size()) {
    switch (state_) {
      case State::kHeader: {
        // header_ holds bytes of a field header that earlier chunks left unfinished; they
        // are already counted in consumed_.
        if (header_.empty()) header_start_ = consumed_;
        size_t take = std::min(kMaxHeaderBytes - header_.size(), chunk.size() - pos);
        header_.append(reinterpret_cast<const char*>(chunk.data() + pos), take);
        if (!parse_header()) {
          if (!error_.empty()) return false;
          pos += take;
          consumed_ += take;
          if (finished()) return fail("message ends inside a field header");
          break;
        }
        // parse_header() left in header_ the bytes it did not use: they belong to the payload.
        size_t used_from_chunk = take - header_.size();
        header_.clear();
        pos += used_from_chunk;
        consumed_ += used_from_chunk;
        if (consumed_ + field_remaining_ > message_length_)
          return fail("field " + std::to_string(field_number_) + " runs past the end of the message");
        break;
      }
      case State::kSkip: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(field_remaining_, chunk.size() - pos));
        field_remaining_ -= n;
        pos += n;
        consumed_ += n;
        if (field_remaining_ == 0) state_ = State::kHeader;
        break;
      }
      case State::kCapture: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(field_remaining_, chunk.size() - pos));
        const std::string_view bytes(reinterpret_cast<const char*>(chunk.data() + pos), n);
        // A field that lies whole in this chunk is read in place, without a copy.
        const bool in_place = capture_.empty() && n == field_remaining_;
        if (!in_place) capture_.append(bytes);
        field_remaining_ -= n;
        pos += n;
        consumed_ += n;
        if (field_remaining_ == 0) {
          finish_capture(in_place ? bytes : std::string_view(capture_));
          if (!error_.empty()) return false;
          state_ = State::kHeader;
        }
        break;
      }
    }
  }
  if (finished() && (state_ != State::kHeader || !header_.empty())) return fail("message ends inside a field");
  return true;
}

bool EnvelopeScanner::parse_header() {
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(header_.data()),
                                            static_cast<int>(header_.size()));
  uint32_t tag = in.ReadTagNoLastTag();
  // protobuf's reader accepts an overlong tag varint (more than 5 bytes) when the whole
  // varint is in the buffer; refuse it always, so that the verdict does not depend on how
  // the bytes were chunked (byte by byte, the 5-byte limit below refuses it).
  if (tag != 0 && in.CurrentPosition() > 5) return fail("invalid field tag");
  if (tag == 0) {
    // A tag is at most 5 bytes, and a zero first byte is never a valid tag.
    if (header_.size() >= 5 || header_[0] == 0) return fail("invalid field tag");
    return false;
  }
  int field = static_cast<int>(WireFormatLite::GetTagFieldNumber(tag));
  if (field == 0) return fail("invalid field number 0");
  auto wire_type = WireFormatLite::GetTagWireType(tag);
  uint64_t payload = 0;
  switch (wire_type) {
    case WireFormatLite::WIRETYPE_VARINT: {
      uint64_t ignored;
      if (!in.ReadVarint64(&ignored)) {
        if (header_.size() >= kMaxHeaderBytes) return fail("invalid varint in field " + std::to_string(field));
        return false;
      }
      state_ = State::kHeader;
      break;
    }
    case WireFormatLite::WIRETYPE_FIXED64:
      payload = 8;
      state_ = State::kSkip;
      break;
    case WireFormatLite::WIRETYPE_FIXED32:
      payload = 4;
      state_ = State::kSkip;
      break;
    case WireFormatLite::WIRETYPE_LENGTH_DELIMITED: {
      if (!in.ReadVarint64(&payload)) {
        if (header_.size() >= kMaxHeaderBytes) return fail("invalid length of field " + std::to_string(field));
        return false;
      }
      state_ = State::kSkip;
      break;
    }
    default:
      return fail("field " + std::to_string(field) + " uses unsupported wire type " +
                  std::to_string(static_cast<int>(wire_type)));
  }
  // Hand back the bytes after the header: the caller accounts for them as unparsed.
  int used = in.CurrentPosition();
  header_.erase(0, static_cast<size_t>(used));

  highest_field_seen_ = std::max(highest_field_seen_, field);
  bool wanted = field == kSessionIdField || field == kUserContextField || field == rpc_.client_type_field ||
                (rpc_.operation_id_field != 0 && field == rpc_.operation_id_field);
  if (wanted && wire_type != WireFormatLite::WIRETYPE_LENGTH_DELIMITED)
    return fail("field " + std::to_string(field) + " must be length-delimited");
  field_number_ = field;
  field_remaining_ = payload;
  if (wanted) {
    if (payload > max_field_bytes_)
      return fail("envelope field " + std::to_string(field) + " is " + std::to_string(payload) +
                  " bytes, more than the " + std::to_string(max_field_bytes_) + " allowed");
    if (field == kUserContextField) {
      if (user_context_spans_.size() >= kMaxUserContextSpans)
        return fail("user_context appears more than " + std::to_string(kMaxUserContextSpans) + " times");
      user_context_spans_.push_back({header_start_, static_cast<uint64_t>(used) + payload});
    }
    capture_.clear();
    state_ = State::kCapture;
  }
  if (payload == 0) {
    if (state_ == State::kCapture) {
      finish_capture({});
      if (!error_.empty()) return false;
    }
    state_ = State::kHeader;
  }
  return true;
}

void EnvelopeScanner::finish_capture(std::string_view value) {
  const int f = field_number_;
  if (frozen_ && (f == kSessionIdField || f == kUserContextField ||
                  (rpc_.operation_id_field != 0 && f == rpc_.operation_id_field && seen_operation_))) {
    fail("the request repeats envelope field " + std::to_string(f) + " after the gateway routed it");
    return;
  }
  if (f == kSessionIdField) {
    envelope_.session_id = value;
    seen_session_ = true;
  } else if (f == kUserContextField) {
    thread_local view::UserContext reused;
    std::optional<view::UserContext> own;
    view::UserContext* uc = &reused;
    if (value.size() > kReusedUserContextBytes) {
      uc = &own.emplace();
    } else {
      reused.Clear();
    }
    // Protobuf merges repeated occurrences of a message field; so do we, to see what the
    // backend will see.
    if (envelope_.has_user_context) {
      uc->set_user_id(envelope_.user_id);
      uc->set_user_name(envelope_.user_name);
    }
    google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(value.data()),
                                              static_cast<int>(value.size()));
    if (!uc->MergeFromCodedStream(&in) || !in.ConsumedEntireMessage() ||
        in.CurrentPosition() != static_cast<int>(value.size())) {
      fail("user_context is not a valid UserContext message");
      return;
    }
    envelope_.has_user_context = true;
    envelope_.user_id = uc->user_id();
    envelope_.user_name = uc->user_name();
  } else if (f == rpc_.client_type_field) {
    envelope_.client_type = value;
    seen_client_type_ = true;
  } else if (rpc_.operation_id_field != 0 && f == rpc_.operation_id_field) {
    envelope_.operation_id = value;
    seen_operation_ = true;
  }
  capture_.clear();
}

}  // namespace sparkgate::spark
