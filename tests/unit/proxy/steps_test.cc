// Each pipeline step alone, on an RpcFixture (a real Router, fake quota service and
// session store, fake connections).
#include "test_jwk.h"
#include <doctest/doctest.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <map>

#include "policy/key_source.h"
#include "policy/oidc_documents.h"
#include "proxy/admit_step.h"
#include "proxy/authenticate_step.h"
#include "proxy/identity_step.h"
#include "proxy/request_inspector.h"
#include "proxy/route_step.h"
#include "proxy/session_admit_step.h"
#include "proxy_fakes.h"

using namespace sparkgate;
using namespace sparkgate::proxy;
using namespace sparkgate::proxy::testing;

namespace {

std::string token_auth(const std::string& extra = {}) {
  return "auth:\n  tokens:\n    - {sha256: \"" + policy::token_hash_hex("alice-token") + "\", user: alice}\n" + extra;
}

// ---- Remote JWT keys: an RSA key pair per kid, a JWK Set of some of them, and tokens

constexpr const char* kIdp = "https://idp.test";

using sparkgate::testing::b64url;

using PkeyPtr = std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)>;

// Key generation takes a moment: two keys for every test.
EVP_PKEY* rsa_key(int which) {
  static PkeyPtr k1{EVP_RSA_gen(2048), &EVP_PKEY_free};
  static PkeyPtr k2{EVP_RSA_gen(2048), &EVP_PKEY_free};
  REQUIRE(k1);
  REQUIRE(k2);
  return which == 1 ? k1.get() : k2.get();
}

// The published keys of kIdp: kid "k<n>" for each key number.
std::shared_ptr<const policy::JwksSnapshot> jwks_of(std::initializer_list<int> which) {
  std::string doc = "{\"keys\":[";
  auto snap = std::make_shared<policy::JwksSnapshot>();
  for (int w : which) {
    if (doc.back() == '}') doc += ",";
    doc += sparkgate::testing::rsa_public_jwk(rsa_key(w), "k" + std::to_string(w));
  }
  doc += "]}";
  std::string error;
  auto fetched = policy::parse_fetched_jwks(doc, std::string(kIdp) + "/certs", error);
  REQUIRE_MESSAGE(fetched, error);
  snap->issuer = kIdp;
  snap->keys = fetched->keys;
  snap->kids = fetched->kids;
  snap->jwks_uri = std::string(kIdp) + "/certs";
  snap->fetched_at = std::chrono::system_clock::now();
  return snap;
}

// An RS256 token of kIdp for alice, signed by key `which` under kid "k<which>".
std::string idp_token(int which) {
  const auto exp = std::chrono::duration_cast<std::chrono::seconds>(
                       (std::chrono::system_clock::now() + std::chrono::hours(1)).time_since_epoch())
                       .count();
  std::string input = b64url(R"({"alg":"RS256","typ":"JWT","kid":"k)" + std::to_string(which) + "\"}") + "." +
                      b64url(R"({"iss":")" + std::string(kIdp) + R"(","sub":"alice","exp":)" + std::to_string(exp) + "}");
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  REQUIRE(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, rsa_key(which)) == 1);
  std::string sig(static_cast<size_t>(EVP_PKEY_get_size(rsa_key(which))), '\0');
  size_t len = sig.size();
  REQUIRE(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                         reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1);
  sig.resize(len);
  return input + "." + b64url(sig);
}

std::string remote_auth(const std::string& extra = {}) {
  return "auth:\n  jwt:\n    - issuer: " + std::string(kIdp) + "\n      jwks_uri: " + kIdp + "/certs\n" + extra;
}

