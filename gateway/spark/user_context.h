// Identity rewrite: splices the principal's user into the user_context of the first
// request message of a stream, in place. Only the user_context fields and the 5-byte gRPC
// length prefix change; every other byte of the stream head is kept as it is, so the
// rest of the message (a plan of any size) is never re-encoded or even held.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "spark/inspector.h"

namespace sparkgate::spark {

struct SpliceResult {
  std::string head;   // the rewritten head; empty on error
  std::string error;  // why the head could not be rewritten; empty on success
  int64_t delta = 0;  // new head size - old head size (= new - old message length)
  bool ok() const { return error.empty(); }
};

// Rewrites the head of a request stream so that the first message's user_context says
// `user_id` / `user_name`.
//
// `head`: the first bytes of the stream: the 5-byte gRPC prefix of the first message,
// then a prefix of (or the whole) payload, possibly followed by bytes of later messages.
// `spans`: EnvelopeScanner::user_context_spans() for that message, in message order
// (offsets relative to the payload start; each must lie inside the part of the payload
// that `head` holds).
//
// Result: the 5-byte prefix with the corrected length, the payload prefix with each
// occurrence of user_context rewritten, then every remaining byte of `head` unchanged.
// Each occurrence loses its user_id (1) and user_name (2) fields. The first occurrence
// gets user_id then user_name written first, followed by its other fields (extensions
// 999, unknown fields) byte for byte; later occurrences keep their other fields byte for
// byte (an occurrence left empty stays as an empty field 2). With no occurrence, a new
// user_context {user_id, user_name} is inserted at the start of the payload. An empty
// `user_name` means user_name = user_id.
//
// Errors are returned, never thrown: head shorter than 5 bytes, compressed flag set,
// spans out of order, overlapping or outside the payload bytes in head, a span that is
// not a valid length-delimited field 2 holding a UserContext (user_id/user_name not
// length-delimited, group wire types, truncation), an empty or non-UTF-8 `user_id` /
// `user_name`, a resulting message longer than UINT32_MAX.
//
// Pure function; thread-safe; borrows its arguments only for the call.
SpliceResult splice_user_context(std::string_view head, std::span<const FieldSpan> spans, std::string_view user_id,
                                 std::string_view user_name);

}  // namespace sparkgate::spark
