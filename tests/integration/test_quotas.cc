// Per-user quotas through the real gateway binary: live sessions (with the levels
// default < groups < tenants < users), operations in flight, the request rate under a
// burst of 10,000 calls, artifact bytes per session, message size, sessions made by
// CloneSession, limits changed by a reload, and the same quotas shared by two gateway
// replicas through Redis (and what happens when Redis is down).
//
// Principals come from static bearer tokens (auth.tokens), so quotas apply to verified
// users; every refusal is RESOURCE_EXHAUSTED naming the quota, and is counted in
// sparkgate_quota_rejections_total{quota}.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "spark_view.pb.h"

namespace sparkgate::itest {
namespace {

namespace view = sparkgate::view;

using ::grpc::StatusCode;

std::string token_of(const std::string& user) { return "quota-token-" + user + "-3f9d1c7a"; }

// An auth: section with a token (token_of) per {user, extra entry fields such as
// "groups: [g], tenant: t"}.
std::string auth_yaml(const std::vector<std::pair<std::string, std::string>>& users) {
  std::string y = "auth:\n  tokens:\n";
  for (const auto& [user, extra] : users) {
    y += "    - {sha256: \"sha256:" + sha256_hex(token_of(user)) + "\", user: " + user +
         (extra.empty() ? "" : ", " + extra) + "}\n";
  }
  return y;
}

CallOptions as(const std::string& user) {
  CallOptions o;
  o.op_timeout = 10s;
  o.metadata = {{"authorization", "Bearer " + token_of(user)}};
  return o;
}

CallOptions as(const std::string& user, std::vector<std::pair<std::string, std::string>> more) {
  CallOptions o = as(user);
  for (auto& m : more) o.metadata.push_back(std::move(m));
  return o;
}

std::string req(std::string_view rpc, const std::string& session, const std::string& user) {
  return with_user(request_for(rpc, session), user);
}

CallResult config_call(const std::shared_ptr<::grpc::Channel>& ch, const std::string& user,
                       const std::string& session) {
  return call(ch, "Config", {req("Config", session, user)}, as(user));
}

double quota_rejections(const Gateway& gw, const std::string& quota) {
  return scrape_metric(gw.admin_port(), "sparkgate_quota_rejections_total{quota=\"" + quota + "\"}").value_or(-1);
}

std::string sessions_message(uint32_t max, const std::string& user) {
  return "quota max_sessions (" + std::to_string(max) + ") reached for user '" + user + "': " + std::to_string(max) +
         " live sessions; stop one (spark.stop()) or wait until an idle one expires";
}

// An AddArtifacts message for `session` of `user` carrying `payload` bytes (in an unknown
// field, which the fake ignores), and its size on the wire with the gRPC prefix.
std::string artifact_message(const std::string& session, const std::string& user, size_t payload, uint64_t seed) {
  return req("AddArtifacts", session, user) + pb_len_field(1000, random_bytes(payload, seed));
}
uint64_t framed(const std::vector<std::string>& msgs) {
  uint64_t n = 0;
  for (const auto& m : msgs) n += m.size() + 5;
  return n;
}

// ---- a burst of unary calls ----

struct BurstCounts {
  std::atomic<int> ok{0};
  std::atomic<int> exhausted{0};
  std::atomic<int> other{0};
  std::string first_exhausted_message;  // written by thread 0 only
  std::string other_example;            // written by thread 0 only
};

// `total` unary calls of `rpc` with `request`, spread over `channels` (one thread and
// completion queue each), at most `window` in flight per channel.
void burst(const std::vector<std::shared_ptr<::grpc::Channel>>& channels, const std::string& rpc,
           const std::string& request, const CallOptions& options, int total, int window, BurstCounts& out) {
  struct Pending {
    ::grpc::ClientContext ctx;
    ::grpc::ByteBuffer response;
    ::grpc::Status status;
    std::unique_ptr<::grpc::GenericClientAsyncResponseReader> rpc;
  };
  const std::string method = method_path(rpc);
  std::vector<std::thread> threads;
  const int per = total / static_cast<int>(channels.size());
  for (size_t t = 0; t < channels.size(); ++t) {
    const int mine = t + 1 == channels.size() ? total - per * static_cast<int>(t) : per;
    threads.emplace_back([&, t, mine] {
      ::grpc::GenericStub stub(channels[t]);
      ::grpc::CompletionQueue cq;
      ::grpc::Slice slice(request);
      const ::grpc::ByteBuffer buf(&slice, 1);
      int started = 0, done = 0;
      auto start_one = [&] {
        auto* p = new Pending;
        for (const auto& [k, v] : options.metadata) p->ctx.AddMetadata(k, v);
        p->ctx.set_deadline(std::chrono::system_clock::now() + 60s);
        p->rpc = stub.PrepareUnaryCall(&p->ctx, method, buf, &cq);
        p->rpc->StartCall();
        p->rpc->Finish(&p->response, &p->status, p);
        ++started;
      };
      while (started < mine && started - done < window) start_one();
      while (done < mine) {
        void* tag = nullptr;
        bool ok = false;
        if (!cq.Next(&tag, &ok)) break;
        std::unique_ptr<Pending> p(static_cast<Pending*>(tag));
        ++done;
        if (p->status.ok()) {
          out.ok.fetch_add(1);
        } else if (p->status.error_code() == StatusCode::RESOURCE_EXHAUSTED) {
          out.exhausted.fetch_add(1);
          if (t == 0 && out.first_exhausted_message.empty()) out.first_exhausted_message = p->status.error_message();
        } else {
          out.other.fetch_add(1);
          if (t == 0) out.other_example = std::to_string(p->status.error_code()) + " " + p->status.error_message();
        }
        if (started < mine) start_one();
      }
      cq.Shutdown();
      void* tag = nullptr;
      bool ok = false;
      while (cq.Next(&tag, &ok)) {
      }
    });
  }
  for (auto& th : threads) th.join();
}

}  // namespace

TEST_CASE("quotas: max_sessions at the limit and one past; release frees a slot; user > tenant > group > default") {
  if (direct_mode()) return;
  FakeServer fake;
  GatewayOptions o = one_backend(fake.address());
  o.extra_yaml = auth_yaml({{"alice", "groups: [analysts]"},
                            {"bob", ""},
                            {"carol", "groups: [analysts]"},
                            {"dave", "groups: [analysts], tenant: acme"},
                            {"erin", "groups: [analysts], tenant: acme"}}) +
                 "quotas:\n"
                 "  default: {max_sessions: 1}\n"
                 "  groups: {analysts: {max_sessions: 2}}\n"
                 "  tenants: {acme: {max_sessions: 4}}\n"
                 "  users: {carol: {max_sessions: 3}, erin: {max_sessions: 5}}\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  int refused = 0;

  // alice (analysts): 2.
  REQUIRE_MESSAGE(config_call(ch, "alice", "s1").status.ok(), gw.stderr_text());
  REQUIRE(config_call(ch, "alice", "s2").status.ok());
  auto third = config_call(ch, "alice", "s3");
  CHECK(third.status.error_code() == StatusCode::RESOURCE_EXHAUSTED);
  CHECK(third.status.error_message() == sessions_message(2, "alice"));
  ++refused;
  // Existing sessions keep working, with any RPC.
  CHECK(config_call(ch, "alice", "s1").status.ok());
  CHECK(call(ch, "ExecutePlan", {req("ExecutePlan", "s2", "alice")}, as("alice")).status.ok());
  CHECK(call(ch, "AnalyzePlan", {req("AnalyzePlan", "s1", "alice")}, as("alice")).status.ok());
  // Releasing one admits a new one, and only one.
  auto rel = call(ch, "ReleaseSession", {req("ReleaseSession", "s1", "alice")}, as("alice"));
  REQUIRE_MESSAGE(rel.status.ok(), rel.describe());
  CHECK(config_call(ch, "alice", "s3").status.ok());
  auto again = config_call(ch, "alice", "s1");
  CHECK(again.status.error_code() == StatusCode::RESOURCE_EXHAUSTED);
  CHECK(again.status.error_message() == sessions_message(2, "alice"));
  ++refused;

  // The other levels: bob default 1, carol user 3 over group 2, dave tenant 4 over group
  // 2, erin user 5 over tenant 4.
  for (const auto& [user, max] : std::vector<std::pair<std::string, uint32_t>>{
           {"bob", 1}, {"carol", 3}, {"dave", 4}, {"erin", 5}}) {
    CAPTURE(user);
    for (uint32_t i = 0; i < max; ++i) {
      auto r = config_call(ch, user, "l" + std::to_string(i));
      CHECK_MESSAGE(r.status.ok(), r.describe());
    }
    auto over = config_call(ch, user, "l" + std::to_string(max));
    CHECK(over.status.error_code() == StatusCode::RESOURCE_EXHAUSTED);
    CHECK(over.status.error_message() == sessions_message(max, user));
    ++refused;
  }
  // One user's sessions do not count for another.
  CHECK(config_call(ch, "alice", "s2").status.ok());
  CHECK(quota_rejections(gw, "max_sessions") == refused);
  CHECK(quota_rejections(gw, "requests_per_second") == 0);
  CHECK(gw.running());
}

TEST_CASE("quotas: max_concurrent_operations counts ExecutePlan streams in flight per user") {
  if (direct_mode()) return;
  FakeServer fake;
  GatewayOptions o = one_backend(fake.address());
  o.extra_yaml = auth_yaml({{"alice", ""}, {"bob", ""}}) + "quotas:\n  default: {max_concurrent_operations: 2}\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  const std::string plan = req("ExecutePlan", "ops", "alice");
  const std::string busy = "quota max_concurrent_operations (2) reached for user 'alice': wait for a running query "
                           "to finish";
  // A stream held open: the fake sends one response at once (so the gateway has admitted
  // it when hold() returns), then stalls `stall_ms` before the second and last.
  auto hold = [&](int stall_ms) {
    auto s = std::make_unique<StreamingCall>(
        ch, method_path("ExecutePlan"),
        as("alice",
           {{"x-fake-messages", "2"}, {"x-fake-stall-after", "1"}, {"x-fake-stall-ms", std::to_string(stall_ms)}}));
    REQUIRE(s->write(plan));
    REQUIRE(s->writes_done());
    REQUIRE(s->read());
    return s;
  };
  auto quick_op = [&](const std::string& user) {
    return call(ch, "ExecutePlan", {req("ExecutePlan", "ops", user)}, as(user));
  };

  auto short_one = hold(1000);
  auto long_one = hold(8000);
  auto refused = quick_op("alice");
  CHECK(refused.status.error_code() == StatusCode::RESOURCE_EXHAUSTED);
  CHECK(refused.status.error_message() == busy);
  CHECK(refused.responses.empty());
  // ReattachExecute is an operation too.
  auto reattach = call(ch, "ReattachExecute", {req("ReattachExecute", "ops", "alice")}, as("alice"));
  CHECK(reattach.status.error_code() == StatusCode::RESOURCE_EXHAUSTED);
  CHECK(reattach.status.error_message() == busy);
  // Other users and non-operation RPCs are not affected.
  CHECK(quick_op("bob").status.ok());
  CHECK(config_call(ch, "alice", "ops").status.ok());

  // The short one finishes: one slot is free again.
  while (short_one->read()) {
  }
  auto done = short_one->finish();
  REQUIRE_MESSAGE(done.status.ok(), done.describe());
  auto admitted = quick_op("alice");
  CHECK_MESSAGE(admitted.status.ok(), admitted.describe());
  auto third_hold = hold(8000);
  auto refused_again = quick_op("alice");
  CHECK(refused_again.status.error_code() == StatusCode::RESOURCE_EXHAUSTED);
  CHECK(refused_again.status.error_message() == busy);

  // A client that cancels gives its slot back.
  long_one->cancel();
  long_one->finish();
  third_hold->cancel();
  third_hold->finish();
  REQUIRE(wait_until([&] { return quick_op("alice").status.ok(); }, 3s));
  CHECK(quota_rejections(gw, "max_concurrent_operations") == 3);
  CHECK(gw.running());
}

TEST_CASE("quotas: requests_per_second under a burst of 10,000 calls admits exactly the burst") {
  if (direct_mode()) return;
  FakeServer fake;
  GatewayOptions o = one_backend(fake.address());
  o.workers = 2;
  o.extra_yaml = auth_yaml({{"alice", ""}, {"bob", ""}}) +
                 "quotas:\n  default: {requests_per_second: 1, burst: 100}\n";
  Gateway gw(o);
  std::vector<std::shared_ptr<::grpc::Channel>> channels;
  for (int i = 0; i < 4; ++i) channels.push_back(make_channel(gw.address()));
  // Connect every channel first, so that the clock below times the burst only.
  for (auto& c : channels) REQUIRE(c->WaitForConnected(std::chrono::system_clock::now() + 5s));

  BurstCounts counts;
  const auto start = std::chrono::steady_clock::now();
  burst(channels, "Config", req("Config", "rate", "alice"), as("alice"), 10000, 200, counts);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // The bucket starts full (100) and refills 1 token per second.
  const int allowance = static_cast<int>(std::ceil(elapsed)) + 1;
  MESSAGE("rate burst: " << counts.ok.load() << " OK, " << counts.exhausted.load() << " refused, "
                         << counts.other.load() << " other, in " << elapsed << " s");
  CHECK(counts.ok + counts.exhausted + counts.other == 10000);
  CHECK_MESSAGE(counts.other == 0, counts.other_example);
  CHECK(counts.ok >= 100);
  CHECK(counts.ok <= 100 + allowance);
  CHECK(counts.first_exhausted_message == "quota requests_per_second (1, burst 100) exceeded by user 'alice'");
  CHECK(quota_rejections(gw, "requests_per_second") == counts.exhausted);

  // The gateway is alive and serves another user (whose bucket is full) at once.
  REQUIRE(gw.running());
  auto ch = make_channel(gw.address());
  for (int i = 0; i < 10; ++i) CHECK(config_call(ch, "bob", "rate-bob").status.ok());
  auto still = config_call(ch, "alice", "rate");
  if (!still.status.ok()) CHECK(still.status.error_code() == StatusCode::RESOURCE_EXHAUSTED);
}

TEST_CASE("quotas: max_artifact_bytes sums AddArtifacts bytes per session") {
  if (direct_mode()) return;
  FakeServer fake;
  GatewayOptions o = one_backend(fake.address());
  o.extra_yaml = auth_yaml({{"alice", ""}}) + "quotas:\n  default: {max_artifact_bytes: 100KiB}\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  const uint64_t limit = 100 * 1024;

  // 2 × 20 KiB, then 2 × 20 KiB more in the same session: under 100 KiB, intact.
  const std::vector<std::string> first{artifact_message("art-1", "alice", 20000, 1),
                                       artifact_message("art-1", "alice", 20000, 2)};
  const std::vector<std::string> second{artifact_message("art-1", "alice", 20000, 3),
                                        artifact_message("art-1", "alice", 20000, 4)};
  for (const auto* msgs : {&first, &second}) {
    auto r = call(ch, "AddArtifacts", *msgs, as("alice"));
    REQUIRE_MESSAGE(r.status.ok(), r.describe());
    CHECK(r.trailer("x-fake-request-sha256") == sha256_hex((*msgs)[0] + (*msgs)[1]));
  }
  const uint64_t so_far = framed(first) + framed(second);
  REQUIRE(so_far < limit);
  // 30 KiB more crosses the session's total.
  const std::vector<std::string> third{artifact_message("art-1", "alice", 30000, 5)};
  auto over = call(ch, "AddArtifacts", third, as("alice"));
  CHECK(over.status.error_code() == StatusCode::RESOURCE_EXHAUSTED);
  const std::string prefix =
      "quota max_artifact_bytes (102400) exceeded by session art-1 of user 'alice': its AddArtifacts uploads would "
      "reach ";
  const std::string suffix = " bytes";
  const std::string msg = over.status.error_message();
  REQUIRE_MESSAGE(msg.rfind(prefix, 0) == 0, msg);
  REQUIRE(msg.size() > prefix.size() + suffix.size());
  CHECK(msg.substr(msg.size() - suffix.size()) == suffix);
  const uint64_t counted = std::stoull(msg.substr(prefix.size()));
  CHECK(counted > limit);
  CHECK(counted <= so_far + framed(third));

  // A refused call was cut off (Spark discards what it staged), so its bytes do not
  // count: a small upload still fits.
  auto after = call(ch, "AddArtifacts", {artifact_message("art-1", "alice", 100, 8)}, as("alice"));
  CHECK_MESSAGE(after.status.ok(), after.describe());
  // Another session has its own total.
  auto fresh = call(ch, "AddArtifacts",
                    {artifact_message("art-2", "alice", 40000, 6), artifact_message("art-2", "alice", 40000, 7)},
                    as("alice"));
  CHECK_MESSAGE(fresh.status.ok(), fresh.describe());
  // One upload larger than the quota in a single call is cut off, and the backend never
  // answers it.
  const auto before = fake_stats(fake);
  std::vector<std::string> big;
  for (int i = 0; i < 4; ++i) big.push_back(artifact_message("art-3", "alice", 40000, 10 + i));
  auto cut = call(ch, "AddArtifacts", big, as("alice"));
  CHECK(cut.status.error_code() == StatusCode::RESOURCE_EXHAUSTED);
  CHECK(cut.status.error_message().rfind(
            "quota max_artifact_bytes (102400) exceeded by session art-3 of user 'alice': ", 0) == 0);
  CHECK(fake_stats(fake).sent_messages == before.sent_messages);
  CHECK(quota_rejections(gw, "max_artifact_bytes") == 2);
  CHECK(gw.running());
}

TEST_CASE("quotas: max_message_bytes below limits.max_message_bytes refuses larger messages naming the quota") {
  if (direct_mode()) return;
  FakeServer fake;
  GatewayOptions o = one_backend(fake.address());
  o.max_message_bytes = 8 << 20;
  o.extra_yaml = auth_yaml({{"alice", ""}, {"bob", ""}}) +
                 "quotas:\n  default: {max_message_bytes: 64KiB}\n  users: {bob: {max_message_bytes: 1MiB}}\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());

  const std::string big = with_user(execute_plan_request("msg-1", "op-1", 100 * 1024), "alice");
  auto r = call(ch, "ExecutePlan", {big}, as("alice"));
  CHECK(r.status.error_code() == StatusCode::RESOURCE_EXHAUSTED);
  CHECK(r.status.error_message() == "request message of " + std::to_string(big.size()) +
                                        " bytes exceeds quota max_message_bytes (65536) of user 'alice'");
  const std::string small = with_user(execute_plan_request("msg-1", "op-2", 30 * 1024), "alice");
  auto ok = call(ch, "ExecutePlan", {small}, as("alice"));
  CHECK_MESSAGE(ok.status.ok(), ok.describe());
  CHECK(ok.trailer("x-fake-request-sha256") == sha256_hex(small));
  // bob's own quota is larger.
  auto bob = call(ch, "ExecutePlan", {with_user(big, "bob")}, as("bob"));
  CHECK_MESSAGE(bob.status.ok(), bob.describe());
  // Responses too: a 100 KB batch for alice.
  auto resp = call(ch, "ExecutePlan", {small}, as("alice", {{"x-fake-message-bytes", "100000"}}));
  CHECK(resp.status.error_code() == StatusCode::RESOURCE_EXHAUSTED);
  const std::string m = resp.status.error_message();
  CHECK_MESSAGE(m.rfind("response message of ", 0) == 0, m);
  CHECK(m.find(" bytes from backend " + fake.address() + " exceeds quota max_message_bytes (65536) of user 'alice'") !=
        std::string::npos);
  // bob's larger quota is a limit too (still below limits.max_message_bytes, 8 MiB).
  const std::string huge = with_user(execute_plan_request("msg-2", "op-3", 2 << 20), "bob");
  auto bob_big = call(ch, "ExecutePlan", {huge}, as("bob"));
  CHECK(bob_big.status.error_code() == StatusCode::RESOURCE_EXHAUSTED);
  CHECK(bob_big.status.error_message() == "request message of " + std::to_string(huge.size()) +
                                              " bytes exceeds quota max_message_bytes (1048576) of user 'bob'");
  CHECK(quota_rejections(gw, "max_message_bytes") == 3);
  CHECK(gw.running());
}

TEST_CASE("quotas: two replicas share session and rate quotas through Redis; Redis down: allow admits, deny refuses") {
  if (direct_mode()) return;
  auto redis = start_redis();
  FakeServer fake;
  const std::string common =
      auth_yaml({{"alice", ""}, {"rita", ""}, {"olga", ""}}) +
      "quotas:\n  default: {max_sessions: 2}\n"
      "  users: {rita: {requests_per_second: 1, burst: 10}, olga: {max_concurrent_operations: 1}}\n"
      "  store: redis\n  redis: {address: " + redis->address() + ", key_prefix: \"itest-quotas:\", timeout: 500ms}\n";
  GatewayOptions oa = one_backend(fake.address());
  oa.extra_yaml = common + "  on_store_failure: allow\n";
  GatewayOptions oc = one_backend(fake.address());
  oc.extra_yaml = common + "  on_store_failure: deny\n";
  Gateway a(oa), b(oa), c(oc);
  auto ca = make_channel(a.address());
  auto cb = make_channel(b.address());
  auto cc = make_channel(c.address());
  const std::string across =
      "quota max_sessions (2) reached for user 'alice' across the gateway replicas; stop one (spark.stop()) or wait "
      "until an idle one expires";

  // Sessions: one on A, one on B; a third is refused on either.
  REQUIRE_MESSAGE(config_call(ca, "alice", "r1").status.ok(), a.stderr_text());
  REQUIRE_MESSAGE(config_call(cb, "alice", "r2").status.ok(), b.stderr_text());
  for (auto* ch : {&ca, &cb}) {
    auto over = config_call(*ch, "alice", "r3");
    CHECK(over.status.error_code() == StatusCode::RESOURCE_EXHAUSTED);
    CHECK(over.status.error_message() == across);
  }
  CHECK(config_call(ca, "alice", "r1").status.ok());
  CHECK(config_call(cb, "alice", "r2").status.ok());
  // Released on A, the slot is free on B.
  REQUIRE(call(ca, "ReleaseSession", {req("ReleaseSession", "r1", "alice")}, as("alice")).status.ok());
  CHECK(config_call(cb, "alice", "r3").status.ok());
  CHECK(quota_rejections(a, "max_sessions") == 1);
  CHECK(quota_rejections(b, "max_sessions") == 1);

  // Rate: one bucket of 10 for rita across A and B.
  int ok = 0, refused = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i) {
    auto r = config_call(i % 2 ? cb : ca, "rita", "rate");
    if (r.status.ok()) {
      ++ok;
    } else {
      CHECK(r.status.error_code() == StatusCode::RESOURCE_EXHAUSTED);
      CHECK(r.status.error_message() == "quota requests_per_second (1, burst 10) exceeded by user 'rita'");
      ++refused;
    }
  }
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(ok >= 10);
  CHECK(ok <= 10 + static_cast<int>(std::ceil(elapsed)) + 1);
  CHECK(ok + refused == 20);
  CHECK(quota_rejections(a, "requests_per_second") + quota_rejections(b, "requests_per_second") == refused);