// A KeySource whose keys the test sets and whose refreshes end when the test says.
struct FakeKeySource final : policy::KeySource, policy::RemoteKeys {
  struct Wait final : base::Cancellable {
    explicit Wait(policy::KeyRefreshWaiter& w) : waiter(w) {}
    void cancel() override { cancelled = true; }
    policy::KeyRefreshWaiter& waiter;
    bool cancelled = false;
  };
  std::shared_ptr<const policy::JwksSnapshot> snapshot(const std::string& issuer) const override {
    return issuer == kIdp ? current : nullptr;
  }
  const policy::RemoteKeys* keys() const override { return this; }
  policy::KeyRefreshAnswer refresh(const std::string& issuer, policy::KeyRefreshWaiter& w) override {
    refreshed.push_back(issuer);
    if (outcome != policy::JwksCache::Refresh::kPending) return {outcome, nullptr};
    waits.push_back(std::make_unique<Wait>(w));
    return {outcome, waits.back().get()};
  }
  // The last fetch ended with `keys`: its waiter is told, unless it cancelled.
  void complete(std::shared_ptr<const policy::JwksSnapshot> keys) {
    current = std::move(keys);
    REQUIRE_FALSE(waits.empty());
    if (!waits.back()->cancelled) waits.back()->waiter.on_keys_refreshed();
  }
  std::shared_ptr<const policy::JwksSnapshot> current;
  policy::JwksCache::Refresh outcome = policy::JwksCache::Refresh::kPending;
  std::vector<std::string> refreshed;
  std::vector<std::unique_ptr<Wait>> waits;
};

// A fixture whose request carries `token`; the headers are gone once run() returned, as
// in the RpcStream.
struct RemoteFixture {
  explicit RemoteFixture(const std::string& token, const std::string& extra = {})
      : f(load_config(remote_auth(extra))) {
    f.state.ctx.keys = &keys;
    f.headers.add("authorization", "Bearer " + token);
    f.state.upstream_headers.add("authorization", "Bearer " + token);
  }
  StepStatus run(AuthenticateStep& step) {
    auto s = step.run();
    f.headers.clear();
    f.state.request_headers = nullptr;
    return s;
  }
  FakeKeySource keys;
  RpcFixture f;
};

}  // namespace

// ---- InspectStep

TEST_CASE("InspectStep: waits for the envelope, continues once it is complete") {
  RpcFixture f(load_config());
  InspectStep step(f.state, f.done);
  CHECK(step.run() == StepStatus::kPaused);
  const auto msg = request_message("s1", "alice");
  REQUIRE(f.receive(msg.substr(0, 8)));
  step.poll();
  CHECK(f.done.results.empty());
  REQUIRE(f.receive(msg.substr(8)));
  step.poll();
  CHECK(f.done.results == std::vector<StepStatus>{StepStatus::kContinue});
  CHECK(f.state.envelope().session_id == "s1");
  CHECK(f.state.envelope().user_id == "alice");
}

TEST_CASE("InspectStep: a request that ends before its envelope, or has an empty session_id, is refused") {
  RpcFixture f(load_config());
  InspectStep step(f.state, f.done);
  CHECK(step.run() == StepStatus::kPaused);
  f.upstream.end_request();
  step.poll();
  CHECK(f.done.results == std::vector<StepStatus>{StepStatus::kStop});
  CHECK(f.state.reply.code == grpcwire::StatusCode::kInvalidArgument);

  RpcFixture g(load_config());
  REQUIRE(g.receive(request_message("", "alice")));
  InspectStep empty(g.state, g.done);
  CHECK(empty.run() == StepStatus::kStop);
  CHECK(g.state.reply.message == "Config request has an empty session_id");
}

TEST_CASE("RequestInspector: compressed and oversized requests are refused") {
  RpcFixture f(load_config("limits: {max_message_bytes: 1024}\n"));
  std::string compressed = request_message("s1", "alice");
  compressed[0] = 1;
  CHECK_FALSE(f.receive(compressed));
  CHECK(f.state.reply.message.find("compressed request messages are not supported") == 0);

  RpcFixture g(load_config("limits: {max_message_bytes: 1024}\n"));
  CHECK_FALSE(g.receive(request_message("s1", "alice", field(3, std::string(2000, 'x')))));
  CHECK(g.state.reply.code == grpcwire::StatusCode::kResourceExhausted);
  CHECK(g.state.reply.message.find("exceeds the gateway limit of 1024 bytes (limits.max_message_bytes)") !=
        std::string::npos);
  CHECK_FALSE(g.state.reply.quota);
}

// ---- AuthenticateStep

