// Placement policies: which backend of a cluster gets a new session.
//
// Pure functions over a candidate list; the caller filters out backends that take no new
// sessions (unhealthy, drained, full) and keeps any counters.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sparkgate::routing {

struct Candidate {
  std::string_view name;  // "host:port"; the identity rendezvous hashing uses
  uint32_t weight = 1;    // > 0
  int64_t sessions = 0;   // live sessions now
};

// Lowest sessions / weight; ties go to the earliest candidate. -1 if `c` is empty.
int pick_least_sessions(const std::vector<Candidate>& c);

// Smooth weighted round robin (nginx's algorithm): picks backends in proportion to their
// weights, interleaved. Keeps its state by backend name, so candidates may come and go.
// Not thread-safe: the caller serialises picks of one cluster.
class RoundRobin {
 public:
  int pick(const std::vector<Candidate>& c);

 private:
  std::unordered_map<std::string, int64_t> current_;
};

// Weighted rendezvous (highest random weight) hashing of `key`: every replica that sees
// the same candidates picks the same one, and adding or removing a backend moves only the
// keys that land on / were on it (about 1/N of them). -1 if empty.
int pick_rendezvous(const std::vector<Candidate>& c, std::string_view key);

// The 64-bit hash rendezvous scoring uses (stable across processes and builds).
uint64_t rendezvous_hash(std::string_view backend, std::string_view key);

}  // namespace sparkgate::routing
