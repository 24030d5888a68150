// Spans → the body of an OTLP/HTTP export request (application/x-protobuf): an
// ExportTraceServiceRequest with one ResourceSpans (the gateway's resource) and one
// ScopeSpans (scope "sparkgate"), written with the view messages of
// proto/otlp_trace_view.proto. Pure functions; any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "trace/span.h"

namespace sparkgate::trace {

// Resource attributes of every span this process exports.
struct ResourceInfo {
  std::string service_name = "sparkgate";  // service.name
  std::string service_version;             // service.version ("" omits it)
  std::string instance_id;                 // service.instance.id ("" omits it)
  std::string host_name;                   // host.name ("" omits it)
};

std::string encode_export_request(const std::vector<Span>& spans, const ResourceInfo& resource);

// The partial_success of an ExportTraceServiceResponse body: how many spans the
// collector rejected (0 for an empty or unparsable body) and its message.
int64_t rejected_spans(std::string_view response_body, std::string& message);

}  // namespace sparkgate::trace
