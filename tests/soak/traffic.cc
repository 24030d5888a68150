#include "traffic.h"

#include <functional>
#include <optional>
#include <random>
#include <sstream>

#include "harness.h"

namespace sparkgate::soak {

using namespace std::chrono_literals;
using itest::CallOptions;
using itest::CallResult;

namespace {

// Any single operation of a call that takes longer than this counts as hung.
constexpr auto kOpTimeout = 60s;
// The long-lived session of a client is released and replaced after this long: longer
// than a backend restart and its return to health, so that a session on a restarted
// backend is used again after it and the gateway's "was lost" NOT_FOUND path runs.
constexpr auto kLongSessionLifetime = 20s;
constexpr int kUploadMessages = 8;
constexpr size_t kUploadChunkBytes = 64 * 1024;

// Relative weights of the actions a client picks at random (kAbandon is timed instead).
constexpr std::array<std::pair<Action, int>, 10> kWeights{{
    {Action::kChurn, 20},
    {Action::kUnary, 30},
    {Action::kStream, 8},
    {Action::kReattach, 6},
    {Action::kCancel, 8},
    {Action::kDeadline, 3},
    {Action::kUpload, 6},
    {Action::kBackendError, 4},
    {Action::kBackendReset, 3},
    {Action::kReconnect, 2},
}};

// What a call asks for: OK, or one of the listed errors (the code, and a part of the
// message if set).
struct Outcome {
  ::grpc::StatusCode code;
  std::string message_part;
};
struct Expect {
  bool ok = true;  // OK is right (for a cancel: OK when the cancel lost the race to the end)
  std::vector<Outcome> errors;
  // For an outcome as expected: "" if the answer is right, else what is wrong with it.
  std::function<std::string(const CallResult&)> check;
};

Expect expect_ok() { return {}; }

Expect expect_error(std::vector<Outcome> errors) {
  Expect e;
  e.ok = false;
  e.errors = std::move(errors);
  return e;
}

std::function<std::string(const CallResult&)> responses_are(size_t n) {
  return [n](const CallResult& r) {
    return r.responses.size() == n ? std::string()
                                   : "got " + std::to_string(r.responses.size()) + " of " + std::to_string(n) +
                                         " responses";
  };
}

Expect expect_responses(size_t n) {
  Expect e;
  e.check = responses_are(n);
  return e;
}

struct SessionRef {
  std::string id;
  std::string user;
  std::optional<size_t> backend;  // learned from its first answer
  std::string ssid;               // the backend incarnation that answered
  Clock::time_point learned_at;   // when `ssid` was learned
  bool gone = false;              // the gateway answered NOT_FOUND: the session ended
  Clock::time_point opened;       // when its first call started
};

bool restart_code(::grpc::StatusCode c) {
  return c == ::grpc::StatusCode::UNAVAILABLE || c == ::grpc::StatusCode::NOT_FOUND ||
         c == ::grpc::StatusCode::CANCELLED;
}

class Client {
 public:
  Client(int index, const TrafficOptions& options, const Fleet& fleet, Tally& tally,
         const std::atomic<bool>& stopping)
      : index_(index),
        options_(options),
        fleet_(fleet),
        tally_(tally),
        stopping_(stopping),
        rng_(options.seed * 7919 + static_cast<uint64_t>(index)),
        user_("soak-user-" + std::to_string(index % 3)) {
    for (int i = 0; i < kUploadMessages; ++i) {
      upload_chunks_.push_back(itest::random_bytes(kUploadChunkBytes, options.seed + 1000 * index + i));
    }
  }

  void run() {
    channel_ = itest::make_channel(options_.gateway_address);
    int total_weight = 0;
    for (const auto& [a, w] : kWeights) total_weight += w;
    auto next_abandon = Clock::now() + options_.abandon_every * (index_ + 1) / (options_.clients + 1);
    while (!stopping_.load()) {
      Action action = Action::kAbandon;
      if (Clock::now() < next_abandon) {
        int pick = static_cast<int>(rng_() % static_cast<uint64_t>(total_weight));
        for (const auto& [a, w] : kWeights) {
          if (pick < w) {
            action = a;
            break;
          }
          pick -= w;
        }
      } else {
        next_abandon += options_.abandon_every;
      }
      tally_.add_action(action);
      run_action(action);
    }
    if (long_ && !long_->gone) release(Action::kUnary, *long_);
    channel_.reset();
  }

