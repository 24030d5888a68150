#include "proxy/proxy_stream.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>

#include "policy/authenticator.h"
#include "policy/redis_quotas.h"
#include "routing/router.h"
#include "spark/user_context.h"
#include "upstream/conn_pool.h"

namespace sparkgate::proxy {

namespace {
// Once session_id and user_context are known, the scan waits at most this long in bytes
// for the optional envelope fields (client_type, operation_id) before routing. Clients
// write fields in number order, so for ExecutePlan these follow the plan; waiting for
// them would hold a large plan.
constexpr size_t kOptionalFieldBudget = 16 * 1024;

http2::HeaderMap trailers_only(grpcwire::StatusCode code, const std::string& message) {
  http2::HeaderMap h;
  h.add(":status", "200");
  h.add("content-type", "application/grpc");
  h.add("grpc-status", std::to_string(static_cast<int>(code)));
  h.add("grpc-message", grpcwire::percent_encode(message));
  return h;
}

std::string http2_error_name(uint32_t code) { return nghttp2_http2_strerror(code); }

// "2.5" rather than "2.500000".
std::string format_rate(double v) {
  std::string s = std::to_string(v);
  s.erase(s.find_last_not_of('0') + 1);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

bool is_operation(spark::Rpc rpc) { return rpc == spark::Rpc::kExecutePlan || rpc == spark::Rpc::kReattachExecute; }
}  // namespace

ProxyStream::ProxyStream(http2::ServerConnection& downstream, int32_t stream_id, ProxyContext context)
    : downstream_(&downstream),
      down_id_(stream_id),
      ctx_(std::move(context)),
      req_framer_(ctx_.config->limits.max_message_bytes),
      resp_framer_(ctx_.config->limits.max_message_bytes),
      started_(std::chrono::steady_clock::now()) {}

ProxyStream::~ProxyStream() {
  // on_stream_closed normally released it; this is the backstop for the process-wide
  // counter (a Redis lease expires on its own).
  if (op_held_ && op_lease_.empty() && ctx_.quotas) ctx_.quotas->end_operation(principal_.user);
}

std::string ProxyStream::backend_label() const { return backend_.empty() ? "-" : backend_; }

// ---------------------------------------------------------------------------------------
// Downstream → upstream

void ProxyStream::on_request_headers(http2::HeaderMap headers, bool end_stream) {
  correlate(headers);
  const std::string* method = headers.find(":method");
  const std::string* path = headers.find(":path");
  const std::string* content_type = headers.find("content-type");
  if (!method || *method != "POST") {
    reply_http(405, grpcwire::StatusCode::kUnimplemented,
               "method " + (method ? *method : std::string("(none)")) + " is not allowed: gRPC requires POST",
               headers.find(":authority"));
    return;
  }
  if (!content_type || !content_type->starts_with("application/grpc")) {
    reply_http(415, grpcwire::StatusCode::kInvalidArgument,
               "content-type '" + (content_type ? *content_type : std::string()) +
                   "' is not gRPC: sparkgate expects application/grpc",
               headers.find(":authority"));
    return;
  }
  if (path && *path == kHealthCheckPath) {
    // Answered once the request has ended, as a gRPC server answers a unary call.
    health_check_ = true;
    phase_ = Phase::kLocalReply;
    if (end_stream) reply_health_check();
    return;
  }
  rpc_ = path ? spark::find_rpc_by_path(*path) : nullptr;
  if (!rpc_) {
    reply_local(grpcwire::StatusCode::kUnimplemented,
                "unknown method '" + (path ? *path : std::string()) +
                    "': sparkgate serves spark.connect.SparkConnectService");
    return;
  }
  // The upstream request: pseudo-headers first, then the client's metadata as it came,
  // minus what is specific to the downstream connection.
  upstream_headers_.add(":method", "POST");
  upstream_headers_.add(":scheme", "http");
  const std::string* authority = headers.find(":authority");
  upstream_headers_.add(":authority", authority ? *authority : std::string("sparkgate"));
  upstream_headers_.add(":path", *path);
  for (const auto& [name, value] : headers.fields()) {
    if (name.empty() || name[0] == ':' || http2::is_hop_by_hop(name)) continue;
    upstream_headers_.add(name, value);
  }
  upstream_headers_.add("te", "trailers");
  forward_correlation();
  const auto& cfg = *ctx_.config;
  if (cfg.auth.enabled()) {
    auto r = policy::authenticate(cfg.auth, headers, ctx_.peer_cert.get(), std::chrono::system_clock::now());
    if (!r.ok()) {
      if (ctx_.metrics) ctx_.metrics->auth_failure(r.failure).Increment();
      spdlog::info("rpc={} peer={}: authentication failed ({}): {}", rpc_->name,
                   downstream_ ? downstream_->peer() : std::string("-"), policy::auth_failure_label(r.failure),
                   r.message);
      reply_local(grpcwire::StatusCode::kUnauthenticated, r.message);
      return;
    }
    principal_ = std::move(r.principal);
  }
  if (!cfg.auth.forward_client_credentials) {
    // The client's credential was for the gateway; the backend gets the cluster's own
    // (apply_backend_credentials) or none.
    upstream_headers_.remove("authorization");
    upstream_headers_.remove("authentication");
  }
  if (principal_.verified()) {
    // Known before any body byte: the message size quota applies to the first message too.
    quota_ = policy::resolve_quota(cfg.quotas, principal_);
    if (quota_.max_message_bytes && quota_.max_message_bytes < cfg.limits.max_message_bytes) {
      req_framer_.set_max_message_bytes(quota_.max_message_bytes);
      resp_framer_.set_max_message_bytes(quota_.max_message_bytes);
    }
  }
  phase_ = Phase::kInspecting;
  if (end_stream) {
    reply_local(grpcwire::StatusCode::kInvalidArgument, "the request has no message");
  }
}

void ProxyStream::on_request_data(const uint8_t* data, size_t n) {
  if (phase_ == Phase::kLocalReply || phase_ == Phase::kDone || phase_ == Phase::kHeaders ||
      (phase_ == Phase::kForwarding && !upstream_open_)) {
    // Nobody will read these bytes (the RPC is answered, or the backend already ended
    // the stream, e.g. an early error on AddArtifacts): reopen the window at once.
    consume_downstream(n);
    return;
  }
  const uint64_t chunk_start = req_offset_;
  auto err = req_framer_.scan({data, n}, [&](const grpcwire::MessageHeader& h, size_t payload_offset) {
    if (req_framer_.messages() != 1) return;
    first_payload_start_ = chunk_start + payload_offset;
    if (!h.compressed) scanner_.emplace(*rpc_, h.length);
  });
  req_offset_ += n;
  if (err == grpcwire::FramerError::kTooLarge) {
    consume_downstream(n);
    reply_too_large("request", req_framer_);
    return;
  }
  if (err == grpcwire::FramerError::kBadFlag) {
    consume_downstream(n);
    reply_local(grpcwire::StatusCode::kInvalidArgument, "malformed gRPC framing: invalid compressed flag");
    return;
  }
  if (req_framer_.messages() >= 1 && req_framer_.last_header().compressed && !scanner_) {
    consume_downstream(n);
    reply_local(grpcwire::StatusCode::kInvalidArgument,
                "compressed request messages are not supported: sparkgate must read the Spark session envelope; "
                "turn off request compression in the client");
    return;
  }
  // Feed the part of this chunk that belongs to the first message's payload; the scanner
  // sees every byte of it once, so a repeated envelope field later on is caught too.
  if (scanner_ && !scanner_->finished()) {
    uint64_t want_from = first_payload_start_ + scanner_->consumed();
    if (want_from >= chunk_start && want_from < chunk_start + n) {
      size_t off = static_cast<size_t>(want_from - chunk_start);
      size_t len = static_cast<size_t>(std::min<uint64_t>(n - off, scanner_->remaining()));
      if (!scanner_->feed({data + off, len})) {
        consume_downstream(n);
        reply_local(grpcwire::StatusCode::kInvalidArgument,
                    "cannot read the Spark request envelope of " + std::string(rpc_->name) + ": " + scanner_->error());
        return;
      }
    }
  }
  req_buf_.append(data, n);
  if (route_.session && !backend_.empty() && quota_.max_artifact_bytes && rpc_->rpc == spark::Rpc::kAddArtifacts &&
      !count_artifact_bytes())
    return;
  if (phase_ == Phase::kInspecting) {
    try_route();
  } else if (phase_ == Phase::kForwarding) {
    if (auto up = upstream_.lock()) up->resume_data(up_id_);
  }
}

void ProxyStream::on_request_end() {
  if (health_check_) {
    reply_health_check();
    return;
  }
  if (phase_ == Phase::kLocalReply || phase_ == Phase::kDone) return;
  if (!req_framer_.at_boundary()) {
    // Passing this on would let the backend drop the torn message silently and answer OK.
    reply_local(grpcwire::StatusCode::kInvalidArgument,
                "malformed gRPC framing: the request stream ended in the middle of a message");
    return;
  }
  req_end_ = true;
  if (phase_ == Phase::kInspecting) {
    try_route();
  } else if (phase_ == Phase::kForwarding) {
    if (auto up = upstream_.lock()) up->resume_data(up_id_);
  }
}

void ProxyStream::try_route() {
  const auto& limits = ctx_.config->limits;
  bool ready = false;
  if (scanner_) {
    if (scanner_->complete()) ready = true;
    else if (scanner_->routable() && (req_end_ || scanner_->consumed() >= kOptionalFieldBudget)) ready = true;
    else if (scanner_->finished()) {
      reply_local(grpcwire::StatusCode::kInvalidArgument,
                  std::string(rpc_->name) + " request has no session_id");
      return;
    }
  }
  if (!ready) {
    if (req_end_) {
      reply_local(grpcwire::StatusCode::kInvalidArgument,
                  "the request stream ended before its first message was complete");
    } else if (req_buf_.size() >= limits.max_envelope_scan_bytes) {
      reply_local(grpcwire::StatusCode::kInvalidArgument,
                  "the Spark session envelope (session_id, user_context) was not found in the first " +
                      std::to_string(limits.max_envelope_scan_bytes) + " bytes of the " + std::string(rpc_->name) +
                      " request (limits.max_envelope_scan_bytes)");
    }
    return;
  }
  scanner_->freeze();
  const auto& env = scanner_->envelope();
  if (env.session_id.empty()) {
    reply_local(grpcwire::StatusCode::kInvalidArgument, std::string(rpc_->name) + " request has an empty session_id");
    return;
  }
  if (!principal_.verified()) {
    // No authentication (or anonymous): the request's own user_id is all there is.
    principal_.user = env.user_id;
    quota_ = policy::resolve_quota(ctx_.config->quotas, principal_);
    if (quota_.max_message_bytes && quota_.max_message_bytes < ctx_.config->limits.max_message_bytes) {
      req_framer_.set_max_message_bytes(quota_.max_message_bytes);
      resp_framer_.set_max_message_bytes(quota_.max_message_bytes);
      if (req_framer_.last_header().length > quota_.max_message_bytes) {
        reply_too_large("request", req_framer_);
        return;
      }
    }
  }
  if (!apply_identity()) return;
  admit_rate();
}

bool ProxyStream::apply_identity() {
  const auto mode = ctx_.config->identity.mode;
  if (mode == config::Identity::Mode::kOff || !principal_.verified()) return true;
  const auto& env = scanner_->envelope();
  if (mode == config::Identity::Mode::kEnforce) {
    if (env.user_id == principal_.user) return true;
    if (ctx_.metrics) ctx_.metrics->identity_rejections().Increment();
    spdlog::info("rpc={} session={}: user_id '{}' refused for authenticated user '{}' ({})", rpc_->name,
                 env.session_id, env.user_id, principal_.user, base::auth_method_name(principal_.method));
    reply_local(grpcwire::StatusCode::kPermissionDenied,
                "user_id '" + env.user_id + "' does not match authenticated user '" + principal_.user + "'");
    return false;
  }
  // Rewrite: the head of the stream (prefix + first message so far) is still held here,
  // unforwarded. Splice the principal into user_context; every other byte stays.
  if (env.user_id == principal_.user && env.user_name == principal_.user) return true;
  std::string head(req_buf_.size(), '\0');
  req_buf_.read(reinterpret_cast<uint8_t*>(head.data()), head.size());
  auto spliced = spark::splice_user_context(head, scanner_->user_context_spans(), principal_.user, principal_.user);
  if (!spliced.ok()) {
    req_buf_.append(reinterpret_cast<const uint8_t*>(head.data()), head.size());
    reply_local(grpcwire::StatusCode::kInvalidArgument, "cannot rewrite user_context of " + std::string(rpc_->name) +
                                                        ": " + spliced.error);
    return false;
  }
  req_buf_.append(reinterpret_cast<const uint8_t*>(spliced.head.data()), spliced.head.size());
  if (spliced.delta < 0) consume_downstream(static_cast<size_t>(-spliced.delta));
  else added_request_bytes_ += static_cast<size_t>(spliced.delta);
  spdlog::debug("rpc={} session={}: user_context user_id '{}' rewritten to '{}'", rpc_->name, env.session_id,
                env.user_id, principal_.user);
  return true;
}

void ProxyStream::reply_quota(observe::Metrics::Quota quota, const std::string& message) {
  if (ctx_.metrics) ctx_.metrics->quota_rejection(quota).Increment();
  spdlog::info("rpc={} user={}: {}", rpc_ ? rpc_->name : "-", principal_.user, message);
  reply_local(grpcwire::StatusCode::kResourceExhausted, message);
}

void ProxyStream::reply_too_large(const char* direction, const grpcwire::Framer& framer) {
  const uint64_t limit = framer.max_message_bytes();
  std::string msg = std::string(direction) + " message of " + std::to_string(framer.last_header().length) + " bytes";
  if (std::string_view(direction) == "response") msg += " from backend " + backend_;
  if (quota_.max_message_bytes && limit == quota_.max_message_bytes &&
      limit < ctx_.config->limits.max_message_bytes) {
    reply_quota(observe::Metrics::Quota::kMaxMessageBytes,
                msg + " exceeds quota max_message_bytes (" + std::to_string(limit) + ") of user '" +
                    principal_.user + "'");
    return;
  }
  reply_local(grpcwire::StatusCode::kResourceExhausted,
              msg + " exceeds the gateway limit of " + std::to_string(limit) + " bytes (limits.max_message_bytes)");
}

bool ProxyStream::count_artifact_bytes() {
  // The request body as received, gRPC framing included.
  const uint64_t n = req_offset_ - artifact_bytes_counted_;
  artifact_bytes_counted_ = req_offset_;
  uint64_t total = route_.session->artifact_bytes.fetch_add(n) + n;
  if (total <= quota_.max_artifact_bytes) return true;
  // The call is cut off and Spark discards what it staged: only completed uploads count.
  route_.session->artifact_bytes.fetch_sub(artifact_bytes_counted_);
  reply_quota(observe::Metrics::Quota::kMaxArtifactBytes,
              "quota max_artifact_bytes (" + std::to_string(quota_.max_artifact_bytes) + ") exceeded by session " +
                  route_.session->session_id + " of user '" + principal_.user +
                  "': its AddArtifacts uploads would reach " + std::to_string(total) + " bytes");
  return false;
}

bool ProxyStream::quota_store_ok(const policy::QuotaDecision& d) {
  if (!d.store_failed) return true;
  if (ctx_.config->quotas.on_store_failure == config::Quotas::OnStoreFailure::kAllow) {
    spdlog::warn("quota store unavailable ({}); admitting {} of user '{}' (quotas.on_store_failure: allow)", d.error,
                 rpc_->name, principal_.user);
    return true;
  }
  spdlog::warn("quota store unavailable ({}); refusing {} of user '{}' (quotas.on_store_failure: deny)", d.error,
               rpc_->name, principal_.user);
  reply_local(grpcwire::StatusCode::kUnavailable, "sparkgate cannot check quotas: the quota store is unavailable (" +
                                                  d.error + ") and quotas.on_store_failure is deny");
  return false;
}

void ProxyStream::admit_rate() {
  if (quota_.requests_per_second <= 0) {
    admit_operation();
    return;
  }
  auto message = [this] {
    return "quota requests_per_second (" + format_rate(quota_.requests_per_second) + ", burst " +
           std::to_string(quota_.burst) + ") exceeded by user '" + principal_.user + "'";
  };
  if (ctx_.redis_quotas) {
    phase_ = Phase::kConnecting;
    ctx_.redis_quotas->try_request(principal_.user, quota_.requests_per_second, quota_.burst,
                                   [self = shared_from_this(), message](const policy::QuotaDecision& d) {
                                     if (self->phase_ != Phase::kConnecting) return;
                                     if (!self->quota_store_ok(d)) return;
                                     if (!d.allowed) {
                                       self->reply_quota(observe::Metrics::Quota::kRequestsPerSecond, message());
                                       return;
                                     }
                                     self->admit_operation();
                                   });
    return;
  }
  if (!ctx_.quotas->try_request(principal_.user, quota_.requests_per_second, quota_.burst, policy::Clock::now())) {
    reply_quota(observe::Metrics::Quota::kRequestsPerSecond, message());
    return;
  }
  admit_operation();
}

void ProxyStream::admit_clone() {
  // CloneSession creates a session too: it must fit the user's max_sessions like any
  // other new session.
  const uint32_t max = quota_.max_sessions;
  if (rpc_->rpc != spark::Rpc::kCloneSession || max == 0) {
    route_request();
    return;
  }
  auto message = [this, max] {
    return "quota max_sessions (" + std::to_string(max) + ") reached for user '" + principal_.user +
           "': CloneSession would create another session; stop one (spark.stop()) first";
  };
  if (ctx_.redis_quotas) {
    // Reserve a slot under a placeholder member until the response names the clone.
    static std::atomic<uint64_t> counter{0};
    clone_reservation_ = "clone-pending:" + scanner_->envelope().session_id + ":" + std::to_string(++counter);
    phase_ = Phase::kConnecting;
    ctx_.redis_quotas->try_add_session(principal_.user, clone_reservation_, max, std::chrono::minutes(1),
                                       [self = shared_from_this(), message](const policy::QuotaDecision& d) {
                                         if (self->phase_ != Phase::kConnecting) return;
                                         if (!self->quota_store_ok(d)) return;
                                         if (!d.allowed || d.store_failed) self->clone_reservation_.clear();
                                         if (!d.allowed) {
                                           self->reply_quota(observe::Metrics::Quota::kMaxSessions, message());
                                           return;
                                         }
                                         self->route_request();
                                       });
    return;
  }
  if (ctx_.router->sessions().user_sessions(principal_.user) >= max) {
    reply_quota(observe::Metrics::Quota::kMaxSessions, message());
    return;
  }
  route_request();
}

void ProxyStream::admit_operation() {
  if (!is_operation(rpc_->rpc) || quota_.max_concurrent_operations == 0) {
    admit_clone();
    return;
  }
  const uint32_t max = quota_.max_concurrent_operations;
  auto message = [this, max] {
    return "quota max_concurrent_operations (" + std::to_string(max) + ") reached for user '" + principal_.user +
           "': wait for a running query to finish";
  };
  if (ctx_.redis_quotas) {
    phase_ = Phase::kConnecting;
    ctx_.redis_quotas->try_begin_operation(
        principal_.user, max,
        [self = shared_from_this(), message](const policy::QuotaDecision& d, const std::string& lease) {
          if (self->phase_ != Phase::kConnecting) {
            // The client left while Redis answered: give the slot back at once.
            if (d.allowed && !lease.empty()) self->ctx_.redis_quotas->end_operation(self->principal_.user, lease);
            return;
          }
          if (!self->quota_store_ok(d)) return;
          if (!d.allowed) {
            self->reply_quota(observe::Metrics::Quota::kMaxConcurrentOperations, message());
            return;
          }
          if (!lease.empty()) {
            self->op_held_ = true;
            self->op_lease_ = lease;
          }
          self->admit_clone();
        });
    return;
  }
  if (!ctx_.quotas->try_begin_operation(principal_.user, max)) {
    reply_quota(observe::Metrics::Quota::kMaxConcurrentOperations, message());
    return;
  }
  op_held_ = true;
  admit_clone();
}

void ProxyStream::release_operation() {
  if (!op_held_) return;
  op_held_ = false;
  if (!op_lease_.empty()) {
    if (ctx_.redis_quotas) ctx_.redis_quotas->end_operation(principal_.user, op_lease_);
    op_lease_.clear();
  } else if (ctx_.quotas) {
    ctx_.quotas->end_operation(principal_.user);
  }
}

void ProxyStream::route_request() {
  const auto& env = scanner_->envelope();
  const bool shared_store = ctx_.store && ctx_.config->sessions.store == config::Sessions::Store::kRedis;
  auto status = ctx_.router->route(*ctx_.config, request(), route_, shared_store);
  if (!status.ok()) {
    reply_route_error(status);
    return;
  }
  if (!route_.ask_store) {
    route_ready();
    return;
  }
  // A session this replica does not know: another replica may have placed it.
  phase_ = Phase::kConnecting;
  ctx_.store->lookup(routing::Router::session_key(principal_.user, env.session_id),
                     [self = shared_from_this()](std::optional<std::string> backend, const std::string& error) {
                       self->on_store_lookup(std::move(backend), error);
                     });
}

routing::RouteRequest ProxyStream::request() const {
  routing::RouteRequest r{rpc_, &scanner_->envelope(), &upstream_headers_, &principal_};
  // With quotas in Redis the session quota is checked there (admit_new_session).
  if (!ctx_.redis_quotas) r.max_user_sessions = quota_.max_sessions;
  return r;
}

void ProxyStream::reply_route_error(const grpcwire::Status& status) {
  if (route_.over_session_quota) {
    reply_quota(observe::Metrics::Quota::kMaxSessions, status.message);
    return;
  }
  reply_local(status.code, status.message);
}

void ProxyStream::on_store_lookup(std::optional<std::string> backend, const std::string& error) {
  if (phase_ != Phase::kConnecting) return;  // answered meanwhile (client gone)
  const auto& env = scanner_->envelope();
  grpcwire::Status status;
  if (backend) {
    status = ctx_.router->adopt(*ctx_.config, request(), *backend, route_);
  } else {
    if (!error.empty()) {
      spdlog::warn("session store unavailable ({}); placing session {} locally", error, env.session_id);
    }
    status = ctx_.router->route(*ctx_.config, request(), route_);
  }
  if (!status.ok()) {
    reply_route_error(status);
    return;
  }
  if (backend || !error.empty() || !route_.session) {
    route_ready();
    return;
  }
  // Placed here: claim it in the store; a replica that claimed it first wins.
  const auto ttl = ctx_.config->sessions.idle_timeout;
  ctx_.store->claim(routing::Router::session_key(principal_.user, env.session_id), route_.backend->name(), ttl,
                    [self = shared_from_this()](const std::string& winner, const std::string& claim_error) {
                      self->on_store_claim(winner, claim_error);
                    });
}

void ProxyStream::on_store_claim(const std::string& winner, const std::string& error) {
  if (phase_ != Phase::kConnecting) return;
  if (!error.empty()) {
    spdlog::warn("session store unavailable ({}); session {} stays placed locally", error,
                 scanner_->envelope().session_id);
  } else if (winner != route_.backend->name()) {
    ctx_.router->unplace(route_.session);
    route_.session.reset();
    auto status = ctx_.router->adopt(*ctx_.config, request(), winner, route_);
    if (!status.ok()) {
      reply_local(status.code, status.message);
      return;
    }
  }
  route_ready();
}

void ProxyStream::admit_new_session() {
  session_quota_checked_ = true;
  phase_ = Phase::kConnecting;
  const uint32_t max = quota_.max_sessions;
  ctx_.redis_quotas->try_add_session(
      principal_.user, route_.session->session_id, max, session_quota_ttl(),
      [self = shared_from_this(), max](const policy::QuotaDecision& d) {
        if (self->phase_ != Phase::kConnecting) return;
        if (d.store_failed || d.allowed) {
          if (!self->quota_store_ok(d)) {
            self->ctx_.router->unplace(self->route_.session);
            self->route_.session.reset();
            return;
          }
          self->route_ready();
          return;
        }
        self->ctx_.router->unplace(self->route_.session);
        self->route_.session.reset();
        self->reply_quota(observe::Metrics::Quota::kMaxSessions,
                          "quota max_sessions (" + std::to_string(max) + ") reached for user '" +
                              self->principal_.user +
                              "' across the gateway replicas; stop one (spark.stop()) or wait until an idle one "
                              "expires");
      });
}

std::chrono::milliseconds ProxyStream::session_quota_ttl() const {
  // A session counts until it is released or would be reaped as idle.
  auto ttl = ctx_.config->sessions.idle_timeout;
  return ttl.count() > 0 ? ttl : std::chrono::milliseconds(std::chrono::hours(24));
}

void ProxyStream::route_ready() {
  if (route_.session && route_.new_session && !session_quota_checked_ && ctx_.redis_quotas &&
      quota_.max_sessions > 0) {
    admit_new_session();
    return;
  }
  const auto& env = scanner_->envelope();
  backend_ = route_.backend->name();
  if (route_.session) {
    route_.session->in_flight.fetch_add(1);
    route_.session->rpcs.fetch_add(1);
    const bool shared_store = ctx_.store && ctx_.config->sessions.store == config::Sessions::Store::kRedis;
    const bool shared_quota = ctx_.redis_quotas && quota_.max_sessions > 0;
    if (shared_store || shared_quota) {
      // Keep the shared entries alive while the session is used; at most every tenth of
      // their TTL, so that a busy session costs Redis almost nothing.
      auto ttl = ctx_.config->sessions.idle_timeout;
      auto now = routing::Clock::now();
      if (now - route_.session->last_store_refresh() > ttl / 10) {
        route_.session->set_last_store_refresh(now);
        if (shared_store) ctx_.store->refresh(routing::Router::session_key(principal_.user, env.session_id), ttl);
        if (shared_quota) ctx_.redis_quotas->refresh_session(principal_.user, env.session_id, session_quota_ttl());
      }
    }
    if (quota_.max_artifact_bytes && rpc_->rpc == spark::Rpc::kAddArtifacts && !count_artifact_bytes()) return;
  }
  if (spdlog::should_log(spdlog::level::debug)) {  // describe() formats on every RPC otherwise
    spdlog::debug("rpc={} {} cluster={} backend={}{}", rpc_->name, env.describe(), route_.cluster->name, backend_,
                  route_.new_session ? " (new session)" : "");
  }
  observe_routed();
  apply_backend_credentials();
  connect_upstream();
}

bool ProxyStream::replace_new_session(const std::string& error) {
  // Only a session created by this very call, placed here by this replica, and only once:
  // nothing has reached any backend yet, so placing it elsewhere is safe.
  if (replaced_ || !route_.new_session || !route_.session || route_.session->rpcs.load() != 1) return false;
  // With a shared store the placement was already claimed for every replica to see.
  if (ctx_.store && ctx_.config->sessions.store == config::Sessions::Store::kRedis) return false;
  replaced_ = true;
  auto failed = route_.backend;
  auto cluster = route_.cluster;
  route_.session->in_flight.fetch_sub(1);
  observe_unrouted();
  ctx_.router->unplace(route_.session);
  route_ = {};
  auto req = request();
  req.avoid = failed.get();
  auto status = ctx_.router->route(*ctx_.config, req, route_);
  if (!status.ok() || !route_.backend || route_.backend == failed) {
    if (route_.session) ctx_.router->unplace(route_.session);
    route_ = {};
    route_.cluster = cluster;  // for the message
    route_.backend = failed;
    backend_ = failed->name();
    return false;
  }
  spdlog::info("backend {} is unreachable ({}); new session {} placed on {} instead", failed->name(), error,
               scanner_->envelope().session_id, route_.backend->name());
  route_ready();
  return true;
}

void ProxyStream::apply_backend_credentials() {
  if (!route_.cluster->credentials) return;
  upstream_headers_.remove("authorization");
  upstream_headers_.remove("authentication");
  upstream_headers_.add("authorization", "Bearer " + route_.cluster->credentials->token);
}

void ProxyStream::connect_upstream() {
  phase_ = Phase::kConnecting;
  auto& pool = ctx_.pools->get(route_.backend->address(), route_.cluster->tls);
  pool.acquire([self = shared_from_this()](http2::ClientConnection* session, const std::string& error) {
    if (self->phase_ != Phase::kConnecting) return;  // the client went away meanwhile
    if (!session) {
      self->route_.backend->report_failure(self->route_.cluster->health_check.passive_failures, error);
      if (self->replace_new_session(error)) return;
      self->reply_local(grpcwire::StatusCode::kUnavailable,
                        "backend " + self->backend_ + " is unreachable: " + error);
      return;
    }
    int32_t id = session->submit_request(self->upstream_headers_, true, self, self->ctx_.config->upstream.idle_timeout);
    if (id < 0) {
      self->reply_local(grpcwire::StatusCode::kUnavailable, "cannot open a stream to backend " + self->backend_ + ": " +
                                                            nghttp2_strerror(id));
      return;
    }
    self->up_id_ = id;
    self->upstream_ = session->shared_from_this();
    self->upstream_open_ = true;
    self->phase_ = Phase::kForwarding;
  });
}

ssize_t ProxyStream::request_body_length(size_t max, uint32_t* data_flags) {
  if (phase_ != Phase::kForwarding) {
    // The RPC ended locally and the upstream stream is being reset; never end it cleanly,
    // or the backend could act on a partial request.
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  size_t n = std::min(max, req_buf_.size());
  if (n == req_buf_.size()) {
    if (req_end_) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    } else if (n == 0) {
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return static_cast<ssize_t>(n);
}

bool ProxyStream::take_request_body(uint8_t* out, size_t n) {
  if (req_buf_.size() < n) return false;
  req_buf_.read(out, n);
  consume_request_bytes(n);
  if (req_buf_.empty() && req_end_) req_buf_.release();
  return true;
}

void ProxyStream::on_stream_closed(uint32_t error_code) {
  record(error_code);
  // Whatever the client sent that never left is returned to the connection window.
  consume_request_bytes(req_buf_.size());
  req_buf_.release();
  downstream_ = nullptr;
  release_operation();
  if (!clone_reservation_.empty() && ctx_.redis_quotas) {
    ctx_.redis_quotas->remove_session(principal_.user, clone_reservation_);
    clone_reservation_.clear();
  }
  if (!upstream_done_ && upstream_open_) {
    spdlog::debug("rpc={} backend={}: client ended the stream early ({}); cancelling upstream",
                  rpc_ ? rpc_->name : "-", backend_label(), http2_error_name(error_code));
    cancel_upstream();
  }
  // Response bytes that will never be sent go back to the backend's window.
  consume_upstream(resp_buf_.size());
  resp_buf_.release();
  if (route_.session) {
    if (phase_ != Phase::kDone && rpc_->rpc == spark::Rpc::kReleaseSession && final_status_ == "0") {
      ctx_.router->session_released(route_.session);
      if (ctx_.redis_quotas) ctx_.redis_quotas->remove_session(principal_.user, route_.session->session_id);
      if (ctx_.store && ctx_.config->sessions.store == config::Sessions::Store::kRedis)
        ctx_.store->erase(routing::Router::session_key(principal_.user, route_.session->session_id));
    }
    route_.session->touch(routing::Clock::now());
    route_.session->in_flight.fetch_sub(1);
    route_.session.reset();
  }
  phase_ = Phase::kDone;
}

// ---------------------------------------------------------------------------------------
// Upstream → downstream

void ProxyStream::on_response_headers(http2::HeaderMap headers, bool end_stream) {
  if (route_.backend) route_.backend->report_success();
  if (!downstream_) return;
  http2::HeaderMap out;
  for (auto& [name, value] : headers.take_fields()) {
    if (http2::is_hop_by_hop(name)) continue;
    if (name == "grpc-status") final_status_ = value;
    out.add(std::move(name), std::move(value));
  }
  resp_headers_sent_ = true;
  if (end_stream) {
    // Trailers-only response: one HEADERS frame with END_STREAM, as the backend sent it.
    resp_end_ = true;
    upstream_done_ = true;
    downstream_->submit_response(down_id_, out, false);
    return;
  }
  downstream_->submit_response(down_id_, out, true);
}

void ProxyStream::on_response_data(const uint8_t* data, size_t n) {
  if (!downstream_ || phase_ == Phase::kLocalReply) {
    consume_upstream(n);
    return;
  }
  const uint64_t chunk_start = resp_offset_;
  auto err = resp_framer_.scan({data, n}, [&](const grpcwire::MessageHeader& h, size_t payload_offset) {
    if (resp_framer_.messages() != 1 || !route_.session || h.compressed) return;
    first_resp_payload_start_ = chunk_start + payload_offset;
    resp_scanner_.emplace(*rpc_, h.length);
  });
  resp_offset_ += n;
  if (resp_scanner_ && !resp_scanned_) scan_response(data, n, chunk_start);
  if (err == grpcwire::FramerError::kTooLarge) {
    consume_upstream(n);
    reply_too_large("response", resp_framer_);
    return;
  }
  if (resp_bytes_ == 0) first_response_ = std::chrono::steady_clock::now();
  resp_bytes_ += n;
  resp_buf_.append(data, n);
  downstream_->resume_data(down_id_);
}

void ProxyStream::scan_response(const uint8_t* data, size_t n, uint64_t chunk_start) {
  uint64_t want_from = first_resp_payload_start_ + resp_scanned_bytes_;
  if (want_from < chunk_start || want_from >= chunk_start + n) return;
  size_t off = static_cast<size_t>(want_from - chunk_start);
  size_t before = static_cast<size_t>(resp_scanner_->remaining());
  resp_scanner_->feed({data + off, n - off});
  resp_scanned_bytes_ += before - resp_scanner_->remaining();
  if (!resp_scanner_->finished()) return;
  resp_scanned_ = true;
  if (resp_scanner_->failed() || !route_.session) return;
  ctx_.router->learn_server_side_session_id(route_.session, resp_scanner_->server_side_session_id());
  if (rpc_->rpc == spark::Rpc::kCloneSession) {
    // Registered before the response reaches the client, so its first call on the clone
    // already finds it.
    ctx_.router->session_cloned(route_.session, resp_scanner_->new_session_id(),
                                resp_scanner_->new_server_side_session_id());
    if (!clone_reservation_.empty()) {
      // The reserved slot becomes the clone's own entry in the shared count.
      ctx_.redis_quotas->refresh_session(principal_.user, resp_scanner_->new_session_id(), session_quota_ttl());
      ctx_.redis_quotas->remove_session(principal_.user, clone_reservation_);
      clone_reservation_.clear();
    }
  }
}

void ProxyStream::on_response_trailers(http2::HeaderMap trailers) {
  upstream_done_ = true;
  if (!downstream_ || phase_ == Phase::kLocalReply) return;
  http2::HeaderMap out;
  for (auto& [name, value] : trailers.take_fields()) {
    if (name.empty() || name[0] == ':' || http2::is_hop_by_hop(name)) continue;
    if (name == "grpc-status") final_status_ = value;
    out.add(std::move(name), std::move(value));
  }
  if (final_status_ == "14" && route_.backend)
    route_.backend->report_failure(route_.cluster->health_check.passive_failures, "the backend answered UNAVAILABLE");
  resp_trailers_ = std::move(out);
  resp_end_ = true;
  downstream_->resume_data(down_id_);
}

void ProxyStream::on_upstream_closed(uint32_t error_code, const std::string& connection_error) {
  upstream_open_ = false;
  bool was_done = upstream_done_;
  upstream_done_ = true;
  if (!downstream_ || phase_ == Phase::kLocalReply || phase_ == Phase::kDone || was_done) return;
  if (error_code == NGHTTP2_REFUSED_STREAM && connection_error.empty() && !resp_headers_sent_) {
    // The backend did not process the stream (RFC 9113 §8.7); gRPC clients retry it
    // transparently.
    spdlog::debug("rpc={} backend={}: stream refused upstream; refusing downstream", rpc_->name, backend_);
    downstream_->reset_stream(down_id_, NGHTTP2_REFUSED_STREAM);
    phase_ = Phase::kDone;
    return;
  }
  if (!connection_error.empty())
    route_.backend->report_failure(route_.cluster->health_check.passive_failures, connection_error);
  std::string why = connection_error.empty()
                        ? "reset the stream (HTTP/2 " + http2_error_name(error_code) + ")"
                        : "closed the connection (" + connection_error + ")";
  reply_local(grpcwire::StatusCode::kUnavailable, "backend " + backend_ + " " + why + " during " + std::string(rpc_->name));
}

bool ProxyStream::on_upstream_idle(std::chrono::milliseconds idle) {
  if (phase_ != Phase::kForwarding || !downstream_) return true;
  // The client is not reading (flow control holds the backend back), or has not finished
  // its request: the silence is not the backend's.
  if (!resp_buf_.empty() || (!req_end_ && req_buf_.empty())) return false;
  auto ms = idle.count();
  std::string took = ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
  spdlog::info("rpc={} backend={}: no bytes either way for {}; cancelling the stream (upstream.idle_timeout)",
               rpc_->name, backend_, took);
  reply_local(grpcwire::StatusCode::kUnavailable, "backend " + backend_ + " sent nothing for " + took + " during " +
                                                  std::string(rpc_->name) + " (upstream.idle_timeout)");
  return true;
}

ssize_t ProxyStream::response_body_length(size_t max, uint32_t* data_flags) {
  size_t n = std::min(max, resp_buf_.size());
  if (n == resp_buf_.size()) {
    if (resp_end_) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      if (resp_trailers_ && downstream_) {
        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        downstream_->submit_trailers(down_id_, *resp_trailers_);
        resp_trailers_.reset();
      }
    } else if (n == 0) {
      return NGHTTP2_ERR_DEFERRED;
    }
  }
  return static_cast<ssize_t>(n);
}

bool ProxyStream::take_response_body(uint8_t* out, size_t n) {
  if (resp_buf_.size() < n) return false;
  resp_buf_.read(out, n);
  consume_upstream(n);
  if (resp_buf_.empty() && resp_end_) resp_buf_.release();
  return true;
}

// ---------------------------------------------------------------------------------------
// Local replies and cleanup

void ProxyStream::reply_local(grpcwire::StatusCode code, const std::string& message) {
  if (phase_ == Phase::kLocalReply || phase_ == Phase::kDone) return;
  bool was_forwarding = phase_ == Phase::kForwarding || phase_ == Phase::kConnecting;
  phase_ = Phase::kLocalReply;
  final_status_ = std::to_string(static_cast<int>(code));
  if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("rpc={} {} backend={}: gateway replies {} ({})", rpc_ ? rpc_->name : "-",
                  scanner_ ? scanner_->envelope().describe() : std::string("session=-"), backend_label(),
                  grpcwire::status_name(code), message);
  }
  if (was_forwarding) cancel_upstream();
  consume_request_bytes(req_buf_.size());
  req_buf_.release();
  if (!downstream_) return;
  if (!resp_headers_sent_) {
    resp_headers_sent_ = true;
    resp_end_ = true;
    downstream_->submit_response(down_id_, trailers_only(code, message), false);
    return;
  }
  // Headers (and maybe messages) already went out: end with trailers. A message cut in
  // half is dropped rather than delivered torn.
  if (!resp_framer_.at_boundary()) {
    resp_bytes_ -= resp_buf_.size();
    consume_upstream(resp_buf_.size());
    resp_buf_.release();
  }
  http2::HeaderMap t;
  t.add("grpc-status", std::to_string(static_cast<int>(code)));
  t.add("grpc-message", grpcwire::percent_encode(message));
  resp_trailers_ = std::move(t);
  resp_end_ = true;
  downstream_->resume_data(down_id_);
}

void ProxyStream::reply_http(int status, grpcwire::StatusCode code, const std::string& message,
                             const std::string* authority) {
  phase_ = Phase::kLocalReply;
  final_status_ = std::to_string(static_cast<int>(code));
  if (!downstream_) return;
  // Not a gRPC client (curl, a browser, a probe): the HTTP status and a short text that
  // says what this endpoint is, as a complete response with a body. The stream is left to
  // close the normal way (no RST_STREAM), as RFC 9113 section 8.1 lets a server answer
  // before the request ended. The client's :authority is echoed only when it looks like
  // host[:port].
  std::string where = "HOST:PORT";
  if (authority && !authority->empty() && authority->size() <= 255 &&
      std::all_of(authority->begin(), authority->end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '[' ||
               c == ']';
      })) {
    where = *authority;
  }
  const std::string body = std::to_string(status) + " " + message +
                           "\n\nThis is sparkgate, a gateway for Apache Spark Connect (gRPC over HTTP/2).\n"
                           "Connect with a Spark Connect client, e.g. PySpark:\n"
                           "  SparkSession.builder.remote(\"sc://" + where + "\").getOrCreate()\n";
  http2::HeaderMap h;
  h.add(":status", std::to_string(status));
  h.add("content-type", "text/plain; charset=utf-8");
  h.add("content-length", std::to_string(body.size()));
  resp_buf_.append(reinterpret_cast<const uint8_t*>(body.data()), body.size());
  resp_headers_sent_ = true;
  resp_end_ = true;
  downstream_->submit_response(down_id_, h, true);
}

void ProxyStream::cancel_upstream() {
  if (!upstream_open_) return;
  upstream_open_ = false;
  upstream_done_ = true;
  if (auto up = upstream_.lock()) up->reset_stream(up_id_, NGHTTP2_CANCEL);
}

void ProxyStream::consume_request_bytes(size_t n) {
  size_t ours = std::min(n, added_request_bytes_);
  added_request_bytes_ -= ours;
  consume_downstream(n - ours);
}

void ProxyStream::consume_downstream(size_t n) {
  if (n && downstream_) downstream_->consume(down_id_, n);
}

void ProxyStream::consume_upstream(size_t n) {
  if (n == 0) return;
  if (auto up = upstream_.lock()) up->consume(up_id_, n);
}

}  // namespace sparkgate::proxy