TEST_CASE("AuthenticateStep: a valid token sets the principal and drops the client's credential") {
  RpcFixture f(load_config(token_auth()));
  f.state.upstream_headers.add("authorization", "Bearer alice-token");
  f.headers.add("authorization", "Bearer alice-token");
  AuthenticateStep step(f.state, f.done);
  CHECK(step.run() == StepStatus::kContinue);
  CHECK(f.state.principal.user == "alice");
  CHECK(f.state.principal.verified());
  CHECK_FALSE(f.state.upstream_headers.find("authorization"));
}

TEST_CASE("AuthenticateStep: a missing or unknown credential stops the RPC with UNAUTHENTICATED") {
  RpcFixture f(load_config(token_auth()));
  AuthenticateStep step(f.state, f.done);
  CHECK(step.run() == StepStatus::kStop);
  CHECK(f.state.reply.code == grpcwire::StatusCode::kUnauthenticated);

  RpcFixture g(load_config(token_auth()));
  g.headers.add("authorization", "Bearer mallory-token");
  AuthenticateStep wrong(g.state, g.done);
  CHECK(wrong.run() == StepStatus::kStop);
  CHECK(g.state.reply.code == grpcwire::StatusCode::kUnauthenticated);
  CHECK(g.state.reply.message.find("mallory-token") == std::string::npos);  // never the secret
}

TEST_CASE("AuthenticateStep: without auth the principal stays unverified and credentials pass") {
  RpcFixture f(load_config());
  f.state.upstream_headers.add("authorization", "Bearer x");
  AuthenticateStep step(f.state, f.done);
  CHECK(step.run() == StepStatus::kContinue);
  CHECK_FALSE(f.state.principal.verified());
  CHECK(f.state.upstream_headers.find("authorization"));
}

TEST_CASE("AuthenticateStep: an unknown kid pauses for a refresh of the issuer's keys; the new key continues") {
  RemoteFixture r(idp_token(2));
  r.keys.current = jwks_of({1});
  AuthenticateStep step(r.f.state, r.f.done);
  CHECK(r.run(step) == StepStatus::kPaused);
  CHECK(step.waiting());
  CHECK(r.keys.refreshed == std::vector<std::string>{kIdp});
  // Request bytes during the wait are held, not routed.
  REQUIRE(r.f.receive(request_message("s1", "alice")));
  CHECK(r.f.upstream.request_queued() > 0);
  CHECK(r.f.done.results.empty());
  r.keys.complete(jwks_of({1, 2}));  // the issuer rotated to k2
  CHECK(r.f.done.results == std::vector<StepStatus>{StepStatus::kContinue});
  CHECK_FALSE(step.waiting());
  CHECK(r.f.state.principal.user == "alice");
  CHECK(r.f.state.principal.verified());
  CHECK_FALSE(r.f.state.upstream_headers.find("authorization"));
  CHECK(r.keys.refreshed.size() == 1);
}

TEST_CASE("AuthenticateStep: a refresh that still lacks the kid stops with UNAUTHENTICATED, without another refresh") {
  RemoteFixture r(idp_token(2));
  r.keys.current = jwks_of({1});
  AuthenticateStep step(r.f.state, r.f.done);
  CHECK(r.run(step) == StepStatus::kPaused);
  r.keys.complete(jwks_of({1}));
  CHECK(r.f.done.results == std::vector<StepStatus>{StepStatus::kStop});
  CHECK(r.f.state.reply.code == grpcwire::StatusCode::kUnauthenticated);
  CHECK(r.f.state.reply.message.find("k2") != std::string::npos);
  CHECK(r.keys.refreshed.size() == 1);
  CHECK_FALSE(r.f.state.principal.verified());

  // Refused within min_refresh_interval: no wait at all.
  RemoteFixture limited(idp_token(2));
  limited.keys.current = jwks_of({1});
  limited.keys.outcome = policy::JwksCache::Refresh::kRateLimited;
  AuthenticateStep at_once(limited.f.state, limited.f.done);
  CHECK(limited.run(at_once) == StepStatus::kStop);
  CHECK(limited.f.state.reply.code == grpcwire::StatusCode::kUnauthenticated);
  CHECK(limited.f.state.reply.message.find("(min_refresh_interval)") != std::string::npos);
  CHECK(limited.keys.waits.empty());
}

