#include "observe/session_stats.h"

namespace sparkgate::observe {

void SessionStats::to_json(boost::json::object& out) const {
  boost::json::object by_rpc;
  for (size_t i = 0; i < kRpcLabels; ++i) {
    if (auto n = rpcs[i].load(std::memory_order_relaxed)) by_rpc[rpc_label_name(i)] = n;
  }
  boost::json::object by_code;
  for (size_t i = 0; i < kCodeLabels; ++i) {
    if (auto n = errors[i].load(std::memory_order_relaxed)) by_code[code_label_name(i)] = n;
  }
  out["rpcs"] = std::move(by_rpc);
  out["errors"] = std::move(by_code);
  out["bytes_in"] = bytes_in.load(std::memory_order_relaxed);
  out["bytes_out"] = bytes_out.load(std::memory_order_relaxed);
  out["operations_in_flight"] = operations_in_flight.load(std::memory_order_relaxed);
}

}  // namespace sparkgate::observe