 private:
  void run_action(Action a) {
    switch (a) {
      case Action::kChurn: churn(); break;
      case Action::kUnary: unary(); break;
      case Action::kStream: stream(); break;
      case Action::kReattach: reattach(); break;
      case Action::kCancel: cancel(); break;
      case Action::kDeadline: deadline(); break;
      case Action::kUpload: upload(); break;
      case Action::kBackendError: backend_error(); break;
      case Action::kBackendReset: backend_reset(); break;
      case Action::kAbandon: abandon(); break;
      case Action::kReconnect: channel_ = itest::make_channel(options_.gateway_address); break;
      case Action::kCount: break;
    }
  }

  SessionRef new_session() {
    SessionRef s;
    s.id = "soak-" + std::to_string(options_.seed) + "-" + std::to_string(index_) + "-" + std::to_string(++sessions_);
    s.user = user_;
    return s;
  }

  // The long-lived session, replaced when the gateway ended it or it was used enough;
  // null if it could not be opened now. It is opened with Config, as PySpark opens one:
  // the gateway registers (pins) a session only on an RPC that creates one, and routes
  // the others (FetchErrorDetails, Interrupt, ...) for an unknown session by rendezvous
  // hashing without pinning (routing/router.cc), so a first such call may reach another
  // backend than the one the session is placed on later.
  SessionRef* long_session() {
    if (long_ && !long_->gone && Clock::now() - long_->opened >= kLongSessionLifetime) {
      release(Action::kUnary, *long_);
    }
    if (!long_ || long_->gone) {
      long_ = new_session();
      long_->opened = Clock::now();
    }
    if (long_->ssid.empty() && !step(Action::kUnary, *long_, "Config", {request("Config", *long_)})) {
      long_->gone = true;  // try a new one next time
      return nullptr;
    }
    return &*long_;
  }

  std::string request(std::string_view rpc, const SessionRef& s) {
    return itest::with_user(itest::request_for(rpc, s.id), s.user);
  }

  static CallOptions with_metadata(std::vector<std::pair<std::string, std::string>> md) {
    CallOptions o;
    o.metadata = std::move(md);
    return o;
  }

  // One RPC through the gateway, judged and counted. True if it ended OK.
  bool step(Action action, SessionRef& s, std::string_view rpc, const std::vector<std::string>& requests,
            CallOptions options = {}, const Expect& expect = expect_ok()) {
    options.op_timeout = kOpTimeout;
    const auto start = Clock::now();
    CallResult r = itest::call(channel_, rpc, requests, options);
    judge(action, s, rpc, r, expect, start, Clock::now());
    return r.status.ok();
  }

  void release(Action action, SessionRef& s) {
    step(action, s, "ReleaseSession", {request("ReleaseSession", s)});
    s.gone = true;
  }

  void judge(Action action, SessionRef& s, std::string_view rpc, const CallResult& r, const Expect& expect,
             Clock::time_point start, Clock::time_point end) {
    std::string why;
    Verdict v = classify(s, r, expect, start, end, why);
    if (v == Verdict::kOk || v == Verdict::kScripted) {
      if (expect.check) why = expect.check(r);
      if (why.empty()) why = follow_backend(s, rpc, r, start, end);
      if (!why.empty()) v = Verdict::kUnexpected;
    }
    if (r.status.error_code() == ::grpc::StatusCode::NOT_FOUND) s.gone = true;
    tally_.add_rpc(r.status.error_code(), v);
    if (v == Verdict::kUnexpected) {
      std::ostringstream d;
      d << "t=" << std::chrono::duration_cast<std::chrono::milliseconds>(start - options_.epoch).count() / 1000.0
        << "s client " << index_ << " " << action_name(action) << " " << rpc << " session " << s.id;
      if (s.backend) d << " (backend " << fleet_.address(*s.backend) << ")";
      d << ": " << r.describe() << ": " << why;
      tally_.add_unexpected(d.str());
    }
  }

