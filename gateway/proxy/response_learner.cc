#include "proxy/response_learner.h"

#include "proxy/admit_step.h"
#include "proxy/rpc_state.h"

namespace sparkgate::proxy {

void ResponseLearner::first_message(const grpcwire::MessageHeader& header, uint64_t start) {
  if (!state_.route.session || header.compressed) return;
  payload_start_ = start;
  scanner_ = std::allocate_shared<spark::ResponseScanner>(http2::PooledAllocator<spark::ResponseScanner>(), *state_.rpc,
                                                         header.length);
}

void ResponseLearner::chunk(const uint8_t* data, size_t n, uint64_t start) {
  if (!scanner_ || done_) return;
  uint64_t want_from = payload_start_ + scanned_;
  if (want_from < start || want_from >= start + n) return;
  size_t off = static_cast<size_t>(want_from - start);
  size_t before = static_cast<size_t>(scanner_->remaining());
  scanner_->feed({data + off, n - off});
  scanned_ += before - scanner_->remaining();
  if (!scanner_->finished()) return;
  done_ = true;
  if (!scanner_->failed() && state_.route.session) learn();
}

void ResponseLearner::learn() {
  auto& router = *state_.ctx.router;
  router.learn_server_side_session_id(state_.route.session, scanner_->server_side_session_id());
  if (state_.rpc->rpc != spark::Rpc::kCloneSession) return;
  router.session_cloned(state_.route.session, scanner_->new_session_id(), scanner_->new_server_side_session_id());
  admit_.clone_created(std::string(scanner_->new_session_id()));
}

}  // namespace sparkgate::proxy
