// The view message classes (proto/spark_view.proto) for each RPC, for fuzz targets that
// cross-check the streaming scanners against protobuf's own parser.
#pragma once

#include <google/protobuf/message.h>
#include <google/protobuf/stubs/logging.h>

#include <memory>

#include "spark/rpc.h"
#include "spark_view.pb.h"

namespace sparkgate::fuzz {

// protobuf logs every string field with invalid UTF-8 it refuses to parse; the targets
// refuse such input on purpose, so the log is noise.
inline void quiet_protobuf() { google::protobuf::SetLogHandler(nullptr); }

inline std::unique_ptr<google::protobuf::Message> request_message(spark::Rpc rpc) {
  using spark::Rpc;
  switch (rpc) {
    case Rpc::kExecutePlan: return std::make_unique<view::ExecutePlanRequest>();
    case Rpc::kAnalyzePlan: return std::make_unique<view::AnalyzePlanRequest>();
    case Rpc::kConfig: return std::make_unique<view::ConfigRequest>();
    case Rpc::kAddArtifacts: return std::make_unique<view::AddArtifactsRequest>();
    case Rpc::kArtifactStatus: return std::make_unique<view::ArtifactStatusesRequest>();
    case Rpc::kInterrupt: return std::make_unique<view::InterruptRequest>();
    case Rpc::kReattachExecute: return std::make_unique<view::ReattachExecuteRequest>();
    case Rpc::kReleaseExecute: return std::make_unique<view::ReleaseExecuteRequest>();
    case Rpc::kReleaseSession: return std::make_unique<view::ReleaseSessionRequest>();
    case Rpc::kFetchErrorDetails: return std::make_unique<view::FetchErrorDetailsRequest>();
    case Rpc::kCloneSession: return std::make_unique<view::CloneSessionRequest>();
    case Rpc::kGetStatus: return std::make_unique<view::GetStatusRequest>();
  }
  return nullptr;
}

inline std::unique_ptr<google::protobuf::Message> response_message(spark::Rpc rpc) {
  using spark::Rpc;
  switch (rpc) {
    case Rpc::kExecutePlan:
    case Rpc::kReattachExecute: return std::make_unique<view::ExecutePlanResponse>();
    case Rpc::kAnalyzePlan: return std::make_unique<view::AnalyzePlanResponse>();
    case Rpc::kConfig: return std::make_unique<view::ConfigResponse>();
    case Rpc::kAddArtifacts: return std::make_unique<view::AddArtifactsResponse>();
    case Rpc::kArtifactStatus: return std::make_unique<view::ArtifactStatusesResponse>();
    case Rpc::kInterrupt: return std::make_unique<view::InterruptResponse>();
    case Rpc::kReleaseExecute: return std::make_unique<view::ReleaseExecuteResponse>();
    case Rpc::kReleaseSession: return std::make_unique<view::ReleaseSessionResponse>();
    case Rpc::kFetchErrorDetails: return std::make_unique<view::FetchErrorDetailsResponse>();
    case Rpc::kCloneSession: return std::make_unique<view::CloneSessionResponse>();
    case Rpc::kGetStatus: return std::make_unique<view::GetStatusResponse>();
  }
  return nullptr;
}

// The string value of field `number` of `m` ("" when unset or not a string field).
inline std::string string_field(const google::protobuf::Message& m, int number) {
  const auto* f = m.GetDescriptor()->FindFieldByNumber(number);
  if (!f || f->type() != google::protobuf::FieldDescriptor::TYPE_STRING || f->is_repeated()) return {};
  return m.GetReflection()->GetString(m, f);
}

inline bool has_field(const google::protobuf::Message& m, int number) {
  const auto* f = m.GetDescriptor()->FindFieldByNumber(number);
  return f && !f->is_repeated() && m.GetReflection()->HasField(m, f);
}

}  // namespace sparkgate::fuzz