TEST_CASE("AuthenticateStep: a wait cancelled (the stream closed) never completes the step") {
  RemoteFixture r(idp_token(2));
  AuthenticateStep step(r.f.state, r.f.done);
  CHECK(r.run(step) == StepStatus::kPaused);  // no keys yet at all
  step.cancel();
  REQUIRE(r.keys.waits.size() == 1);
  CHECK(r.keys.waits.front()->cancelled);
  CHECK_FALSE(step.waiting());
  r.keys.complete(jwks_of({2}));
  CHECK(r.f.done.results.empty());
  CHECK_FALSE(r.f.state.principal.verified());
}

TEST_CASE("AuthenticateStep: max_message_bytes applies to a request message that arrived during the wait") {
  RemoteFixture r(idp_token(2), "quotas:\n  default: {max_message_bytes: 512}\n");
  AuthenticateStep step(r.f.state, r.f.done);
  CHECK(r.run(step) == StepStatus::kPaused);
  REQUIRE(r.f.receive(request_message("s1", "alice", field(3, std::string(2000, 'x')))));
  r.keys.complete(jwks_of({2}));
  CHECK(r.f.done.results == std::vector<StepStatus>{StepStatus::kStop});
  CHECK(r.f.state.reply.code == grpcwire::StatusCode::kResourceExhausted);
  CHECK(r.f.state.reply.message.find("exceeds quota max_message_bytes (512)") != std::string::npos);
}

// ---- IdentityStep

TEST_CASE("IdentityStep: enforce refuses another user's user_id; unauthenticated takes the request's") {
  RpcFixture f(load_config(token_auth("identity: {mode: enforce}\n")));
  f.headers.add("authorization", "Bearer alice-token");
  REQUIRE(AuthenticateStep(f.state, f.done).run() == StepStatus::kContinue);
  f.envelope(request_message("s1", "bob"));
  IdentityStep step(f.state);
  CHECK(step.run() == StepStatus::kStop);
  CHECK(f.state.reply.code == grpcwire::StatusCode::kPermissionDenied);
  CHECK(f.state.reply.message == "user_id 'bob' does not match authenticated user 'alice'");

  RpcFixture g(load_config());
  g.envelope(request_message("s1", "bob"));
  CHECK(IdentityStep(g.state).run() == StepStatus::kContinue);
  CHECK(g.state.principal.user == "bob");
}

TEST_CASE("IdentityStep: rewrite splices the principal into user_context; every other byte stays") {
  FakeStream up;  // outlives the fixture, whose destructor cancels the upstream stream
  RpcFixture f(load_config(token_auth("identity: {mode: rewrite}\n")));
  f.headers.add("authorization", "Bearer alice-token");
  REQUIRE(AuthenticateStep(f.state, f.done).run() == StepStatus::kContinue);
  const std::string tail = field(3, "plan-bytes");
  f.envelope(request_message("s1", "mallory", tail));
  CHECK(IdentityStep(f.state).run() == StepStatus::kContinue);
  f.upstream.attach(up, "b:1");
  f.upstream.end_request();
  std::string sent = pull([&](size_t m, uint32_t* fl) { return f.upstream.request_body_length(m, fl); },
                          [&](http2::WriteBuffer& o, size_t n) { return f.upstream.take_request_body(o, n); });
  REQUIRE(sent.size() > 5);
  spark::EnvelopeScanner scan(*f.state.rpc, sent.size() - 5);
  REQUIRE(scan.feed({reinterpret_cast<const uint8_t*>(sent.data()) + 5, sent.size() - 5}));
  CHECK(scan.envelope().session_id == "s1");
  CHECK(scan.envelope().user_id == "alice");
  CHECK(scan.envelope().user_name == "alice");
  CHECK(sent.substr(sent.size() - tail.size()) == tail);
  // Only what the client sent goes back to its window.
  CHECK(f.down.consumed == request_message("s1", "mallory", tail).size());
}

// ---- AdmitStep

