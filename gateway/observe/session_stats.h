// What one Spark session did through this gateway: RPCs by method, RPCs in flight and
// operations (ExecutePlan, ReattachExecute) in flight, body bytes each way, and errors by
// gRPC status code. Kept in the session registry's entry; shown by GET /v1/sessions and in
// the summary line logged when the session ends.
//
// Threading: every field is atomic; streams of one session on different workers update
// it at once. Counts are relaxed: a reader may see one field of an RPC before another.
#pragma once

#include <boost/json/object.hpp>

#include <array>
#include <atomic>
#include <cstdint>

#include "observe/labels.h"

namespace sparkgate::observe {

struct SessionStats {
  std::array<std::atomic<uint64_t>, kRpcLabels> rpcs{};      // finished RPCs, by method
  std::array<std::atomic<uint64_t>, kCodeLabels> errors{};   // finished RPCs with a status other than OK
  std::atomic<uint64_t> bytes_in{0};   // request body bytes received from the client
  std::atomic<uint64_t> bytes_out{0};  // response body bytes sent to the client
  std::atomic<int32_t> operations_in_flight{0};

  // One RPC of this session finished with `code` after these body bytes.
  void rpc_done(RpcLabel rpc, int code, uint64_t in, uint64_t out) {
    rpcs[rpc < kRpcLabels ? rpc : kUnknownRpc].fetch_add(1, std::memory_order_relaxed);
    if (code != 0) errors[code_label(code)].fetch_add(1, std::memory_order_relaxed);
    bytes_in.fetch_add(in, std::memory_order_relaxed);
    bytes_out.fetch_add(out, std::memory_order_relaxed);
  }

  // {"rpcs": {"ExecutePlan": 3, ...}, "errors": {"NOT_FOUND": 1}, "bytes_in": …,
  //  "bytes_out": …, "operations_in_flight": …}; methods and codes with a count of 0 are left out.
  void to_json(boost::json::object& out) const;
};

}  // namespace sparkgate::observe
