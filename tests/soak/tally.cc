#include "tally.h"

#include "grpcwire/status.h"

namespace sparkgate::soak {

const char* action_name(Action a) {
  switch (a) {
    case Action::kChurn: return "churn";
    case Action::kUnary: return "unary";
    case Action::kStream: return "stream";
    case Action::kReattach: return "reattach";
    case Action::kCancel: return "cancel";
    case Action::kDeadline: return "deadline";
    case Action::kUpload: return "upload";
    case Action::kBackendError: return "backend_error";
    case Action::kBackendReset: return "backend_reset";
    case Action::kAbandon: return "abandon";
    case Action::kReconnect: return "reconnect";
    case Action::kCount: break;
  }
  return "?";
}

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::kOk: return "ok";
    case Verdict::kScripted: return "scripted";
    case Verdict::kRestart: return "restart";
    case Verdict::kUnexpected: return "unexpected";
    case Verdict::kCount: break;
  }
  return "?";
}

const char* code_name(size_t code) {
  // The gateway's own names, so that the soak speaks like its metrics.
  return grpcwire::status_name(static_cast<grpcwire::StatusCode>(code)).data();
}

void Tally::add_rpc(int code, Verdict verdict) {
  const size_t c = code >= 0 && static_cast<size_t>(code) < kStatusCodes ? static_cast<size_t>(code) : 2;
  rpcs_.fetch_add(1, std::memory_order_relaxed);
  by_code_[c].fetch_add(1, std::memory_order_relaxed);
  by_verdict_[static_cast<size_t>(verdict)].fetch_add(1, std::memory_order_relaxed);
}

void Tally::add_unexpected(std::string what) {
  std::lock_guard lock(mu_);
  if (unexpected_.size() < kMaxExamples) unexpected_.push_back(std::move(what));
}

TallySnapshot Tally::snapshot() const {
  TallySnapshot s;
  s.rpcs = rpcs_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < kStatusCodes; ++i) s.by_code[i] = by_code_[i].load(std::memory_order_relaxed);
  for (size_t i = 0; i < kVerdictCount; ++i) s.by_verdict[i] = by_verdict_[i].load(std::memory_order_relaxed);
  for (size_t i = 0; i < kActionCount; ++i) s.actions[i] = actions_[i].load(std::memory_order_relaxed);
  s.restart_moves = restart_moves_.load(std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  s.unexpected = unexpected_;
  return s;
}

}  // namespace sparkgate::soak
