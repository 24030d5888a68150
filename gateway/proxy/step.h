// One step of the per-RPC pipeline (pipeline.h), in the style of an Envoy filter: it
// looks at the RPC's state, makes its one decision and answers
//   kContinue  go on with the next step;
//   kStop      end the RPC with the reply the step put in RpcState::reply;
//   kPaused    an asynchronous wait is running; the step calls StepDone::step_done with
//              kContinue or kStop when it ends (never inside run()).
// A step that waits holds the wait's handle and cancels it in cancel(); after cancel()
// it never calls step_done.
//
// Threading: the RPC's worker thread.
#pragma once

#include <optional>
#include <string>

#include "grpcwire/status.h"
#include "observe/metrics.h"

namespace sparkgate::proxy {

enum class StepStatus { kContinue, kStop, kPaused };

// The gateway's own answer to an RPC: a typed status and a message for a person. With
// `quota` set the refusal is counted in sparkgate_quota_rejections_total.
struct LocalReply {
  grpcwire::StatusCode code = grpcwire::StatusCode::kOk;
  std::string message;
  std::optional<observe::Metrics::Quota> quota;
};

// How a paused step reports that its wait ended. Implemented by the Pipeline.
class StepDone {
 public:
  virtual void step_done(StepStatus status) = 0;

 protected:
  ~StepDone() = default;
};

class Step {
 public:
  virtual ~Step() = default;
  virtual StepStatus run() = 0;
  // Calls off the step's wait, if any.
  virtual void cancel() {}
};

}  // namespace sparkgate::proxy
