#include "proxy/pipeline.h"

namespace sparkgate::proxy {

Pipeline::Pipeline(RpcState& state, PipelineOwner& owner)
    : owner_(owner),
      authenticate_(state, *this),
      inspect_(state, *this),
      identity_(state),
      admit_(state, *this),
      route_(state, *this),
      session_admit_(state, *this),
      upstream_(state, *this),
      steps_{&authenticate_, &inspect_, &identity_, &admit_, &route_, &session_admit_, &upstream_} {}

void Pipeline::run_from(size_t index) {
  paused_ = false;
  for (next_ = index; next_ < kCount; ++next_) {
    if (next_ == kUpstream) owner_.on_routed();
    switch (steps_[next_]->run()) {
      case StepStatus::kContinue:
        continue;
      case StepStatus::kPaused:
        paused_ = true;
        owner_.on_waiting(wait_name(next_));
        return;
      case StepStatus::kStop:
        stop();
        return;
    }
  }
}

void Pipeline::step_done(StepStatus status) {
  paused_ = false;
  owner_.on_wait_over();
  if (status == StepStatus::kStop) {
    stop();
    return;
  }
  run_from(next_ + 1);
}

void Pipeline::stop() {
  if (next_ == kUpstream && upstream_.unreachable() && route_.can_move()) {
    // A new session on a backend that cannot be reached: nothing of it reached any
    // backend, so it may go to another one (once).
    session_admit_.unbind();
    owner_.on_unrouted();
    if (route_.move_new_session(upstream_.error())) {
      run_from(kSessionAdmit);
      return;
    }
  }
  stopped_ = true;
  owner_.on_stop();
}

void Pipeline::cancel() {
  if (!paused_) return;
  paused_ = false;
  steps_[next_]->cancel();
  owner_.on_wait_over();
}

std::string_view Pipeline::wait_name(size_t index) {
  switch (index) {
    case kAuthenticate: return "identity provider keys";
    case kInspect: return "";  // the client's own time; not traced
    case kIdentity: return "identity";
    case kAdmit: return "quotas";
    case kRoute: return "routing";
    case kSessionAdmit: return "session quotas";
    case kUpstream: return "upstream connection";
    default: return "pipeline";
  }
}

}  // namespace sparkgate::proxy
