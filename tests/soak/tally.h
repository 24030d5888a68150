// The soak traffic's counters: RPCs by final gRPC status and by verdict, actions by kind,
// and the first unexpected outcomes in words.
//
// Threading: every member is safe from any thread (atomics; a mutex for the examples).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace sparkgate::soak {

// What a client thread does in one step (traffic.cc has the details).
enum class Action : size_t {
  kChurn,         // a new session: Config, AnalyzePlan, ExecutePlan, maybe CloneSession, ReleaseSession
  kUnary,         // a unary RPC on the thread's long-lived session
  kStream,        // a large ExecutePlan (2 MiB in 32 messages) on the long-lived session
  kReattach,      // ExecutePlan with an operation id, then ReattachExecute, ReleaseExecute, Interrupt
  kCancel,        // ExecutePlan cancelled by the client after a few responses
  kDeadline,      // ExecutePlan to a stalling backend, ended by the client's 200 ms deadline
  kUpload,        // AddArtifacts: 8 messages of 64 KiB, checked by SHA-256 at the backend
  kBackendError,  // Config answered by the backend with FAILED_PRECONDITION
  kBackendReset,  // ExecutePlan whose backend resets the stream after 3 responses
  kAbandon,       // a new session used once and never released (the gateway expires it)
  kReconnect,     // a new client connection
  kCount
};
inline constexpr size_t kActionCount = static_cast<size_t>(Action::kCount);
const char* action_name(Action a);

// How a finished RPC is judged.
enum class Verdict : size_t {
  kOk,          // OK, as asked
  kScripted,    // the error the call asked for (its own cancel or deadline, a scripted backend error)
  kRestart,     // an error that a backend restart explains (see traffic.cc, classify)
  kUnexpected,  // anything else: fails the soak
  kCount
};
inline constexpr size_t kVerdictCount = static_cast<size_t>(Verdict::kCount);
const char* verdict_name(Verdict v);

inline constexpr size_t kStatusCodes = 17;  // gRPC status codes 0..16

struct TallySnapshot {
  uint64_t rpcs = 0;
  std::array<uint64_t, kStatusCodes> by_code{};
  std::array<uint64_t, kVerdictCount> by_verdict{};
  std::array<uint64_t, kActionCount> actions{};
  uint64_t restart_moves = 0;  // OK answers from a new incarnation of the session's backend
  std::vector<std::string> unexpected;  // the first kMaxExamples, in words
};

class Tally {
 public:
  static constexpr size_t kMaxExamples = 50;

  // `code` outside 0..16 counts as UNKNOWN (2).
  void add_rpc(int code, Verdict verdict);
  void add_action(Action a) { actions_[static_cast<size_t>(a)].fetch_add(1, std::memory_order_relaxed); }
  void add_restart_move() { restart_moves_.fetch_add(1, std::memory_order_relaxed); }
  // An unexpected outcome (already counted by add_rpc if it was an RPC's); kept in words.
  void add_unexpected(std::string what);
  TallySnapshot snapshot() const;

 private:
  std::atomic<uint64_t> rpcs_{0};
  std::array<std::atomic<uint64_t>, kStatusCodes> by_code_{};
  std::array<std::atomic<uint64_t>, kVerdictCount> by_verdict_{};
  std::array<std::atomic<uint64_t>, kActionCount> actions_{};
  std::atomic<uint64_t> restart_moves_{0};
  mutable std::mutex mu_;
  std::vector<std::string> unexpected_;
};

// "OK", "CANCELLED", ... for 0..16.
const char* code_name(size_t code);

}  // namespace sparkgate::soak
