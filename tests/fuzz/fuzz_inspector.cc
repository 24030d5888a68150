// libFuzzer target: the streaming envelope scanner of the first request message
// (gateway/spark/inspector.h), fed in random chunkings as the network delivers them.
//
// Input: [RPC selector: 1 byte][chunking seed: 2 bytes][field cap selector: 1 byte]
//        [the message payload].
// Invariants checked:
//   - one call, one byte at a time and random chunks give the same verdict, error,
//     envelope, user_context spans and routable/complete state (and, on success, the
//     same consumed count);
//   - when the scan succeeds over the whole message and protobuf's own parser accepts it
//     as that RPC's view message, session_id, user_context (user_id, user_name, presence),
//     client_type and operation_id agree with the parser's;
//   - user_context spans are in order, inside the message, each one a field 2 that
//     protobuf parses as a UserContext, and at most kMaxUserContextSpans;
//   - no captured field exceeds the cap;
//   - freezing the scanner as soon as it is routable (what the proxy does) never lets
//     the session or user seen at that moment change afterwards.
#include <google/protobuf/io/coded_stream.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "spark/inspector.h"
#include "spark_messages.h"

using namespace sparkgate;
namespace fz = sparkgate::fuzz;

namespace {

struct Outcome {
  bool ok = true;
  std::string error;
  spark::Envelope env;
  std::vector<spark::FieldSpan> spans;
  uint64_t consumed = 0;
  bool routable = false, complete = false, finished = false;
};

bool same_envelope(const spark::Envelope& a, const spark::Envelope& b) {
  return a.session_id == b.session_id && a.has_user_context == b.has_user_context && a.user_id == b.user_id &&
         a.user_name == b.user_name && a.client_type == b.client_type && a.operation_id == b.operation_id;
}

Outcome scan(const spark::RpcInfo& rpc, std::span<const uint8_t> msg, uint32_t cap,
             const std::vector<std::span<const uint8_t>>& chunks) {
  spark::EnvelopeScanner s(rpc, msg.size(), cap);
  Outcome o;
  for (auto c : chunks) {
    if (!s.feed(c)) {
      o.ok = false;
      break;
    }
  }
  o.error = s.error();
  FUZZ_CHECK(o.ok == o.error.empty());
  if (!o.ok) FUZZ_CHECK(!s.feed({}));  // an error sticks
  o.env = s.envelope();
  const auto spans = s.user_context_spans();
  o.spans.assign(spans.begin(), spans.end());
  o.consumed = s.consumed();
  o.routable = s.routable();
  o.complete = s.complete();
  o.finished = s.finished();
  FUZZ_CHECK(o.consumed <= msg.size());
  FUZZ_CHECK(s.remaining() == msg.size() - o.consumed);
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fz::quiet_protobuf();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  const auto& rpcs = spark::all_rpcs();
  const spark::RpcInfo& rpc = rpcs[fz::take<uint8_t>(in) % rpcs.size()];
  const uint16_t seed = fz::take<uint16_t>(in);
  static const uint32_t kCaps[] = {64u << 10, 0, 1, 16, 64, 1024};
  const uint32_t cap = kCaps[fz::take<uint8_t>(in) % 6];
  const std::span<const uint8_t> msg = in;

  const Outcome whole = scan(rpc, msg, cap, {msg});
  const Outcome bytes = scan(rpc, msg, cap, fz::chunk(msg, 0));
  const Outcome random = scan(rpc, msg, cap, fz::chunk(msg, seed | 1u));
  for (const Outcome* o : {&bytes, &random}) {
    FUZZ_CHECK(o->ok == whole.ok);
    FUZZ_CHECK(o->error == whole.error);
    FUZZ_CHECK(same_envelope(o->env, whole.env));
    FUZZ_CHECK(o->spans.size() == whole.spans.size());
    for (size_t i = 0; i < o->spans.size(); ++i)
      FUZZ_CHECK(o->spans[i].offset == whole.spans[i].offset && o->spans[i].length == whole.spans[i].length);
    FUZZ_CHECK(o->routable == whole.routable && o->complete == whole.complete);
    // After an error the scan position is not meaningful (nothing uses it): a header
    // fed byte by byte is counted as it arrives, a whole one only once parsed.
    if (whole.ok) FUZZ_CHECK(o->consumed == whole.consumed && o->finished == whole.finished);
  }

  if (whole.ok) {
    FUZZ_CHECK(whole.finished && whole.consumed == msg.size());
    FUZZ_CHECK(whole.complete);
    FUZZ_CHECK(whole.env.session_id.size() <= cap);
    if (whole.env.client_type) FUZZ_CHECK(whole.env.client_type->size() <= cap);
    if (whole.env.operation_id) FUZZ_CHECK(whole.env.operation_id->size() <= cap);
    FUZZ_CHECK(whole.spans.size() <= spark::EnvelopeScanner::kMaxUserContextSpans);
    FUZZ_CHECK(whole.env.has_user_context == !whole.spans.empty());
    uint64_t end = 0;
    for (const auto& sp : whole.spans) {
      FUZZ_CHECK(sp.offset >= end && sp.length <= msg.size() && sp.offset <= msg.size() - sp.length);
      end = sp.offset + sp.length;
      google::protobuf::io::CodedInputStream field(msg.data() + sp.offset, static_cast<int>(sp.length));
      FUZZ_CHECK(field.ReadTagNoLastTag() == ((2u << 3) | 2u));
      uint32_t len = 0;
      FUZZ_CHECK(field.ReadVarint32(&len));
      FUZZ_CHECK(len == sp.length - static_cast<uint64_t>(field.CurrentPosition()));
      view::UserContext uc;
      FUZZ_CHECK(uc.ParseFromArray(msg.data() + sp.offset + field.CurrentPosition(), static_cast<int>(len)));
    }

    // Cross-check with protobuf's parser. It accepts things the scanner refuses (groups,
    // oversized fields) and refuses things the scanner does not look into (invalid UTF-8,
    // a broken plan), so only inputs both accept are compared.
    auto m = fz::request_message(rpc.rpc);
    if (m->ParseFromArray(msg.data(), static_cast<int>(msg.size()))) {
      FUZZ_CHECK(fz::string_field(*m, 1) == whole.env.session_id);
      FUZZ_CHECK(fz::has_field(*m, 2) == whole.env.has_user_context);
      if (whole.env.has_user_context) {
        const auto* f = m->GetDescriptor()->FindFieldByNumber(2);
        const auto& uc = static_cast<const view::UserContext&>(m->GetReflection()->GetMessage(*m, f));
        FUZZ_CHECK(uc.user_id() == whole.env.user_id);
        FUZZ_CHECK(uc.user_name() == whole.env.user_name);
      }
      FUZZ_CHECK(fz::has_field(*m, rpc.client_type_field) == whole.env.client_type.has_value());
      if (whole.env.client_type) FUZZ_CHECK(fz::string_field(*m, rpc.client_type_field) == *whole.env.client_type);
      if (rpc.operation_id_field != 0)
        FUZZ_CHECK(fz::string_field(*m, rpc.operation_id_field) == whole.env.operation_id.value_or(""));
      else
        FUZZ_CHECK(!whole.env.operation_id);
    }
  }

  // The proxy's use: feed chunks, freeze once routable, keep feeding.
  {
    spark::EnvelopeScanner s(rpc, msg.size(), cap);
    std::optional<spark::Envelope> at_route;
    for (auto c : fz::chunk(msg, seed ^ 0x5a5au)) {
      if (!s.feed(c)) break;
      if (!at_route && s.routable()) {
        s.freeze();
        at_route = s.envelope();
      }
    }
    if (at_route && s.error().empty()) {
      FUZZ_CHECK(s.envelope().session_id == at_route->session_id);
      FUZZ_CHECK(s.envelope().has_user_context == at_route->has_user_context);
      if (at_route->has_user_context) {
        FUZZ_CHECK(s.envelope().user_id == at_route->user_id);
        FUZZ_CHECK(s.envelope().user_name == at_route->user_name);
      }
    }
  }
  return 0;
}
