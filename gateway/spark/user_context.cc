#include "spark/user_context.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/stubs/common.h>
#include <google/protobuf/wire_format_lite.h>

#include <algorithm>
#include <climits>
#include <limits>

#include "grpcwire/framer.h"
#include "spark_view.pb.h"

namespace sparkgate::spark {

namespace {
using google::protobuf::io::CodedInputStream;
using google::protobuf::io::CodedOutputStream;
using google::protobuf::internal::WireFormatLite;

constexpr int kUserContextField = view::ExecutePlanRequest::kUserContextFieldNumber;
constexpr int kUserIdField = view::UserContext::kUserIdFieldNumber;
constexpr int kUserNameField = view::UserContext::kUserNameFieldNumber;

void append_varint(std::string& out, uint64_t value) {
  uint8_t buf[10];
  uint8_t* end = CodedOutputStream::WriteVarint64ToArray(value, buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(end - buf));
}

void append_length_delimited(std::string& out, int field, std::string_view bytes) {
  append_varint(out, WireFormatLite::MakeTag(field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED));
  append_varint(out, bytes.size());
  out.append(bytes);
}

SpliceResult failed(std::string reason) {
  SpliceResult r;
  r.error = std::move(reason);
  return r;
}

// Reads one user_context occurrence (tag + length + UserContext bytes) and appends to
// `others` every inner field except user_id and user_name, byte for byte. Returns an
// error message, empty on success.
std::string collect_other_fields(std::string_view field_bytes, std::string& others) {
  if (field_bytes.size() > static_cast<size_t>(INT_MAX)) return "user_context span is too long";
  const int size = static_cast<int>(field_bytes.size());
  CodedInputStream in(reinterpret_cast<const uint8_t*>(field_bytes.data()), size);
  if (in.ReadTagNoLastTag() != WireFormatLite::MakeTag(kUserContextField, WireFormatLite::WIRETYPE_LENGTH_DELIMITED))
    return "user_context span does not start with a length-delimited field 2";
  uint64_t inner_length = 0;
  if (!in.ReadVarint64(&inner_length)) return "user_context span has an invalid length";
  if (inner_length != static_cast<uint64_t>(size - in.CurrentPosition()))
    return "user_context span length does not match the field's length";
  while (in.CurrentPosition() < size) {
    const int start = in.CurrentPosition();
    const uint32_t tag = in.ReadTagNoLastTag();
    if (tag == 0) return "user_context holds an invalid field tag";
    const int field = static_cast<int>(WireFormatLite::GetTagFieldNumber(tag));
    if (field == 0) return "user_context holds field number 0";
    const auto wire_type = WireFormatLite::GetTagWireType(tag);
    bool read = false;
    switch (wire_type) {
      case WireFormatLite::WIRETYPE_VARINT: {
        uint64_t ignored;
        read = in.ReadVarint64(&ignored);
        break;
      }
      case WireFormatLite::WIRETYPE_FIXED64:
        read = in.Skip(8);
        break;
      case WireFormatLite::WIRETYPE_FIXED32:
        read = in.Skip(4);
        break;
      case WireFormatLite::WIRETYPE_LENGTH_DELIMITED: {
        uint64_t length = 0;
        read = in.ReadVarint64(&length) && length <= static_cast<uint64_t>(size - in.CurrentPosition()) &&
               in.Skip(static_cast<int>(length));
        break;
      }
      default:
        // Groups are deprecated and no UserContext field is one; refusing them keeps the
        // walk flat.
        return "user_context field " + std::to_string(field) + " uses unsupported wire type " +
               std::to_string(static_cast<int>(wire_type));
    }
    if (!read) return "user_context field " + std::to_string(field) + " is truncated";
    if (field == kUserIdField || field == kUserNameField) {
      // A parser would keep a wrongly typed user_id as an unknown field; dropping it
      // silently would hide a client bug, keeping it would let the backend see it.
      if (wire_type != WireFormatLite::WIRETYPE_LENGTH_DELIMITED)
        return "user_context field " + std::to_string(field) + " must be length-delimited";
      continue;
    }
    others.append(field_bytes.substr(static_cast<size_t>(start), static_cast<size_t>(in.CurrentPosition() - start)));
  }
  return {};
}
}  // namespace

SpliceResult splice_user_context(std::string_view head, std::span<const FieldSpan> spans, std::string_view user_id,
                                 std::string_view user_name) {
  using google::protobuf::internal::IsStructurallyValidUTF8;
  if (user_name.empty()) user_name = user_id;
  if (user_id.empty()) return failed("the principal's user_id is empty");
  // Both are proto3 strings: a backend refuses a message whose strings are not UTF-8.
  if (user_id.size() > static_cast<size_t>(INT_MAX) || user_name.size() > static_cast<size_t>(INT_MAX) ||
      !IsStructurallyValidUTF8(user_id.data(), static_cast<int>(user_id.size())) ||
      !IsStructurallyValidUTF8(user_name.data(), static_cast<int>(user_name.size())))
    return failed("the principal's user_id or user_name is not valid UTF-8");

  if (head.size() < grpcwire::kPrefixBytes) return failed("the stream head is shorter than the gRPC message prefix");
  if (head[0] == 1) return failed("the first message is compressed; its user_context cannot be rewritten");
  if (head[0] != 0) return failed("the first message has an invalid gRPC compressed flag");
  uint64_t message_length = 0;
  for (size_t i = 1; i < grpcwire::kPrefixBytes; ++i)
    message_length = (message_length << 8) | static_cast<uint8_t>(head[i]);
  const std::string_view payload =
      head.substr(grpcwire::kPrefixBytes, std::min<uint64_t>(head.size() - grpcwire::kPrefixBytes, message_length));

  uint64_t end_of_previous = 0;
  for (const auto& s : spans) {
    if (s.offset < end_of_previous) return failed("user_context spans overlap or are out of order");
    if (s.offset > payload.size() || s.length > payload.size() - s.offset)
      return failed("a user_context span lies outside the first message's bytes in the head");
    end_of_previous = s.offset + s.length;
  }

  std::string first_inner;
  append_length_delimited(first_inner, kUserIdField, user_id);
  append_length_delimited(first_inner, kUserNameField, user_name);

  std::string out;
  out.reserve(head.size() + first_inner.size() + 16);
  out.append(grpcwire::kPrefixBytes, '\0');  // filled in once the new length is known
  if (spans.empty()) {
    append_length_delimited(out, kUserContextField, first_inner);
    out.append(payload);
  } else {
    uint64_t pos = 0;
    std::string inner;
    for (size_t i = 0; i < spans.size(); ++i) {
      const auto& s = spans[i];
      out.append(payload.substr(pos, s.offset - pos));
      inner = i == 0 ? first_inner : std::string();
      std::string err = collect_other_fields(payload.substr(s.offset, s.length), inner);
      if (!err.empty()) return failed(std::move(err));
      append_length_delimited(out, kUserContextField, inner);
      pos = s.offset + s.length;
    }
    out.append(payload.substr(pos));
  }
  out.append(head.substr(grpcwire::kPrefixBytes + payload.size()));

  const int64_t delta = static_cast<int64_t>(out.size()) - static_cast<int64_t>(head.size());
  const int64_t new_length = static_cast<int64_t>(message_length) + delta;
  if (new_length > static_cast<int64_t>(std::numeric_limits<uint32_t>::max()))
    return failed("the rewritten message would be longer than 4 GiB");
  const std::string prefix = grpcwire::encode_prefix(static_cast<uint32_t>(new_length));
  out.replace(0, grpcwire::kPrefixBytes, prefix);

  SpliceResult r;
  r.head = std::move(out);
  r.delta = delta;
  return r;
}

}  // namespace sparkgate::spark
