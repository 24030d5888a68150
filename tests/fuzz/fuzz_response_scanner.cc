// libFuzzer target: the streaming scan of a response message for session_id and
// server_side_session_id (gateway/spark/response_scanner.h). The backend is trusted more
// than a client, but a broken or hostile one must not take the gateway down either.
//
// Input: [RPC selector: 1 byte][chunking seed: 2 bytes][the response payload].
// Invariants checked:
//   - one call, one byte at a time and random chunks give the same verdict and ids;
//   - feeding more bytes than the message holds is clamped (finished() afterwards);
//   - when the scan does not fail and protobuf's parser accepts the payload as that RPC's
//     view response, every id agrees with the parser's (ids over the scanner's 1 KiB cap
//     are not kept by design and are not compared).
#include <cstdint>
#include <span>
#include <string>

#include "fuzz_util.h"
#include "spark/response_scanner.h"
#include "spark_messages.h"

using namespace sparkgate;
namespace fz = sparkgate::fuzz;

namespace {

struct Ids {
  bool failed = false;
  bool finished = false;
  std::string session, server_session, new_session, new_server_session;
  bool operator==(const Ids&) const = default;
};

Ids scan(const spark::RpcInfo& rpc, std::span<const uint8_t> msg, const std::vector<std::span<const uint8_t>>& chunks) {
  spark::ResponseScanner s(rpc, msg.size());
  for (auto c : chunks) {
    s.feed(c);
    if (s.failed()) break;
  }
  FUZZ_CHECK(s.finished());  // every byte was fed (or the scan failed)
  // Bytes past the end of the message are ignored.
  const uint8_t extra[3] = {0x0a, 0x01, 'x'};
  s.feed(extra);
  return {s.failed(), s.finished(), std::string(s.session_id()), std::string(s.server_side_session_id()),
          std::string(s.new_session_id()), std::string(s.new_server_side_session_id())};
}

void compare(const google::protobuf::Message& m, int field, const std::string& scanned) {
  if (field == 0) {
    FUZZ_CHECK(scanned.empty());
    return;
  }
  const std::string parsed = fz::string_field(m, field);
  if (parsed.size() <= 1024) FUZZ_CHECK(parsed == scanned);
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
  const std::span<const uint8_t> msg = in;

  const Ids whole = scan(rpc, msg, {msg});
  FUZZ_CHECK(scan(rpc, msg, fz::chunk(msg, 0)) == whole);
  FUZZ_CHECK(scan(rpc, msg, fz::chunk(msg, seed | 1u)) == whole);
  for (const auto* id : {&whole.session, &whole.server_session, &whole.new_session, &whole.new_server_session})
    FUZZ_CHECK(id->size() <= 1024);

  if (!whole.failed) {
    auto m = fz::response_message(rpc.rpc);
    if (m->ParseFromArray(msg.data(), static_cast<int>(msg.size()))) {
      compare(*m, rpc.response_session_field, whole.session);
      compare(*m, rpc.response_server_session_field, whole.server_session);
      const bool clone = rpc.rpc == spark::Rpc::kCloneSession;
      compare(*m, clone ? view::CloneSessionResponse::kNewSessionIdFieldNumber : 0, whole.new_session);
      compare(*m, clone ? view::CloneSessionResponse::kNewServerSideSessionIdFieldNumber : 0,
              whole.new_server_session);
    }
  }
  return 0;
}
