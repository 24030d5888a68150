#include "trace/otlp_encode.h"

#include "otlp_trace_view.pb.h"

namespace sparkgate::trace {

namespace {

void put(otlp::KeyValue* kv, std::string_view key, std::string_view value) {
  kv->set_key(std::string(key));
  kv->mutable_value()->set_string_value(std::string(value));
}

void put_attribute(otlp::KeyValue* kv, const Attribute& a) {
  kv->set_key(std::string(a.key));
  auto* v = kv->mutable_value();
  switch (a.type) {
    case Attribute::Type::kString: v->set_string_value(a.text); break;
    case Attribute::Type::kInt: v->set_int_value(a.number); break;
    case Attribute::Type::kBool: v->set_bool_value(a.number != 0); break;
  }
}

otlp::Span::SpanKind kind_of(SpanKind k) {
  switch (k) {
    case SpanKind::kServer: return otlp::Span::SPAN_KIND_SERVER;
    case SpanKind::kClient: return otlp::Span::SPAN_KIND_CLIENT;
    case SpanKind::kInternal: break;
  }
  return otlp::Span::SPAN_KIND_INTERNAL;
}

}  // namespace

std::string encode_export_request(const std::vector<Span>& spans, const ResourceInfo& resource) {
  otlp::ExportTraceServiceRequest req;
  auto* rs = req.add_resource_spans();
  auto* res = rs->mutable_resource();
  put(res->add_attributes(), "service.name", resource.service_name);
  if (!resource.service_version.empty()) put(res->add_attributes(), "service.version", resource.service_version);
  if (!resource.instance_id.empty()) put(res->add_attributes(), "service.instance.id", resource.instance_id);
  if (!resource.host_name.empty()) put(res->add_attributes(), "host.name", resource.host_name);
  put(res->add_attributes(), "telemetry.sdk.name", "sparkgate");
  put(res->add_attributes(), "telemetry.sdk.language", "cpp");
  auto* ss = rs->add_scope_spans();
  ss->mutable_scope()->set_name("sparkgate");
  if (!resource.service_version.empty()) ss->mutable_scope()->set_version(resource.service_version);
  for (const auto& s : spans) {
    auto* o = ss->add_spans();
    o->set_trace_id(s.trace_id.data(), s.trace_id.size());
    o->set_span_id(s.span_id.data(), s.span_id.size());
    if (s.has_parent) o->set_parent_span_id(s.parent_span_id.data(), s.parent_span_id.size());
    o->set_flags(s.flags);
    o->set_name(s.name);
    o->set_kind(kind_of(s.kind));
    o->set_start_time_unix_nano(s.start_unix_nano);
    o->set_end_time_unix_nano(s.end_unix_nano);
    for (const auto& a : s.attributes) put_attribute(o->add_attributes(), a);
    for (const auto& e : s.events) {
      auto* ev = o->add_events();
      ev->set_time_unix_nano(e.time_unix_nano);
      ev->set_name(e.name);
    }
    if (s.error) {
      o->mutable_status()->set_code(otlp::Status::STATUS_CODE_ERROR);
      o->mutable_status()->set_message(s.status_message);
    }
  }
  return req.SerializeAsString();
}

int64_t rejected_spans(std::string_view body, std::string& message) {
  otlp::ExportTraceServiceResponse res;
  if (body.empty() || !res.ParseFromArray(body.data(), static_cast<int>(body.size()))) return 0;
  if (!res.has_partial_success()) return 0;
  message = res.partial_success().error_message();
  return res.partial_success().rejected_spans();
}

}  // namespace sparkgate::trace
