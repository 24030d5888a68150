// The request direction's gRPC framing and the Spark envelope of the first message: the
// size limit and framing checks on every chunk, and the envelope scan (spark/inspector.h)
// that tells the pipeline when it can route (InspectStep).
//
// Threading: the RPC's worker thread; owned by the RpcStream.
#pragma once

#include <optional>

#include "grpcwire/framer.h"
#include "proxy/rpc_state.h"
#include "proxy/step.h"
#include "spark/inspector.h"

namespace sparkgate::proxy {

class RequestInspector {
 public:
  explicit RequestInspector(uint64_t max_message_bytes) : framer_(max_message_bytes) {}

  // Checks the next request body chunk. False when the request must be refused; then
  // `reply` says why.
  bool inspect(const RpcState& state, const uint8_t* data, size_t n, LocalReply& reply);

  enum class Envelope { kWait, kReady, kRefused };
  // Whether the envelope is known well enough to route. `ended`: the client finished its
  // request; `queued`: request bytes held so far. kReady freezes the envelope;
  // kRefused fills `reply`.
  Envelope envelope_state(const RpcState& state, bool ended, size_t queued, LocalReply& reply);

  // The message size limit, lowered by a principal's max_message_bytes quota.
  void set_max_message_bytes(uint64_t limit) { framer_.set_max_message_bytes(limit); }
  const grpcwire::Framer& framer() const { return framer_; }
  bool at_boundary() const { return framer_.at_boundary(); }
  const spark::Envelope* envelope() const { return scanner_ ? &scanner_->envelope() : nullptr; }
  const spark::EnvelopeScanner& scanner() const { return *scanner_; }
  uint64_t bytes() const { return offset_; }  // request body bytes inspected

 private:
  grpcwire::Framer framer_;
  std::optional<spark::EnvelopeScanner> scanner_;
  uint64_t offset_ = 0;               // request body bytes seen so far
  uint64_t first_payload_start_ = 0;  // stream offset of the first message's payload
};

// The reply to a message over the limit in `direction` ("request" or "response"): the
// principal's max_message_bytes quota when that is the limit that applies, else the
// gateway's limits.max_message_bytes.
LocalReply too_large_reply(std::string_view direction, const grpcwire::Framer& framer, const RpcState& state);

// The pipeline's wait for the envelope: kPaused until the first message's envelope is
// known (RpcStream calls poll() as request bytes arrive).
class InspectStep final : public Step {
 public:
  InspectStep(RpcState& state, StepDone& done) : state_(state), done_(done) {}
  StepStatus run() override;
  // New request bytes (or the request's end) arrived while the step waits.
  void poll();
  bool waiting() const { return waiting_; }
  void cancel() override { waiting_ = false; }

 private:
  StepStatus check();
  RpcState& state_;
  StepDone& done_;
  bool waiting_ = false;
};

}  // namespace sparkgate::proxy
