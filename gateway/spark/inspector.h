// The request inspector: a streaming scan of the first request message of a stream that
// extracts the routing envelope (session_id, user_context, client_type, operation_id)
// without holding the message. Unknown fields are skipped as they stream past; only the
// envelope fields themselves are copied, each up to a cap.
#pragma once

#include <boost/container/small_vector.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "spark/rpc.h"

namespace sparkgate::spark {

struct Envelope {
  std::string session_id;
  bool has_user_context = false;
  std::string user_id;
  std::string user_name;
  std::optional<std::string> client_type;
  std::optional<std::string> operation_id;

  // "session=... user=... client_type=... operation=..." for debug logs.
  std::string describe() const;
};

// Where one top-level field lies in the message payload.
struct FieldSpan {
  uint64_t offset;  // offset of the tag's first byte within the message payload
  uint64_t length;  // tag + length varint + payload
};

// One per stream; single-threaded; owned by the stream's proxy pipeline.
class EnvelopeScanner {
 public:
  // A request that writes user_context more often than this is an error (a real client
  // writes it once; the splice needs every occurrence).
  static constexpr size_t kMaxUserContextSpans = 16;

  // `message_length` is the payload length from the gRPC prefix. Envelope fields longer
  // than `max_field_bytes` are an error.
  EnvelopeScanner(const RpcInfo& rpc, uint64_t message_length, uint32_t max_field_bytes = 64u << 10);

  // Feeds the next bytes of the message payload (never bytes past its end). Returns false
  // once the message is malformed; error() then says why.
  bool feed(std::span<const uint8_t> chunk);

  // After freeze(), an envelope field that appears again is an error: the route was
  // decided on the first value and the backend must not see another one.
  void freeze() { frozen_ = true; }

  // The session id is known and no field that could still hold user_context can come
  // (proto fields are written in number order; a later duplicate is caught after freeze).
  bool routable() const;
  // Every byte of the message has been scanned.
  bool finished() const { return consumed_ == message_length_; }
  // Every envelope field this RPC has was seen, or the message is finished.
  bool complete() const;

  const Envelope& envelope() const { return envelope_; }
  const std::string& error() const { return error_; }
  uint64_t consumed() const { return consumed_; }
  uint64_t remaining() const { return message_length_ - consumed_; }
  // Every top-level user_context (field 2) occurrence whose header has been scanned, in
  // message order. A span is recorded as soon as its header is parsed, so its payload may
  // not have been fed yet. At most kMaxUserContextSpans entries.
  std::span<const FieldSpan> user_context_spans() const { return {user_context_spans_.data(), user_context_spans_.size()}; }

 private:
  enum class State { kHeader, kSkip, kCapture };

  bool parse_header();  // parses header_ into the next state; false on need-more or error
  // `value` is the whole field: a view of the chunk when the field lay in one, else capture_.
  void finish_capture(std::string_view value);
  bool fail(std::string reason);

  const RpcInfo& rpc_;
  uint64_t message_length_;
  uint32_t max_field_bytes_;
  uint64_t consumed_ = 0;
  State state_ = State::kHeader;
  std::string header_;      // partial tag + varint/length bytes (at most 15)
  uint64_t header_start_ = 0;  // payload offset of header_'s first byte
  uint64_t field_remaining_ = 0;
  int field_number_ = 0;
  std::string capture_;  // a field that spans chunks, gathered (the usual one is viewed in place)
  int highest_field_seen_ = 0;
  bool frozen_ = false;
  bool seen_session_ = false;
  bool seen_client_type_ = false;
  bool seen_operation_ = false;
  Envelope envelope_;
  boost::container::small_vector<FieldSpan, 1> user_context_spans_;  // a real client writes one
  std::string error_;
};

}  // namespace sparkgate::spark