  // The verdict on the status alone (an OK answer is checked further by judge).
  Verdict classify(const SessionRef& s, const CallResult& r, const Expect& expect, Clock::time_point start,
                   Clock::time_point end, std::string& why) const {
    const auto code = r.status.error_code();
    const std::string& message = r.status.error_message();
    if (r.hung) {
      why = "hung: an operation took longer than " + std::to_string(kOpTimeout.count()) + " s";
      return Verdict::kUnexpected;
    }
    if (code == ::grpc::StatusCode::OK && expect.ok) return Verdict::kOk;
    for (const auto& e : expect.errors) {
      if (code == e.code && message.find(e.message_part) != std::string::npos) return Verdict::kScripted;
    }
    if (restart_code(code)) {
      // The backend the error is about: the one the gateway names, else the session's.
      std::optional<size_t> b = fleet_.backend_named_in(message);
      if (!b) b = s.backend;
      if (b) {
        // While that backend is down or coming back, its sessions' calls may fail:
        // UNAVAILABLE (unreachable, closed the connection, reset, unhealthy), NOT_FOUND
        // (lost), CANCELLED (the dying fake cancelled the call and its status was relayed).
        if (fleet_.restart_overlaps(*b, start, end, options_.settle)) return Verdict::kRestart;
        // A session the gateway found lost stays lost; its next call may come much later.
        if (code == ::grpc::StatusCode::NOT_FOUND && message.find("was lost") != std::string::npos &&
            fleet_.restarted_before(*b, end)) {
          return Verdict::kRestart;
        }
        why = "an error about backend " + fleet_.address(*b) + " outside its restarts";
        return Verdict::kUnexpected;
      }
      // A call whose session's backend is unknown (its first) and whose error names no
      // backend (e.g. a stream refused after the backend's GOAWAY): excused only while
      // some backend restarts, and never NOT_FOUND (the gateway always names the backend).
      if (code != ::grpc::StatusCode::NOT_FOUND && fleet_.any_restart_overlaps(start, end, options_.settle)) {
        return Verdict::kRestart;
      }
    }
    std::vector<std::string> wanted;
    if (expect.ok) wanted.push_back("OK");
    for (const auto& e : expect.errors) {
      wanted.push_back(code_name(static_cast<size_t>(e.code)) +
                       (e.message_part.empty() ? std::string() : " '" + e.message_part + "'"));
    }
    why = "expected";
    for (size_t i = 0; i < wanted.size(); ++i) why += (i == 0 ? " " : " or ") + wanted[i];
    return Verdict::kUnexpected;
  }

  // Learns which backend holds `s` from an OK answer; "" if the answer agrees with what
  // is known, else what is wrong. The first call that reaches a backend restarted behind
  // the gateway's back gets an answer from the new process, so a session may move to a
  // new incarnation of its backend, and only while that backend restarts.
  std::string follow_backend(SessionRef& s, std::string_view rpc, const CallResult& r, Clock::time_point start,
                             Clock::time_point end) {
    if (r.responses.empty()) return "";
    const std::string ssid = server_side_session_id(rpc, r.responses.front());
    if (ssid.empty() || ssid == s.ssid) return "";
    const std::optional<size_t> b = fleet_.backend_of_ssid(ssid);
    if (s.ssid.empty()) {
      if (!b) return "answered by an unknown backend (server-side session id " + ssid + ")";
      s.ssid = ssid;
      s.backend = b;
      s.learned_at = start;
      return "";
    }
    if ((!b || b == s.backend) && fleet_.restart_overlaps(*s.backend, s.learned_at, end, options_.settle)) {
      tally_.add_restart_move();
      s.ssid = ssid;
      s.learned_at = start;
      return "";
    }
    return "the session moved from backend " + fleet_.address(*s.backend) + " to " +
           (b ? fleet_.address(*b) : "an unknown backend") + " (server-side session id " + ssid + ")";
  }

