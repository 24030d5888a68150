// Pipeline step: the upstream stream. Puts the cluster's own credential in place of the
// client's (if the cluster has one), takes a connection from the worker's pool for the
// chosen backend (waiting for a new one if every connection is full) and opens the
// stream on it; the UpstreamRequest relays from then on. An unreachable backend is a
// passive health failure and ends the RPC with UNAVAILABLE, unless the pipeline can
// place a new session elsewhere (unreachable()).
#pragma once

#include <string>

#include "base/cancellable.h"
#include "proxy/step.h"
#include "upstream/conn_pool.h"

namespace sparkgate::proxy {

struct RpcState;

class UpstreamStep final : public Step, private upstream::PoolWaiter {
 public:
  UpstreamStep(RpcState& state, StepDone& done) : state_(state), done_(done) {}
  StepStatus run() override;
  void cancel() override { wait_.cancel(); }

  // The last kStop was a backend that could not be reached; error() says why.
  bool unreachable() const { return unreachable_; }
  const std::string& error() const { return error_; }

 private:
  StepStatus open(http2::ClientConnection& conn);
  void on_pool_ready(http2::ClientConnection* conn, const std::string& error) override;

  RpcState& state_;
  StepDone& done_;
  base::PendingWait wait_;
  bool unreachable_ = false;
  std::string error_;
};

}  // namespace sparkgate::proxy