TEST_CASE("AdmitStep: rate, then operations; a refusal names the quota") {
  RpcFixture f(load_config("quotas:\n  default: {requests_per_second: 5, max_concurrent_operations: 2}\n"),
               "ExecutePlan");
  f.envelope(request_message("s1", "alice"));
  REQUIRE(IdentityStep(f.state).run() == StepStatus::kContinue);
  AdmitStep step(f.state, f.done);
  CHECK(step.run() == StepStatus::kContinue);
  CHECK(f.quotas.calls == std::vector<std::string>{"rate alice", "operation alice"});
  step.release();
  CHECK(f.quotas.calls.back() == "end operation alice");

  RpcFixture g(load_config("quotas:\n  default: {requests_per_second: 5}\n"));
  g.envelope(request_message("s1", "alice"));
  REQUIRE(IdentityStep(g.state).run() == StepStatus::kContinue);
  g.quotas.next.allowed = false;
  AdmitStep refused(g.state, g.done);
  CHECK(refused.run() == StepStatus::kStop);
  CHECK(g.state.reply.code == grpcwire::StatusCode::kResourceExhausted);
  CHECK(g.state.reply.quota == observe::Metrics::Quota::kRequestsPerSecond);
  CHECK(g.state.reply.message == "quota requests_per_second (5, burst 5) exceeded by user 'alice'");
}

TEST_CASE("AdmitStep: an asynchronous check pauses; its answer resumes; cancel drops the answer") {
  RpcFixture f(load_config("quotas:\n  default: {requests_per_second: 5, max_concurrent_operations: 2}\n"),
               "ExecutePlan");
  f.envelope(request_message("s1", "alice"));
  REQUIRE(IdentityStep(f.state).run() == StepStatus::kContinue);
  f.quotas.async = true;
  AdmitStep step(f.state, f.done);
  CHECK(step.run() == StepStatus::kPaused);
  f.quotas.complete({});  // rate admitted: the operation check starts
  CHECK(f.done.results.empty());
  CHECK(f.quotas.waits.size() == 1);
  step.cancel();
  CHECK(f.quotas.waits.front()->cancelled);
  f.quotas.complete({});
  CHECK(f.done.results.empty());  // never after cancel

  RpcFixture g(load_config("quotas:\n  default: {max_concurrent_operations: 2}\n"), "ExecutePlan");
  g.envelope(request_message("s1", "alice"));
  REQUIRE(IdentityStep(g.state).run() == StepStatus::kContinue);
  g.quotas.async = true;
  AdmitStep op(g.state, g.done);
  CHECK(op.run() == StepStatus::kPaused);
  g.quotas.complete({});
  CHECK(g.done.results == std::vector<StepStatus>{StepStatus::kContinue});
}

TEST_CASE("AdmitStep: a failed quota store is allowed or denied by quotas.on_store_failure") {
  for (bool deny : {false, true}) {
    RpcFixture f(load_config(std::string("quotas:\n  on_store_failure: ") + (deny ? "deny" : "allow") +
                             "\n  default: {requests_per_second: 5}\n"));
    f.envelope(request_message("s1", "alice"));
    REQUIRE(IdentityStep(f.state).run() == StepStatus::kContinue);
    f.quotas.next = {true, true, "connection refused"};
    AdmitStep step(f.state, f.done);
    CHECK(step.run() == (deny ? StepStatus::kStop : StepStatus::kContinue));
    if (deny) CHECK(f.state.reply.code == grpcwire::StatusCode::kUnavailable);
  }
}

TEST_CASE("AdmitStep: CloneSession reserves a session slot, handed to the clone or given back") {
  RpcFixture f(load_config("quotas:\n  default: {max_sessions: 3}\n"), "CloneSession");
  f.envelope(request_message("s1", "alice"));
  REQUIRE(IdentityStep(f.state).run() == StepStatus::kContinue);
  AdmitStep step(f.state, f.done);
  CHECK(step.run() == StepStatus::kContinue);
  CHECK(f.quotas.calls == std::vector<std::string>{"clone alice"});
  step.clone_created("s2");
  step.release();
  CHECK(f.quotas.calls == std::vector<std::string>{"clone alice", "clone created s2"});
}