  void churn() {
    SessionRef s = new_session();
    bool ok = step(Action::kChurn, s, "Config", {request("Config", s)}) &&
              step(Action::kChurn, s, "AnalyzePlan", {request("AnalyzePlan", s)}) &&
              step(Action::kChurn, s, "ExecutePlan", {request("ExecutePlan", s)},
                   with_metadata({{"x-fake-messages", "8"}, {"x-fake-message-bytes", "4096"}}), expect_responses(8));
    if (ok && sessions_ % 4 == 0) {
      // The clone is a session of its own, on the same backend, released on its own.
      if (step(Action::kChurn, s, "CloneSession", {request("CloneSession", s)})) {
        SessionRef clone{"clone-of-" + s.id, s.user, s.backend, "", {}, false, Clock::now()};
        release(Action::kChurn, clone);
      }
    }
    // Released even after a failure, as spark.stop() would.
    if (!s.gone) release(Action::kChurn, s);
  }

  void unary() {
    static constexpr std::array<std::string_view, 5> kRpcs{"Config", "AnalyzePlan", "GetStatus", "ArtifactStatus",
                                                           "FetchErrorDetails"};
    SessionRef* session = long_session();
    if (session == nullptr) return;
    SessionRef& s = *session;
    const auto rpc = kRpcs[rng_() % kRpcs.size()];
    step(Action::kUnary, s, rpc, {request(rpc, s)});
  }

  void stream() {
    SessionRef* session = long_session();
    if (session == nullptr) return;
    SessionRef& s = *session;
    Expect e = expect_responses(32);
    step(Action::kStream, s, "ExecutePlan", {request("ExecutePlan", s)},
         with_metadata({{"x-fake-messages", "32"}, {"x-fake-message-bytes", "65536"}}), e);
  }

  void reattach() {
    SessionRef* session = long_session();
    if (session == nullptr) return;
    SessionRef& s = *session;
    const std::string op = "op-" + s.id + "-" + std::to_string(++operations_);
    auto execute = itest::with_user(itest::execute_plan_request(s.id, op), s.user);
    auto reattach = itest::with_user(itest::reattach_request(s.id, op), s.user);
    step(Action::kReattach, s, "ExecutePlan", {execute}, with_metadata({{"x-fake-messages", "4"}}),
         expect_responses(4)) &&
        step(Action::kReattach, s, "ReattachExecute", {reattach}, with_metadata({{"x-fake-messages", "2"}}),
             expect_responses(2)) &&
        step(Action::kReattach, s, "ReleaseExecute", {request("ReleaseExecute", s)}) &&
        step(Action::kReattach, s, "Interrupt", {request("Interrupt", s)});
  }

  void cancel() {
    SessionRef* session = long_session();
    if (session == nullptr) return;
    SessionRef& s = *session;
    CallOptions o = with_metadata({{"x-fake-messages", "200"}, {"x-fake-message-bytes", "32768"}});
    o.op_timeout = kOpTimeout;
    const auto start = Clock::now();
    CallResult r;
    {
      itest::StreamingCall c(channel_, itest::method_path("ExecutePlan"), o);
      if (c.write(request("ExecutePlan", s))) c.writes_done();
      const uint64_t want = 1 + rng_() % 4;
      for (uint64_t i = 0; i < want; ++i) {
        auto msg = c.read();
        if (!msg) break;
        if (r.responses.empty()) r.responses.push_back(std::move(*msg));
      }
      c.cancel();
      while (c.read()) {
      }
      auto first = std::move(r.responses);
      r = c.finish();
      r.responses = std::move(first);
    }
    Expect e;
    e.errors = {{::grpc::StatusCode::CANCELLED, ""}};
    judge(Action::kCancel, s, "ExecutePlan", r, e, start, Clock::now());
  }

