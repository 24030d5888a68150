// The first look at a request's headers: is it a gRPC call the gateway serves, and what
// goes upstream. Pure functions; any thread.
#pragma once

#include <string>

#include "grpcwire/status.h"
#include "http2/header_map.h"
#include "spark/rpc.h"

namespace sparkgate::proxy {

struct RequestKind {
  enum class Kind { kSparkRpc, kHealthCheck, kReject } kind = Kind::kReject;
  const spark::RpcInfo* rpc = nullptr;  // kSparkRpc
  // kReject: the reply. http_status is 200 (a gRPC status) unless the request is not
  // gRPC at all (405 wrong method, 415 wrong content type).
  int http_status = 200;
  grpcwire::StatusCode code = grpcwire::StatusCode::kOk;
  std::string message;
};

// :method POST, content-type application/grpc*, then the :path: the gateway's health
// check, a SparkConnectService method, or UNIMPLEMENTED.
RequestKind check_request(const http2::HeaderMap& headers);

// The upstream request of `rpc`: pseudo-headers first, then the client's metadata as it
// came, minus what is specific to the downstream connection; te: trailers.
void build_upstream_headers(const http2::HeaderMap& headers, http2::HeaderMap& out);

}  // namespace sparkgate::proxy