// ---- RouteStep

TEST_CASE("RouteStep: with a shared store an unknown session is looked up, placed and claimed") {
  RpcFixture f(load_config());
  f.envelope(request_message("s1", "alice"));
  REQUIRE(IdentityStep(f.state).run() == StepStatus::kContinue);
  f.store.async = true;
  RouteStep step(f.state, f.done);
  CHECK(step.run() == StepStatus::kPaused);
  CHECK(f.store.calls == std::vector<std::string>{"lookup s1"});
  f.store.complete();  // nothing stored: placed here, then claimed
  REQUIRE(f.store.calls.size() == 2);
  CHECK(f.store.calls[1].rfind("claim s1 ", 0) == 0);
  CHECK(f.done.results.empty());
  f.store.complete();
  CHECK(f.done.results == std::vector<StepStatus>{StepStatus::kContinue});
  REQUIRE(f.state.route.backend);
  CHECK(f.store.stored["s1"] == f.state.route.backend->name());
  CHECK(f.state.route.session);
}

TEST_CASE("RouteStep: a session another replica placed is adopted on its backend") {
  RpcFixture f(load_config());
  f.envelope(request_message("s1", "alice"));
  REQUIRE(IdentityStep(f.state).run() == StepStatus::kContinue);
  f.store.stored["s1"] = "127.0.0.1:3";
  RouteStep step(f.state, f.done);
  CHECK(step.run() == StepStatus::kContinue);
  CHECK(f.state.route.backend->name() == "127.0.0.1:3");
  CHECK(f.store.calls == std::vector<std::string>{"lookup s1"});
}

TEST_CASE("RouteStep: cancel drops a store answer still on its way") {
  RpcFixture f(load_config());
  f.envelope(request_message("s1", "alice"));
  REQUIRE(IdentityStep(f.state).run() == StepStatus::kContinue);
  f.store.async = true;
  RouteStep step(f.state, f.done);
  CHECK(step.run() == StepStatus::kPaused);
  step.cancel();
  f.store.complete();
  CHECK(f.done.results.empty());
  CHECK(f.store.calls.size() == 1);
}

TEST_CASE("RouteStep: a local store places at once; a new session may move once off an unreachable backend") {
  RpcFixture f(load_config());
  f.store.shared = false;
  f.envelope(request_message("s1", "alice"));
  REQUIRE(IdentityStep(f.state).run() == StepStatus::kContinue);
  RouteStep step(f.state, f.done);
  CHECK(step.run() == StepStatus::kContinue);
  CHECK(f.store.calls.empty());
  auto first = f.state.route.backend;
  REQUIRE(first);
  f.state.route.session->rpcs.fetch_add(1);  // as SessionAdmitStep counts it
  REQUIRE(step.can_move());
  CHECK(step.move_new_session("connection refused"));
  REQUIRE(f.state.route.backend);
  CHECK(f.state.route.backend != first);
  CHECK_FALSE(step.can_move());  // only once
}

TEST_CASE("RouteStep: the registry's session quota refuses a new session as RESOURCE_EXHAUSTED") {
  RpcFixture f(load_config("quotas:\n  default: {max_sessions: 1}\n"));
  f.store.shared = false;
  f.envelope(request_message("s1", "alice"));
  REQUIRE(IdentityStep(f.state).run() == StepStatus::kContinue);
  CHECK(RouteStep(f.state, f.done).run() == StepStatus::kContinue);

  RpcFixture g(load_config("quotas:\n  default: {max_sessions: 1}\n"));
  // The same router: a second session of alice.
  g.state.ctx.router = &f.router;
  g.store.shared = false;
  g.envelope(request_message("s2", "alice"));
  REQUIRE(IdentityStep(g.state).run() == StepStatus::kContinue);
  CHECK(RouteStep(g.state, g.done).run() == StepStatus::kStop);
  CHECK(g.state.reply.quota == observe::Metrics::Quota::kMaxSessions);
}

// ---- SessionAdmitStep