  // Operations in flight: olga may run one at a time in the whole fleet.
  {
    StreamingCall held(ca, method_path("ExecutePlan"),
                       as("olga",
                          {{"x-fake-messages", "2"}, {"x-fake-stall-after", "1"}, {"x-fake-stall-ms", "1500"}}));
    REQUIRE(held.write(req("ExecutePlan", "ops", "olga")));
    REQUIRE(held.writes_done());
    // The first response: A admitted the operation (its lease is in Redis).
    REQUIRE_MESSAGE(held.read(), a.stderr_text());
    auto refused_op = call(cb, "ExecutePlan", {req("ExecutePlan", "ops-b", "olga")}, as("olga"));
    CHECK(refused_op.status.error_code() == StatusCode::RESOURCE_EXHAUSTED);
    CHECK(refused_op.status.error_message() ==
          "quota max_concurrent_operations (1) reached for user 'olga': wait for a running query to finish");
    while (held.read()) {
    }
    REQUIRE(held.finish().status.ok());
    // A gives the lease back as the stream closes, in a Redis command of its own that may
    // still be on its way when the client has the trailers.
    CallResult admitted_op;
    CHECK_MESSAGE(wait_until(
                      [&] {
                        admitted_op = call(cb, "ExecutePlan", {req("ExecutePlan", "ops-b", "olga")}, as("olga"));
                        return admitted_op.status.ok();
                      },
                      1s),
                  admitted_op.describe());
    CHECK(quota_rejections(b, "max_concurrent_operations") >= 1);
  }

