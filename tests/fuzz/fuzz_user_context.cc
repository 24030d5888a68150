// libFuzzer target: the in-place user_context splice (gateway/spark/user_context.h), used
// the way the proxy uses it: the envelope scanner reads a chunked request until it is
// routable, and the bytes held at that moment (prefix + head of the payload) are spliced.
//
// Input: [mode: 1 byte][RPC selector: 1 byte][chunking seed: 2 bytes]
//        [user_id length: 1 byte][user_id][user_name length: 1 byte][user_name]
//        [the message payload]
// Mode bit 0 set: the spans are taken from the input instead of the scanner (arbitrary,
// possibly invalid spans: the function must refuse them, never crash).
//
// Invariants checked when the splice succeeds:
//   - the new gRPC prefix says old length + delta, and the head grew by exactly delta;
//   - bytes after the spliced payload head (the rest of the stream head) are unchanged;
//   - the message that goes upstream (spliced head + rest of the message) scans again
//     without error; its envelope has the principal's user_id/user_name and the same
//     session_id, client_type and operation_id; it has as many user_context occurrences
//     (one if there was none), and every byte outside them is unchanged;
//   - each occurrence keeps its other fields (parsed and compared);
//   - when protobuf parses the original as the RPC's view message, it parses the result
//     too, and the two are equal except for user_id/user_name.
// And: the splice must succeed whenever the ids are valid UTF-8, every span lies in the
// held bytes and no occurrence carries a group or a mistyped user_id/user_name.
#include <google/protobuf/unknown_field_set.h>
#include <google/protobuf/util/message_differencer.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "grpcwire/framer.h"
#include "spark/inspector.h"
#include "spark/user_context.h"
#include "spark_messages.h"

using namespace sparkgate;
namespace fz = sparkgate::fuzz;

namespace {

std::string_view take_string(std::span<const uint8_t>& in) {
  size_t n = std::min<size_t>(fz::take<uint8_t>(in) % 65, in.size());
  auto s = fz::as_chars(in.first(n));
  in = in.subspan(n);
  return s;
}

uint32_t prefix_length(std::string_view head) {
  uint32_t n = 0;
  for (size_t i = 1; i < 5; ++i) n = (n << 8) | static_cast<uint8_t>(head[i]);
  return n;
}

// The bytes of `msg` outside `spans`, concatenated.
std::string outside(std::string_view msg, std::span<const spark::FieldSpan> spans) {
  std::string out;
  uint64_t pos = 0;
  for (const auto& s : spans) {
    out.append(msg.substr(pos, s.offset - pos));
    pos = s.offset + s.length;
  }
  out.append(msg.substr(pos));
  return out;
}

// An occurrence's UserContext without user_id and user_name, re-serialized.
std::string other_fields(std::string_view occurrence) {
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(occurrence.data()),
                                            static_cast<int>(occurrence.size()));
  in.ReadTagNoLastTag();
  uint32_t len = 0;
  FUZZ_CHECK(in.ReadVarint32(&len));
  view::UserContext uc;
  FUZZ_CHECK(uc.ParseFromString(std::string(occurrence.substr(static_cast<size_t>(in.CurrentPosition()), len))));
  uc.clear_user_id();
  uc.clear_user_name();
  return uc.SerializeAsString();
}

