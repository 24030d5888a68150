// Bounded label values shared by the metric families, the per-session stats and the
// access log: the RPC (the 12 SparkConnectService methods, plus "unknown") and the gRPC
// status code (the 17 codes of the gRPC spec).
#pragma once

#include <cstddef>
#include <string_view>

#include "spark/rpc.h"

namespace sparkgate::observe {

// Index of an RPC: the value of spark::Rpc, or kUnknownRpc for a method the gateway
// does not serve.
using RpcLabel = size_t;
inline constexpr size_t kRpcLabels = 13;
inline constexpr RpcLabel kUnknownRpc = 12;
inline RpcLabel rpc_label(const spark::RpcInfo* rpc) {
  return rpc ? static_cast<RpcLabel>(rpc->rpc) : kUnknownRpc;
}
// "ExecutePlan", ..., "unknown".
std::string_view rpc_label_name(RpcLabel rpc);

inline constexpr size_t kCodeLabels = 17;
// A status code as a label index: 0..16; anything else counts as UNKNOWN (2).
inline size_t code_label(int code) { return code >= 0 && code < static_cast<int>(kCodeLabels) ? static_cast<size_t>(code) : 2; }
// "OK", "CANCELLED", ... (grpcwire::status_name).
std::string_view code_label_name(size_t code);

}  // namespace sparkgate::observe
