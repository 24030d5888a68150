// The order of one RPC's steps — the only place that knows it:
//
//   authenticate (may wait for an issuer's keys) → inspect (wait for the envelope) →
//   identity → admit (quotas) →
//   route (backend) → session admit (session quotas) → upstream (open the stream)
//
// start() runs the steps from the first; each answers continue, stop or paused (step.h).
// A paused step resumes the pipeline through step_done when its wait ends. A stop ends
// the RPC with the step's reply (PipelineOwner::on_stop); one exception: a new session
// whose backend could not be reached goes back to the route step once, to be placed
// elsewhere. When every step continued, the UpstreamRequest relays.
//
// cancel() calls off whatever the current step waits for; no step completes afterwards.
// Embedded in the RpcStream (no allocation); the worker thread only.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

#include "proxy/admit_step.h"
#include "proxy/authenticate_step.h"
#include "proxy/identity_step.h"
#include "proxy/request_inspector.h"
#include "proxy/route_step.h"
#include "proxy/session_admit_step.h"
#include "proxy/step.h"
#include "proxy/upstream_step.h"

namespace sparkgate::proxy {

struct RpcState;

// What the pipeline tells its RPC.
class PipelineOwner {
 public:
  // A step stopped the RPC with RpcState::reply.
  virtual void on_stop() = 0;
  // The backend is final and the stream is about to be opened / it is decided again.
  virtual void on_routed() = 0;
  virtual void on_unrouted() = 0;
  // A step started waiting for `what` ("quotas", "routing", "upstream connection", ...;
  // "" while the request message is awaited) / the wait ended (answered or called off).
  // For the RPC's trace; no decision.
  virtual void on_waiting(std::string_view what) { (void)what; }
  virtual void on_wait_over() {}

 protected:
  ~PipelineOwner() = default;
};

class Pipeline final : private StepDone {
 public:
  Pipeline(RpcState& state, PipelineOwner& owner);

  void start() { run_from(kAuthenticate); }
  // Request bytes or the request's end arrived: the inspect step may go on.
  void poll_envelope() { inspect_.poll(); }
  // True once every step continued (the upstream stream is open).
  bool done() const { return next_ == kCount; }
  // True while a step waits.
  bool paused() const { return paused_; }
  // True when a step stopped the RPC.
  bool stopped() const { return stopped_; }
  void cancel();

  AdmitStep& admit() { return admit_; }
  SessionAdmitStep& session_admit() { return session_admit_; }

 private:
  enum Index : size_t { kAuthenticate, kInspect, kIdentity, kAdmit, kRoute, kSessionAdmit, kUpstream, kCount };
  void run_from(size_t index);
  void step_done(StepStatus status) override;
  void stop();
  // What the step at `index` waits for, as the trace names it ("" for the inspect step:
  // the client sending its message).
  static std::string_view wait_name(size_t index);

  PipelineOwner& owner_;
  AuthenticateStep authenticate_;
  InspectStep inspect_;
  IdentityStep identity_;
  AdmitStep admit_;
  RouteStep route_;
  SessionAdmitStep session_admit_;
  UpstreamStep upstream_;
  std::array<Step*, kCount> steps_;
  size_t next_ = 0;  // the step running or waiting; kCount when all continued
  bool paused_ = false;
  bool stopped_ = false;
};

}  // namespace sparkgate::proxy