// True if the occurrence holds something the splice refuses by contract: a group, or a
// user_id / user_name that is not length-delimited (protobuf keeps both as unknown fields).
bool has_refused_fields(std::string_view occurrence) {
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(occurrence.data()),
                                            static_cast<int>(occurrence.size()));
  in.ReadTagNoLastTag();
  uint32_t len = 0;
  FUZZ_CHECK(in.ReadVarint32(&len));
  view::UserContext uc;
  FUZZ_CHECK(uc.ParseFromString(std::string(occurrence.substr(static_cast<size_t>(in.CurrentPosition()), len))));
  const auto& unknown = uc.GetReflection()->GetUnknownFields(uc);
  for (int i = 0; i < unknown.field_count(); ++i) {
    const auto& f = unknown.field(i);
    if (f.type() == google::protobuf::UnknownField::TYPE_GROUP || f.number() == 1 || f.number() == 2) return true;
  }
  // Extensions (field 999) are Any messages; a malformed one was kept as unknown above.
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fz::quiet_protobuf();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  const uint8_t mode = fz::take<uint8_t>(in);
  const auto& rpcs = spark::all_rpcs();
  const spark::RpcInfo& rpc = rpcs[fz::take<uint8_t>(in) % rpcs.size()];
  const uint16_t seed = fz::take<uint16_t>(in);
  const std::string user_id(take_string(in));
  const std::string user_name(take_string(in));
  const std::string_view msg = fz::as_chars(in);
  const std::string trailing = grpcwire::encode_prefix(3) + "abc";  // the next message's first bytes

  if (mode & 1) {
    // Arbitrary spans (from the tail of the input) over an arbitrary head.
    std::vector<spark::FieldSpan> spans;
    std::span<const uint8_t> s = in;
    while (s.size() >= 4 && spans.size() < 8) {
      spans.push_back({fz::take<uint16_t>(s), fz::take<uint16_t>(s)});
    }
    const std::string head = grpcwire::encode_prefix(static_cast<uint32_t>(msg.size()), mode & 2) + std::string(msg);
    auto r = spark::splice_user_context(head, spans, user_id, user_name);
    if (r.ok()) {
      FUZZ_CHECK(static_cast<int64_t>(r.head.size()) == static_cast<int64_t>(head.size()) + r.delta);
      FUZZ_CHECK(static_cast<int64_t>(prefix_length(r.head)) == static_cast<int64_t>(msg.size()) + r.delta);
    } else {
      FUZZ_CHECK(r.head.empty());
    }
    return 0;
  }

  // The proxy's use: scan chunks until routable (or finished / failed).
  spark::EnvelopeScanner scanner(rpc, msg.size());
  bool scan_ok = true;
  for (auto c : fz::chunk({reinterpret_cast<const uint8_t*>(msg.data()), msg.size()}, seed)) {
    if (!scanner.feed(c)) {
      scan_ok = false;
      break;
    }
    if (scanner.routable()) break;
  }
  if (!scan_ok || !scanner.routable()) return 0;  // the proxy refuses such a request before any splice
  const uint64_t held = scanner.consumed();
  const auto spans = scanner.user_context_spans();
  std::string head = grpcwire::encode_prefix(static_cast<uint32_t>(msg.size())) + std::string(msg.substr(0, held));
  if (held == msg.size()) head += trailing;

  auto r = spark::splice_user_context(head, spans, user_id, user_name);

  using google::protobuf::internal::IsStructurallyValidUTF8;
  bool must_succeed = !user_id.empty() && IsStructurallyValidUTF8(user_id.data(), static_cast<int>(user_id.size())) &&
                      IsStructurallyValidUTF8(user_name.data(), static_cast<int>(user_name.size()));
  for (const auto& s : spans) {
    if (s.offset + s.length > held) must_succeed = false;  // the proxy then refuses the request
    else if (has_refused_fields(msg.substr(s.offset, s.length))) must_succeed = false;
  }
  if (must_succeed && !r.ok()) fz::fail(__FILE__, __LINE__, ("splice refused a valid head: " + r.error).c_str());
  if (!r.ok()) {
    FUZZ_CHECK(r.head.empty());
    return 0;
  }

  // Lengths.
  FUZZ_CHECK(static_cast<int64_t>(r.head.size()) == static_cast<int64_t>(head.size()) + r.delta);
  FUZZ_CHECK(static_cast<int64_t>(prefix_length(r.head)) == static_cast<int64_t>(msg.size()) + r.delta);
  FUZZ_CHECK(static_cast<uint8_t>(r.head[0]) == 0);
  const size_t new_held = static_cast<size_t>(static_cast<int64_t>(held) + r.delta);
  FUZZ_CHECK(r.head.substr(5 + new_held) == head.substr(5 + held));
  // What goes upstream: the spliced head, then the rest of the message as it streams.
  const std::string new_msg = r.head.substr(5, new_held) + std::string(msg.substr(held));
  FUZZ_CHECK(new_msg.size() == prefix_length(r.head));

  // Scan the original and the new message whole, frozen where the proxy routes (after
  // the held head), as the proxy goes on scanning the rest; no field cap (the principal's
  // ids make user_context longer). The original may be refused later on (broken, or an
  // envelope field repeated after routing); then so is the request, and nothing is left
  // to check. Otherwise the spliced message must pass too.
  auto scan_frozen = [&](std::string_view m, size_t freeze_at, spark::EnvelopeScanner& s) {
    const auto* p = reinterpret_cast<const uint8_t*>(m.data());
    if (!s.feed({p, freeze_at})) return false;
    s.freeze();
    return s.feed({p + freeze_at, m.size() - freeze_at});
  };
  spark::EnvelopeScanner before(rpc, msg.size(), UINT32_MAX);
  if (!scan_frozen(msg, held, before)) return 0;
  spark::EnvelopeScanner after(rpc, new_msg.size(), UINT32_MAX);
  if (!scan_frozen(new_msg, new_held, after))
    fz::fail(__FILE__, __LINE__, ("spliced message no longer scans: " + after.error()).c_str());
  const std::string want_name = user_name.empty() ? user_id : user_name;
  const auto& eb = before.envelope();
  const auto& ea = after.envelope();
  FUZZ_CHECK(ea.has_user_context);
  FUZZ_CHECK(ea.user_id == user_id);
  FUZZ_CHECK(ea.user_name == want_name);
  FUZZ_CHECK(ea.session_id == eb.session_id);
  FUZZ_CHECK(ea.client_type == eb.client_type);
  FUZZ_CHECK(ea.operation_id == eb.operation_id);
  const auto sb = before.user_context_spans();
  const auto sa = after.user_context_spans();
  if (sb.empty()) {
    FUZZ_CHECK(sa.size() == 1 && sa[0].offset == 0);
    FUZZ_CHECK(new_msg.substr(sa[0].length) == msg);
  } else {
    FUZZ_CHECK(sa.size() == sb.size());
    FUZZ_CHECK(outside(new_msg, sa) == outside(msg, sb));
    for (size_t i = 0; i < sa.size(); ++i)
      FUZZ_CHECK(other_fields(std::string_view(new_msg).substr(sa[i].offset, sa[i].length)) ==
                 other_fields(msg.substr(sb[i].offset, sb[i].length)));
  }

  // Re-parse with protobuf.
  auto m_before = fz::request_message(rpc.rpc);
  if (m_before->ParseFromArray(msg.data(), static_cast<int>(msg.size()))) {
    auto m_after = fz::request_message(rpc.rpc);
    FUZZ_CHECK(m_after->ParseFromArray(new_msg.data(), static_cast<int>(new_msg.size())));
    const auto* f = m_before->GetDescriptor()->FindFieldByNumber(2);
    auto* uc = static_cast<view::UserContext*>(m_before->GetReflection()->MutableMessage(m_before.get(), f));
    uc->set_user_id(user_id);
    uc->set_user_name(want_name);
    FUZZ_CHECK(google::protobuf::util::MessageDifferencer::Equals(*m_before, *m_after));
  }
  return 0;
}
