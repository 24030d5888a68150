#include "proxy/request_inspector.h"

#include <algorithm>

#include "proxy/upstream_request.h"

namespace sparkgate::proxy {

namespace {
// Once session_id and user_context are known, the scan waits at most this long in bytes
// for the optional envelope fields (client_type, operation_id) before routing. Clients
// write fields in number order, so for ExecutePlan these follow the plan; waiting for
// them would hold a large plan.
constexpr size_t kOptionalFieldBudget = 16 * 1024;

LocalReply invalid(std::string message) { return {grpcwire::StatusCode::kInvalidArgument, std::move(message), {}}; }
}  // namespace

const spark::Envelope& RpcState::envelope() const { return *inspector->envelope(); }

LocalReply too_large_reply(std::string_view direction, const grpcwire::Framer& framer, const RpcState& state) {
  const uint64_t limit = framer.max_message_bytes();
  std::string msg = std::string(direction) + " message of " + std::to_string(framer.last_header().length) + " bytes";
  if (direction == "response") msg += " from backend " + state.backend;
  const uint64_t quota = state.quota.max_message_bytes;
  if (quota && limit == quota && limit < state.ctx.config->limits.max_message_bytes) {
    return {grpcwire::StatusCode::kResourceExhausted,
            msg + " exceeds quota max_message_bytes (" + std::to_string(limit) + ") of user '" + state.principal.user +
                "'",
            observe::Metrics::Quota::kMaxMessageBytes};
  }
  return {grpcwire::StatusCode::kResourceExhausted,
          msg + " exceeds the gateway limit of " + std::to_string(limit) + " bytes (limits.max_message_bytes)",
          {}};
}

bool RequestInspector::inspect(const RpcState& state, const uint8_t* data, size_t n, LocalReply& reply) {
  const uint64_t chunk_start = offset_;
  auto err = framer_.scan({data, n}, [&](const grpcwire::MessageHeader& h, size_t payload_offset) {
    if (framer_.messages() != 1) return;
    first_payload_start_ = chunk_start + payload_offset;
    if (!h.compressed) scanner_.emplace(*state.rpc, h.length);
  });
  offset_ += n;
  if (err == grpcwire::FramerError::kTooLarge) {
    reply = too_large_reply("request", framer_, state);
    return false;
  }
  if (err == grpcwire::FramerError::kBadFlag) {
    reply = invalid("malformed gRPC framing: invalid compressed flag");
    return false;
  }
  if (framer_.messages() >= 1 && framer_.last_header().compressed && !scanner_) {
    reply = invalid(
        "compressed request messages are not supported: sparkgate must read the Spark session envelope; "
        "turn off request compression in the client");
    return false;
  }
  // Feed the part of this chunk that belongs to the first message's payload; the scanner
  // sees every byte of it once, so a repeated envelope field later on is caught too.
  if (scanner_ && !scanner_->finished()) {
    uint64_t want_from = first_payload_start_ + scanner_->consumed();
    if (want_from >= chunk_start && want_from < chunk_start + n) {
      size_t off = static_cast<size_t>(want_from - chunk_start);
      size_t len = static_cast<size_t>(std::min<uint64_t>(n - off, scanner_->remaining()));
      if (!scanner_->feed({data + off, len})) {
        reply = invalid("cannot read the Spark request envelope of " + std::string(state.rpc->name) + ": " +
                        scanner_->error());
        return false;
      }
    }
  }
  return true;
}

RequestInspector::Envelope RequestInspector::envelope_state(const RpcState& state, bool ended, size_t queued,
                                                            LocalReply& reply) {
  const auto& limits = state.ctx.config->limits;
  const std::string name(state.rpc->name);
  bool ready = false;
  if (scanner_) {
    if (scanner_->complete()) {
      ready = true;
    } else if (scanner_->routable() && (ended || scanner_->consumed() >= kOptionalFieldBudget)) {
      ready = true;
    } else if (scanner_->finished()) {
      reply = invalid(name + " request has no session_id");
      return Envelope::kRefused;
    }
  }
  if (!ready) {
    if (ended) {
      reply = invalid("the request stream ended before its first message was complete");
      return Envelope::kRefused;
    }
    if (queued >= limits.max_envelope_scan_bytes) {
      reply = invalid("the Spark session envelope (session_id, user_context) was not found in the first " +
                      std::to_string(limits.max_envelope_scan_bytes) + " bytes of the " + name +
                      " request (limits.max_envelope_scan_bytes)");
      return Envelope::kRefused;
    }
    return Envelope::kWait;
  }
  scanner_->freeze();
  if (scanner_->envelope().session_id.empty()) {
    reply = invalid(name + " request has an empty session_id");
    return Envelope::kRefused;
  }
  return Envelope::kReady;
}

StepStatus InspectStep::check() {
  auto& up = *state_.upstream;
  switch (state_.inspector->envelope_state(state_, up.request_ended(), up.request_queued(), state_.reply)) {
    case RequestInspector::Envelope::kWait:
      return StepStatus::kPaused;
    case RequestInspector::Envelope::kReady:
      return StepStatus::kContinue;
    case RequestInspector::Envelope::kRefused:
      break;
  }
  return StepStatus::kStop;
}

StepStatus InspectStep::run() {
  auto s = check();
  waiting_ = s == StepStatus::kPaused;
  return s;
}

void InspectStep::poll() {
  if (!waiting_) return;
  auto s = check();
  if (s == StepStatus::kPaused) return;
  waiting_ = false;
  done_.step_done(s);
}

}  // namespace sparkgate::proxy
