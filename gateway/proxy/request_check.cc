#include "proxy/request_check.h"

#include "proxy/proxy_context.h"

namespace sparkgate::proxy {

RequestKind check_request(const http2::HeaderMap& headers) {
  RequestKind k;
  const auto method = headers.find(":method");
  const auto path = headers.find(":path");
  const auto content_type = headers.find("content-type");
  if (!method || *method != "POST") {
    k.http_status = 405;
    k.code = grpcwire::StatusCode::kUnimplemented;
    k.message = "method " + std::string(method ? *method : "(none)") + " is not allowed: gRPC requires POST";
    return k;
  }
  if (!content_type || !content_type->starts_with("application/grpc")) {
    k.http_status = 415;
    k.code = grpcwire::StatusCode::kInvalidArgument;
    k.message = "content-type '" + std::string(content_type.value_or("")) +
                "' is not gRPC: sparkgate expects application/grpc";
    return k;
  }
  if (path && *path == kHealthCheckPath) {
    k.kind = RequestKind::Kind::kHealthCheck;
    return k;
  }
  k.rpc = path ? spark::find_rpc_by_path(*path) : nullptr;
  if (!k.rpc) {
    k.code = grpcwire::StatusCode::kUnimplemented;
    k.message = "unknown method '" + std::string(path.value_or("")) +
                "': sparkgate serves spark.connect.SparkConnectService";
    return k;
  }
  k.kind = RequestKind::Kind::kSparkRpc;
  return k;
}

void build_upstream_headers(const http2::HeaderMap& headers, http2::HeaderMap& out) {
  out.add(":method", "POST");
  out.add(":scheme", "http");
  out.add(":authority", headers.find(":authority").value_or("sparkgate"));
  out.add(":path", *headers.find(":path"));
  for (const auto& [name, value] : headers.fields()) {
    if (name.empty() || name[0] == ':' || http2::is_hop_by_hop(name)) continue;
    out.add(name, value);
  }
  out.add("te", "trailers");
}

}  // namespace sparkgate::proxy