  // Redis dies.
  redis->kill();
  // allow: new sessions and rate-limited calls are admitted, with a warning.
  auto admitted = config_call(ca, "alice", "r9");
  CHECK_MESSAGE(admitted.status.ok(), admitted.describe());
  CHECK(config_call(cb, "rita", "rate").status.ok());
  CHECK(wait_until([&] { return a.stderr_text().find("quota store unavailable") != std::string::npos; }, 2s));
  // deny: refused with UNAVAILABLE, for a new session and for a rate-limited user.
  for (const auto& [user, session] : std::vector<std::pair<std::string, std::string>>{{"alice", "r10"},
                                                                                       {"rita", "rate"}}) {
    CAPTURE(user);
    auto r = config_call(cc, user, session);
    CHECK(r.status.error_code() == StatusCode::UNAVAILABLE);
    const std::string m = r.status.error_message();
    CHECK_MESSAGE(m.rfind("sparkgate cannot check quotas: the quota store is unavailable (", 0) == 0, m);
    CHECK(m.size() > 40);
    CHECK(m.find(") and quotas.on_store_failure is deny") != std::string::npos);
  }
  CHECK(a.running());
  CHECK(b.running());
  CHECK(c.running());
}

TEST_CASE("quotas: CloneSession creates a session and counts against max_sessions") {
  if (direct_mode()) return;
  FakeServer fake;
  GatewayOptions o = one_backend(fake.address());
  o.extra_yaml = auth_yaml({{"alice", ""}}) + "quotas:\n  default: {max_sessions: 2}\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  auto clone = [&](const std::string& from, const std::string& to) {
    view::CloneSessionRequest m;
    m.set_session_id(from);
    m.mutable_user_context()->set_user_id("alice");
    m.set_new_session_id(to);
    return call(ch, "CloneSession", {m.SerializeAsString()}, as("alice"));
  };
  REQUIRE(config_call(ch, "alice", "c1").status.ok());
  // The second session, made by cloning the first: admitted, and usable.
  auto first = clone("c1", "c1-clone");
  REQUIRE_MESSAGE(first.status.ok(), first.describe());
  CHECK(config_call(ch, "alice", "c1-clone").status.ok());
  // Two live sessions: neither a new one nor another clone may be made.
  auto fresh = config_call(ch, "alice", "c2");
  CHECK(fresh.status.error_code() == StatusCode::RESOURCE_EXHAUSTED);
  CHECK(fresh.status.error_message() == sessions_message(2, "alice"));
  auto second = clone("c1", "c1-clone-2");
  CHECK_MESSAGE(second.status.error_code() == StatusCode::RESOURCE_EXHAUSTED, second.describe());
  CHECK(second.status.error_message().rfind("quota max_sessions (2) reached for user 'alice'", 0) == 0);
  auto after = config_call(ch, "alice", "c3");
  CHECK(after.status.error_code() == StatusCode::RESOURCE_EXHAUSTED);
  CHECK(after.status.error_message() == sessions_message(2, "alice"));
}

TEST_CASE("quotas: a reload changes the limits at once") {
  if (direct_mode()) return;
  FakeServer fake;
  GatewayOptions o = one_backend(fake.address());
  const std::string auth = auth_yaml({{"alice", ""}});
  o.extra_yaml = auth + "quotas:\n  default: {max_sessions: 1}\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  REQUIRE(config_call(ch, "alice", "q1").status.ok());
  auto over = config_call(ch, "alice", "q2");
  CHECK(over.status.error_message() == sessions_message(1, "alice"));
  gw.rewrite_config("", auth + "quotas:\n  default: {max_sessions: 3}\n  users: {alice: {max_sessions: 2}}\n");
  REQUIRE(wait_until(
      [&] { return scrape_metric(gw.admin_port(), "sparkgate_config_reloads_total{result=\"success\"}") == 1.0; },
      5s));
  CHECK(config_call(ch, "alice", "q2").status.ok());
  auto now_over = config_call(ch, "alice", "q3");
  CHECK(now_over.status.error_code() == StatusCode::RESOURCE_EXHAUSTED);
  CHECK(now_over.status.error_message() == sessions_message(2, "alice"));
}

}  // namespace sparkgate::itest
