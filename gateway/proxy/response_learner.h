// What the gateway learns from the first response message of a routed RPC: the backend's
// server_side_session_id (a changed one means the backend lost the session) and, for
// CloneSession, the clone, registered before the response reaches the client so that its
// first call already finds it.
//
// Threading: the RPC's worker thread; owned by the RpcStream.
#pragma once

#include <memory>

#include "http2/session_memory.h"
#include "proxy/upstream_request.h"
#include "spark/response_scanner.h"

namespace sparkgate::proxy {

struct RpcState;
class AdmitStep;

class ResponseLearner final : public ResponseTap {
 public:
  // `admit` takes over a clone's reserved quota slot.
  ResponseLearner(RpcState& state, AdmitStep& admit) : state_(state), admit_(admit) {}
  void first_message(const grpcwire::MessageHeader& header, uint64_t start) override;
  void chunk(const uint8_t* data, size_t n, uint64_t start) override;

 private:
  void learn();
  RpcState& state_;
  AdmitStep& admit_;
  // Made at the first response message, in a block of the per-thread lists: kept out of
  // the RpcStream, which it would push past the lists' largest class.
  std::shared_ptr<spark::ResponseScanner> scanner_;
  uint64_t payload_start_ = 0;
  uint64_t scanned_ = 0;
  bool done_ = false;
};

}  // namespace sparkgate::proxy
