// libFuzzer target: the gRPC length-prefix framer (gateway/grpcwire/framer.h).
//
// Input: [limit selector: 1 byte][chunking seed: 2 bytes][the request body bytes].
// Invariants checked:
//   - the same bytes give the same messages, offsets and error however they are chunked
//     (one call, one byte at a time, random chunks);
//   - every reported message header is exactly what the 5 bytes before its payload say,
//     payloads follow each other without gap or overlap, and no reported length exceeds
//     the limit;
//   - an error is reported exactly when the next prefix has a flag > 1 (kBadFlag) or a
//     length over the limit (kTooLarge), and it sticks;
//   - at_boundary() holds iff the bytes end exactly after a payload;
//   - encode_prefix() round-trips through the framer.
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "fuzz_util.h"
#include "grpcwire/framer.h"

using sparkgate::grpcwire::FramerError;
using sparkgate::grpcwire::Framer;
using sparkgate::grpcwire::MessageHeader;
namespace fz = sparkgate::fuzz;

namespace {

struct Seen {
  bool compressed;
  uint32_t length;
  uint64_t payload_start;  // absolute offset in the stream
  bool operator==(const Seen&) const = default;
};

struct Run {
  std::vector<Seen> messages;
  FramerError error = FramerError::kNone;
  uint64_t count = 0;
  bool at_boundary = false;
};

Run run(std::span<const uint8_t> stream, const std::vector<std::span<const uint8_t>>& chunks, uint64_t limit) {
  Run r;
  Framer f(limit);
  uint64_t base = 0;
  for (auto c : chunks) {
    FramerError e = f.scan(c, [&](const MessageHeader& h, size_t off) {
      FUZZ_CHECK(off <= c.size());
      r.messages.push_back({h.compressed, h.length, base + off});
    });
    base += c.size();
    if (e != FramerError::kNone) {
      r.error = e;
      break;
    }
  }
  if (r.error != FramerError::kNone) {
    // Sticky: more bytes change nothing.
    size_t before = r.messages.size();
    const uint8_t more[6] = {0, 0, 0, 0, 1, 7};
    FUZZ_CHECK(f.scan(more, [&](const MessageHeader&, size_t) { r.messages.push_back({}); }) == r.error);
    FUZZ_CHECK(r.messages.size() == before);
  }
  r.count = f.messages();
  r.at_boundary = f.at_boundary();
  (void)stream;
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  static const uint64_t kLimits[] = {0, 1, 5, 100, 4096, 4u << 20, 128u << 20, UINT32_MAX};
  const uint64_t limit = kLimits[fz::take<uint8_t>(in) % 8];
  const uint16_t seed = fz::take<uint16_t>(in);

  const Run whole = run(in, {in}, limit);
  const Run bytes = run(in, fz::chunk(in, 0), limit);
  const Run random = run(in, fz::chunk(in, seed | 1u), limit);
  for (const Run* other : {&bytes, &random}) {
    FUZZ_CHECK(other->messages == whole.messages);
    FUZZ_CHECK(other->error == whole.error);
    FUZZ_CHECK(other->count == whole.count);
    FUZZ_CHECK(other->at_boundary == whole.at_boundary);
  }
  FUZZ_CHECK(whole.count == whole.messages.size());

  // Each header against the raw bytes; payloads are contiguous.
  uint64_t expect_prefix = 0;
  for (const Seen& m : whole.messages) {
    FUZZ_CHECK(m.payload_start == expect_prefix + 5);
    FUZZ_CHECK(m.payload_start <= in.size());
    const uint8_t* p = in.data() + expect_prefix;
    FUZZ_CHECK(p[0] <= 1 && m.compressed == (p[0] == 1));
    const uint32_t len = (uint32_t(p[1]) << 24) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 8) | p[4];
    FUZZ_CHECK(m.length == len);
    FUZZ_CHECK(m.length <= limit);
    expect_prefix = m.payload_start + m.length;
  }
  // What stopped the scan.
  if (whole.error != FramerError::kNone) {
    FUZZ_CHECK(expect_prefix + 5 <= in.size());
    const uint8_t* p = in.data() + expect_prefix;
    const uint32_t len = (uint32_t(p[1]) << 24) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 8) | p[4];
    if (whole.error == FramerError::kBadFlag) FUZZ_CHECK(p[0] > 1);
    if (whole.error == FramerError::kTooLarge) FUZZ_CHECK(p[0] <= 1 && len > limit);
  } else {
    // No error: either the bytes end inside the last payload, or inside / exactly at the
    // start of a prefix that would have been accepted so far.
    const bool ends_in_payload = expect_prefix > in.size();
    FUZZ_CHECK(ends_in_payload || in.size() - expect_prefix < 5);
    FUZZ_CHECK(whole.at_boundary == (expect_prefix == in.size()));
  }

  // encode_prefix round trip, for a length and flag taken from the input.
  if (in.size() >= 4) {
    uint32_t len;
    std::memcpy(&len, in.data(), 4);
    const bool compressed = in[0] & 1;
    const std::string prefix = sparkgate::grpcwire::encode_prefix(len, compressed);
    FUZZ_CHECK(prefix.size() == sparkgate::grpcwire::kPrefixBytes);
    Framer f(UINT32_MAX);
    MessageHeader got;
    size_t calls = 0;
    FUZZ_CHECK(f.scan({reinterpret_cast<const uint8_t*>(prefix.data()), prefix.size()},
                      [&](const MessageHeader& h, size_t off) {
                        got = h;
                        ++calls;
                        FUZZ_CHECK(off == 5);
                      }) == FramerError::kNone);
    FUZZ_CHECK(calls == 1 && got.length == len && got.compressed == compressed);
    FUZZ_CHECK(f.at_boundary() == (len == 0));
  }
  return 0;
}
