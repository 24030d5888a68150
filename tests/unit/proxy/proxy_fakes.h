// Fakes for the proxy's unit tests: the two sides of a relay, the relay's events, a
// QuotaService and a SessionStore that answer at once or later (and record
// cancellations), and an RPC fixture that runs single steps over a real Router.
#pragma once

#include <doctest/doctest.h>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/config_loader.h"
#include "http2/write_buffer.h"
#include "grpcwire/framer.h"
#include "policy/authenticator.h"
#include "policy/quota_service.h"
#include "proxy/request_inspector.h"
#include "proxy/rpc_state.h"
#include "proxy/upstream_request.h"
#include "routing/router.h"
#include "routing/session_store.h"

namespace sparkgate::proxy::testing {

struct FakeStream : DownstreamPeer {
  void consume(size_t n) override { consumed += n; }
  void resume() override { ++resumes; }
  void reset(uint32_t code) override { resets.push_back(code); }
  void send_headers(const http2::HeaderMap& h, bool has_body) override {
    headers.push_back(h);
    headers_with_body.push_back(has_body);
  }
  void send_trailers(const http2::HeaderMap& t) override { trailers.push_back(t); }
  std::string header(size_t i, const char* name) const {
    const auto v = headers.at(i).find(name);
    return v ? std::string(*v) : std::string();
  }
  uint64_t consumed = 0;
  int resumes = 0;
  std::vector<uint32_t> resets;
  std::vector<http2::HeaderMap> headers;
  std::vector<bool> headers_with_body;
  std::vector<http2::HeaderMap> trailers;
};

struct FakeEvents : RelayEvents {
  void on_backend_answered() override { ++answered; }
  void on_backend_failed(const std::string& why) override { failures.push_back(why); }
  void on_response_too_large() override { ++too_large; }
  void on_upstream_failed(LocalReply r) override { failed.push_back(r); }
  int answered = 0;
  int too_large = 0;
  std::vector<std::string> failures;
  std::vector<LocalReply> failed;
};

// The bytes one DATA frame would carry, pulled the way nghttp2 pulls them.
template <class Pull, class Take>
std::string pull(Pull length, Take take, size_t max = 1 << 20, uint32_t* flags_out = nullptr) {
  uint32_t flags = 0;
  ssize_t n = length(max, &flags);
  if (flags_out) *flags_out = flags;
  if (n <= 0) return {};
  http2::WriteBuffer buf;
  buf.set_in_place(true);  // as over TCP: large runs stay in the queue's chunks
  REQUIRE(take(buf, static_cast<size_t>(n)));
  REQUIRE(buf.size() == static_cast<size_t>(n));
  std::string out;
  for (const auto& b : buf.buffers()) out.append(static_cast<const char*>(b.data()), b.size());
  return out;
}

inline std::string varint(uint64_t v) {
  std::string s;
  while (v >= 0x80) {
    s.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  s.push_back(static_cast<char>(v));
  return s;
}
inline std::string field(int number, const std::string& bytes) {
  return varint(static_cast<uint64_t>(number) << 3 | 2) + varint(bytes.size()) + bytes;
}
// A request message with session_id and user_context{user_id}, gRPC-framed; `extra` is
// appended to the payload (e.g. a plan field).
inline std::string request_message(const std::string& session, const std::string& user,
                                   const std::string& extra = {}) {
  std::string payload = field(1, session) + field(2, field(1, user)) + extra;
  return grpcwire::encode_prefix(static_cast<uint32_t>(payload.size())) + payload;
}

// A QuotaService whose checks answer `next` at once, or wait (pending) until complete().
struct FakeQuotas : policy::QuotaService {
  struct Wait : base::Cancellable {
    void cancel() override { cancelled = true; }
    policy::QuotaWaiter* waiter = nullptr;
    policy::OperationLease* lease = nullptr;
    bool cancelled = false;
  };
  policy::QuotaAnswer answer(policy::QuotaWaiter& w, policy::OperationLease* lease = nullptr) {
    if (!async) {
      policy::QuotaAnswer a;
      a.decision = next;
      if (lease && next.allowed) lease->held = true;
      return a;
    }
    waits.push_back(std::make_unique<Wait>());
    waits.back()->waiter = &w;
    waits.back()->lease = lease;
    policy::QuotaAnswer a;
    a.pending = waits.back().get();
    return a;
  }
  // Delivers `d` to the oldest wait (unless it was cancelled).
  void complete(policy::QuotaDecision d) {
    REQUIRE(!waits.empty());
    auto w = std::move(waits.front());
    waits.pop_front();
    if (w->cancelled) return;
    if (w->lease && d.allowed) w->lease->held = true;
    w->waiter->on_quota(d);
  }
  policy::QuotaAnswer try_request(const std::string& user, double, uint32_t, policy::QuotaWaiter& w) override {
    calls.push_back("rate " + user);
    return answer(w);
  }
  policy::QuotaAnswer try_begin_operation(const std::string& user, uint32_t, policy::OperationLease& lease,
                                          policy::QuotaWaiter& w) override {
    calls.push_back("operation " + user);
    return answer(w, &lease);
  }
  void end_operation(const std::string& user, policy::OperationLease& lease) override {
    if (!lease.held) return;
    lease.held = false;
    calls.push_back("end operation " + user);
  }
  uint32_t registry_session_limit(uint32_t max) const override { return registry_limits ? max : 0; }
  policy::QuotaAnswer try_add_session(const std::string& user, const std::string& id, uint32_t,
                                      std::chrono::milliseconds, policy::QuotaWaiter& w) override {
    calls.push_back("session " + user + " " + id);
    return answer(w);
  }
  policy::QuotaAnswer try_reserve_clone(const std::string& user, const std::string&, uint32_t,
                                        policy::CloneReservation& r, policy::QuotaWaiter& w) override {
    calls.push_back("clone " + user);
    r.id = "reserved";
    return answer(w);
  }
  void clone_created(const std::string&, policy::CloneReservation& r, const std::string& id,
                     std::chrono::milliseconds) override {
    if (r.id.empty()) return;
    calls.push_back("clone created " + id);
    r.id.clear();
  }
  void release_clone(const std::string&, policy::CloneReservation& r) override {
    if (r.id.empty()) return;
    calls.push_back("clone released");
    r.id.clear();
  }
  void refresh_session(const std::string&, const std::string& id, std::chrono::milliseconds) override {
    calls.push_back("refresh " + id);
  }
  void remove_session(const std::string&, const std::string& id) override { calls.push_back("remove " + id); }

  bool async = false;
  bool registry_limits = true;
  policy::QuotaDecision next;
  std::deque<std::unique_ptr<Wait>> waits;
  std::vector<std::string> calls;
};

// A SessionStore that shares placements (asks before placing) and answers lookups and
// claims from `stored`, at once or (async) when complete() is called.
struct FakeStore : routing::SessionStore {
  struct Wait : base::Cancellable {
    void cancel() override { cancelled = true; }
    routing::StoreWaiter* waiter = nullptr;
    routing::StoreAnswer answer;
    bool cancelled = false;
  };
  bool ask_before_placing() const override { return shared; }
  bool placements_movable() const override { return !shared; }
  routing::StoreAnswer reply(routing::StoreAnswer a, routing::StoreWaiter& w) {
    if (!async) return a;
    waits.push_back(std::make_unique<Wait>());
    waits.back()->waiter = &w;
    waits.back()->answer = std::move(a);
    routing::StoreAnswer p;
    p.pending = waits.back().get();
    return p;
  }
  void complete() {
    REQUIRE(!waits.empty());
    auto w = std::move(waits.front());
    waits.pop_front();
    if (!w->cancelled) w->waiter->on_store_answer(w->answer);
  }
  routing::StoreAnswer lookup(const std::string&, const std::string& id, routing::StoreWaiter& w) override {
    calls.push_back("lookup " + id);
    routing::StoreAnswer a;
    if (auto it = stored.find(id); it != stored.end()) a.backend = it->second;
    a.error = error;
    return reply(a, w);
  }
  routing::StoreAnswer claim(const std::string&, const std::string& id, const std::string& backend,
                             std::chrono::milliseconds, routing::StoreWaiter& w) override {
    calls.push_back("claim " + id + " " + backend);
    routing::StoreAnswer a;
    auto [it, inserted] = stored.emplace(id, backend);
    a.backend = it->second;
    return reply(a, w);
  }
  void refresh(const std::string&, const std::string& id, std::chrono::milliseconds) override {
    calls.push_back("refresh " + id);
  }
  void erase(const std::string&, const std::string& id) override { calls.push_back("erase " + id); }

  bool shared = true;
  bool async = false;
  std::string error;
  std::map<std::string, std::string> stored;
  std::deque<std::unique_ptr<Wait>> waits;
  std::vector<std::string> calls;
};

struct FakeDone : StepDone {
  void step_done(StepStatus s) override { results.push_back(s); }
  std::vector<StepStatus> results;
};

inline std::shared_ptr<const config::Config> load_config(const std::string& extra = {},
                                                         const std::string& clusters =
                                                             "  - name: c\n    backends: [{address: 127.0.0.1:2}, "
                                                             "{address: 127.0.0.1:3}]\n") {
  auto r = config::load_config_string("listeners: [{address: 127.0.0.1:1}]\nclusters:\n" + clusters +
                                          "routes:\n  - {cluster: c}\n" + extra,
                                      "proxy-test.yaml");
  for (const auto& e : r.errors) MESSAGE(e.to_string());
  REQUIRE(r.config);
  return r.config;
}

// One RPC's state with its inspector and relay, over a real Router; steps are run on it
// one at a time.
struct RpcFixture {
  explicit RpcFixture(std::shared_ptr<const config::Config> cfg, const char* method = "Config")
      : config(std::move(cfg)),
        router(backends),
        state(make_context()),
        inspector(config->limits.max_message_bytes),
        upstream(down, events, config->limits.max_message_bytes, method) {
    backends.apply_config(config);
    state.rpc = spark::find_rpc_by_path(std::string("/spark.connect.SparkConnectService/") + method);
    REQUIRE(state.rpc);
    state.inspector = &inspector;
    state.upstream = &upstream;
    state.request_headers = &headers;
  }
  ~RpcFixture() { upstream.downstream_closed(); }
  ProxyContext make_context() {
    ProxyContext c;
    c.config = config;
    c.router = &router;
    c.store = &store;
    c.quotas = &quotas;
    return c;
  }
  // Feeds request bytes as the RpcStream does; returns the inspector's verdict.
  bool receive(const std::string& bytes) {
    LocalReply r;
    auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
    if (!inspector.inspect(state, p, bytes.size(), r)) {
      upstream.drop_request(bytes.size());
      state.reply = r;
      return false;
    }
    upstream.receive_request(p, bytes.size());
    return true;
  }
  // Receives `bytes` and settles the envelope (as the inspect step would).
  void envelope(const std::string& bytes) {
    REQUIRE(receive(bytes));
    LocalReply r;
    REQUIRE(inspector.envelope_state(state, false, upstream.request_queued(), r) ==
            RequestInspector::Envelope::kReady);
  }

  std::shared_ptr<const config::Config> config;
  routing::BackendRegistry backends;
  routing::Router router;
  FakeStore store;
  FakeQuotas quotas;
  RpcState state;
  RequestInspector inspector;
  FakeStream down;
  FakeEvents events;
  UpstreamRequest upstream;
  http2::HeaderMap headers;
  FakeDone done;
};

}  // namespace sparkgate::proxy::testing
