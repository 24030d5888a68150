#include "spark/rpc.h"

#include "spark_view.pb.h"

namespace sparkgate::spark {

namespace v = ::sparkgate::view;

const std::array<RpcInfo, 12>& all_rpcs() {
  static const std::array<RpcInfo, 12> kRpcs = {{
      {Rpc::kExecutePlan, "ExecutePlan", false, true, v::ExecutePlanRequest::kClientTypeFieldNumber,
       v::ExecutePlanRequest::kOperationIdFieldNumber, v::ExecutePlanResponse::kSessionIdFieldNumber,
       v::ExecutePlanResponse::kServerSideSessionIdFieldNumber},
      {Rpc::kAnalyzePlan, "AnalyzePlan", false, false, v::AnalyzePlanRequest::kClientTypeFieldNumber, 0,
       v::AnalyzePlanResponse::kSessionIdFieldNumber, v::AnalyzePlanResponse::kServerSideSessionIdFieldNumber},
      {Rpc::kConfig, "Config", false, false, v::ConfigRequest::kClientTypeFieldNumber, 0,
       v::ConfigResponse::kSessionIdFieldNumber, v::ConfigResponse::kServerSideSessionIdFieldNumber},
      {Rpc::kAddArtifacts, "AddArtifacts", true, false, v::AddArtifactsRequest::kClientTypeFieldNumber, 0,
       v::AddArtifactsResponse::kSessionIdFieldNumber, v::AddArtifactsResponse::kServerSideSessionIdFieldNumber},
      {Rpc::kArtifactStatus, "ArtifactStatus", false, false, v::ArtifactStatusesRequest::kClientTypeFieldNumber, 0,
       v::ArtifactStatusesResponse::kSessionIdFieldNumber,
       v::ArtifactStatusesResponse::kServerSideSessionIdFieldNumber},
      {Rpc::kInterrupt, "Interrupt", false, false, v::InterruptRequest::kClientTypeFieldNumber,
       v::InterruptRequest::kOperationIdFieldNumber, v::InterruptResponse::kSessionIdFieldNumber,
       v::InterruptResponse::kServerSideSessionIdFieldNumber},
      {Rpc::kReattachExecute, "ReattachExecute", false, true, v::ReattachExecuteRequest::kClientTypeFieldNumber,
       v::ReattachExecuteRequest::kOperationIdFieldNumber, v::ExecutePlanResponse::kSessionIdFieldNumber,
       v::ExecutePlanResponse::kServerSideSessionIdFieldNumber},
      {Rpc::kReleaseExecute, "ReleaseExecute", false, false, v::ReleaseExecuteRequest::kClientTypeFieldNumber,
       v::ReleaseExecuteRequest::kOperationIdFieldNumber, v::ReleaseExecuteResponse::kSessionIdFieldNumber,
       v::ReleaseExecuteResponse::kServerSideSessionIdFieldNumber},
      {Rpc::kReleaseSession, "ReleaseSession", false, false, v::ReleaseSessionRequest::kClientTypeFieldNumber, 0,
       v::ReleaseSessionResponse::kSessionIdFieldNumber, v::ReleaseSessionResponse::kServerSideSessionIdFieldNumber},
      {Rpc::kFetchErrorDetails, "FetchErrorDetails", false, false,
       v::FetchErrorDetailsRequest::kClientTypeFieldNumber, 0, v::FetchErrorDetailsResponse::kSessionIdFieldNumber,
       v::FetchErrorDetailsResponse::kServerSideSessionIdFieldNumber},
      {Rpc::kCloneSession, "CloneSession", false, false, v::CloneSessionRequest::kClientTypeFieldNumber, 0,
       v::CloneSessionResponse::kSessionIdFieldNumber, v::CloneSessionResponse::kServerSideSessionIdFieldNumber},
      {Rpc::kGetStatus, "GetStatus", false, false, v::GetStatusRequest::kClientTypeFieldNumber, 0,
       v::GetStatusResponse::kSessionIdFieldNumber, v::GetStatusResponse::kServerSideSessionIdFieldNumber},
  }};
  return kRpcs;
}

const RpcInfo* find_rpc_by_path(std::string_view path) {
  if (!path.starts_with(kServicePrefix)) return nullptr;
  auto method = path.substr(kServicePrefix.size());
  for (const auto& info : all_rpcs()) {
    if (info.name == method) return &info;
  }
  return nullptr;
}

}  // namespace sparkgate::spark