TEST_CASE("SessionAdmitStep: a new session counted elsewhere is checked; refused, it is withdrawn") {
  RpcFixture f(load_config("quotas:\n  default: {max_sessions: 2}\n"));
  f.store.shared = false;
  f.quotas.registry_limits = false;  // counted by the quota service, as with Redis
  f.envelope(request_message("s1", "alice"));
  REQUIRE(IdentityStep(f.state).run() == StepStatus::kContinue);
  REQUIRE(RouteStep(f.state, f.done).run() == StepStatus::kContinue);
  f.quotas.async = true;
  SessionAdmitStep step(f.state, f.done);
  CHECK(step.run() == StepStatus::kPaused);
  CHECK(f.quotas.calls == std::vector<std::string>{"session alice s1"});
  f.quotas.complete({false, false, ""});
  CHECK(f.done.results == std::vector<StepStatus>{StepStatus::kStop});
  CHECK(f.state.reply.quota == observe::Metrics::Quota::kMaxSessions);
  CHECK_FALSE(f.state.route.session);
  CHECK(f.router.sessions().size() == 0);
}

TEST_CASE("SessionAdmitStep: admitted, the RPC counts on its session until release") {
  RpcFixture f(load_config());
  f.store.shared = false;
  f.envelope(request_message("s1", "alice"));
  REQUIRE(IdentityStep(f.state).run() == StepStatus::kContinue);
  REQUIRE(RouteStep(f.state, f.done).run() == StepStatus::kContinue);
  SessionAdmitStep step(f.state, f.done);
  CHECK(step.run() == StepStatus::kContinue);
  auto session = f.state.route.session;
  CHECK(session->in_flight.load() == 1);
  CHECK(session->rpcs.load() == 1);
  CHECK(f.state.backend == f.state.route.backend->name());
  CHECK(f.store.calls == std::vector<std::string>{"refresh s1"});
  step.release(grpcwire::StatusCode::kOk);
  CHECK(session->in_flight.load() == 0);
  CHECK_FALSE(f.state.route.session);
}

TEST_CASE("SessionAdmitStep: AddArtifacts past max_artifact_bytes is refused, as bytes arrive") {
  RpcFixture f(load_config("quotas:\n  default: {max_artifact_bytes: 100}\n"), "AddArtifacts");
  f.store.shared = false;
  f.envelope(request_message("s1", "alice"));
  REQUIRE(IdentityStep(f.state).run() == StepStatus::kContinue);
  REQUIRE(RouteStep(f.state, f.done).run() == StepStatus::kContinue);
  SessionAdmitStep step(f.state, f.done);
  CHECK(step.run() == StepStatus::kContinue);
  CHECK(step.on_request_bytes());
  REQUIRE(f.receive(request_message("s1", "alice", field(3, std::string(100, 'a')))));
  CHECK_FALSE(step.on_request_bytes());
  CHECK(f.state.reply.quota == observe::Metrics::Quota::kMaxArtifactBytes);
  CHECK(f.state.route.session->artifact_bytes.load() == 0);  // a cut-off upload counts nothing
  step.release(std::nullopt);
}

TEST_CASE("SessionAdmitStep: a ReleaseSession that succeeded ends the session in the registry and the stores") {
  RpcFixture f(load_config(), "ReleaseSession");
  f.store.shared = false;
  // The session exists (an earlier RPC created it).
  {
    RpcFixture g(load_config());
    g.state.ctx.router = &f.router;
    g.store.shared = false;
    g.envelope(request_message("s1", "alice"));
    REQUIRE(IdentityStep(g.state).run() == StepStatus::kContinue);
    REQUIRE(RouteStep(g.state, g.done).run() == StepStatus::kContinue);
  }
  f.envelope(request_message("s1", "alice"));
  REQUIRE(IdentityStep(f.state).run() == StepStatus::kContinue);
  REQUIRE(RouteStep(f.state, f.done).run() == StepStatus::kContinue);
  SessionAdmitStep step(f.state, f.done);
  REQUIRE(step.run() == StepStatus::kContinue);
  step.release(grpcwire::StatusCode::kOk);
  CHECK(f.router.sessions().size() == 0);
  CHECK(f.quotas.calls.back() == "remove s1");
  CHECK(f.store.calls.back() == "erase s1");
}