  void deadline() {
    SessionRef* session = long_session();
    if (session == nullptr) return;
    SessionRef& s = *session;
    CallOptions o = with_metadata({{"x-fake-stall-ms", "3000"}});
    o.deadline = 200ms;
    const Expect e = expect_error({{::grpc::StatusCode::DEADLINE_EXCEEDED, ""}});
    step(Action::kDeadline, s, "ExecutePlan", {request("ExecutePlan", s)}, o, e);
  }

  void upload() {
    SessionRef* session = long_session();
    if (session == nullptr) return;
    SessionRef& s = *session;
    if (upload_session_ != s.id) {
      upload_session_ = s.id;
      upload_messages_.clear();
      std::string all;
      for (const auto& chunk : upload_chunks_) {
        upload_messages_.push_back(request("AddArtifacts", s) + itest::pb_len_field(1000, chunk));
        all += upload_messages_.back();
      }
      upload_sha_ = itest::sha256_hex(all);
    }
    Expect e;
    e.check = [this](const CallResult& r) -> std::string {
      if (r.trailer("x-fake-request-messages") != std::to_string(kUploadMessages)) {
        return "the backend received " + r.trailer("x-fake-request-messages") + " of " +
               std::to_string(kUploadMessages) + " messages";
      }
      if (r.trailer("x-fake-request-sha256") != upload_sha_) return "the backend received other bytes (SHA-256)";
      return "";
    };
    step(Action::kUpload, s, "AddArtifacts", upload_messages_, {}, e);
  }

  void backend_error() {
    SessionRef* session = long_session();
    if (session == nullptr) return;
    SessionRef& s = *session;
    const Expect e = expect_error({{::grpc::StatusCode::FAILED_PRECONDITION, "soak: scripted failure"}});
    step(Action::kBackendError, s, "Config", {request("Config", s)},
         with_metadata({{"x-fake-status", "9"}, {"x-fake-message", "soak: scripted failure"}}), e);
  }

  void backend_reset() {
    SessionRef* session = long_session();
    if (session == nullptr) return;
    SessionRef& s = *session;
    // The fake cancels the call on its side: grpc sends its CANCELLED trailers, which the
    // gateway relays, or only RST_STREAM, which the gateway turns into UNAVAILABLE.
    Expect e = expect_error({{::grpc::StatusCode::CANCELLED, "Cancelled on the server side"},
                             {::grpc::StatusCode::UNAVAILABLE, "reset the stream"}});
    e.check = responses_are(3);
    step(Action::kBackendReset, s, "ExecutePlan", {request("ExecutePlan", s)},
         with_metadata({{"x-fake-messages", "10"}, {"x-fake-reset-after", "3"}}), e);
  }

  void abandon() {
    SessionRef s = new_session();
    step(Action::kAbandon, s, "Config", {request("Config", s)});
  }

  const int index_;
  const TrafficOptions& options_;
  const Fleet& fleet_;
  Tally& tally_;
  const std::atomic<bool>& stopping_;
  std::mt19937_64 rng_;
  const std::string user_;
  std::shared_ptr<::grpc::Channel> channel_;
  std::optional<SessionRef> long_;
  uint64_t sessions_ = 0;
  uint64_t operations_ = 0;
  std::vector<std::string> upload_chunks_;
  std::string upload_session_;
  std::vector<std::string> upload_messages_;
  std::string upload_sha_;
};

}  // namespace

Traffic::Traffic(TrafficOptions options, const Fleet& fleet, Tally& tally)
    : options_(std::move(options)), fleet_(fleet), tally_(tally) {}

Traffic::~Traffic() { stop(); }

void Traffic::start() {
  for (int i = 0; i < options_.clients; ++i) threads_.emplace_back([this, i] { run_client(i); });
}

void Traffic::stop() {
  stopping_.store(true);
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void Traffic::run_client(int index) {
  try {
    Client(index, options_, fleet_, tally_, stopping_).run();
  } catch (const std::exception& e) {
    tally_.add_unexpected("client " + std::to_string(index) + " stopped: " + e.what());
  }
}

}  // namespace sparkgate::soak
