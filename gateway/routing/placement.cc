#include "routing/placement.h"

#include <cmath>

namespace sparkgate::routing {

namespace {
// FNV-1a over the bytes, then a 64-bit finaliser (splitmix64) to spread the bits: FNV
// alone clusters on keys that differ only in their last characters.
uint64_t mix(uint64_t h) {
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

uint64_t fnv1a(uint64_t h, std::string_view s) {
  for (unsigned char ch : s) {
    h ^= ch;
    h *= 0x100000001b3ull;
  }
  return h;
}
}  // namespace

uint64_t rendezvous_hash(std::string_view backend, std::string_view key) {
  uint64_t h = fnv1a(0xcbf29ce484222325ull, backend);
  h = fnv1a(h ^ 0xff, key);  // separator: ("ab","c") and ("a","bc") differ
  return mix(h);
}

int pick_least_sessions(const std::vector<Candidate>& c) {
  int best = -1;
  for (size_t i = 0; i < c.size(); ++i) {
    if (best < 0) {
      best = static_cast<int>(i);
      continue;
    }
    // sessions_i / weight_i < sessions_best / weight_best, without division.
    const auto& a = c[i];
    const auto& b = c[static_cast<size_t>(best)];
    // Sessions stay far below 2^40 and weights at most 1000: no overflow.
    if (a.sessions * static_cast<int64_t>(b.weight) < b.sessions * static_cast<int64_t>(a.weight)) {
      best = static_cast<int>(i);
    }
  }
  return best;
}

int RoundRobin::pick(const std::vector<Candidate>& c) {
  if (c.empty()) return -1;
  if (current_.size() > 4 * c.size() + 16) current_.clear();  // forget departed backends
  int64_t total = 0;
  int chosen = -1;
  int64_t chosen_value = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    auto& cur = current_[std::string(c[i].name)];
    cur += c[i].weight;
    total += c[i].weight;
    if (chosen < 0 || cur > chosen_value) {
      chosen = static_cast<int>(i);
      chosen_value = cur;
    }
  }
  current_[std::string(c[static_cast<size_t>(chosen)].name)] -= total;
  return chosen;
}

int pick_rendezvous(const std::vector<Candidate>& c, std::string_view key) {
  int best = -1;
  double best_score = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    // Weighted HRW: score = -w / ln(u), u uniform in (0,1) from the hash.
    uint64_t h = rendezvous_hash(c[i].name, key);
    double u = (static_cast<double>(h >> 11) + 0.5) / 9007199254740992.0;  // (0,1)
    double score = -static_cast<double>(c[i].weight) / std::log(u);
    if (best < 0 || score > best_score) {
      best = static_cast<int>(i);
      best_score = score;
    }
  }
  return best;
}

}  // namespace sparkgate::routing
