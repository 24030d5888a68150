// The SparkConnectService methods the gateway knows, with the per-RPC field numbers of
// the routing envelope (taken from the view protos, so there is one source of truth).
#pragma once

#include <array>
#include <string_view>

namespace sparkgate::spark {

inline constexpr std::string_view kServicePrefix = "/spark.connect.SparkConnectService/";

enum class Rpc {
  kExecutePlan,
  kAnalyzePlan,
  kConfig,
  kAddArtifacts,
  kArtifactStatus,
  kInterrupt,
  kReattachExecute,
  kReleaseExecute,
  kReleaseSession,
  kFetchErrorDetails,
  kCloneSession,
  kGetStatus,
};

struct RpcInfo {
  Rpc rpc;
  std::string_view name;       // method name, e.g. "ExecutePlan"
  bool client_streaming;
  bool server_streaming;
  int client_type_field;       // field number of client_type in the request
  int operation_id_field;      // 0 if the request has no operation_id
  int response_session_field;  // field number of session_id in the response
  int response_server_session_field;  // field number of server_side_session_id
};

// All 12 methods, in declaration order of base.proto.
const std::array<RpcInfo, 12>& all_rpcs();

// Looks up a request :path such as "/spark.connect.SparkConnectService/Config".
// nullptr for any other path. Thread-safe (static table).
const RpcInfo* find_rpc_by_path(std::string_view path);

}  // namespace sparkgate::spark
