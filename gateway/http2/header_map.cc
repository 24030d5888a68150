#include "http2/header_map.h"

#include <algorithm>
#include <cstring>

namespace sparkgate::http2 {

void HeaderMap::add(std::string_view name, std::string_view value) {
  if (entries_.capacity() == 0) entries_.reserve(kUsualFields);
  const size_t at = chars_.size();
  const size_t need = at + name.size() + value.size();
  if (need > chars_.capacity() || chars_.data() == nullptr) {
    // `name` or `value` may view this map's own bytes, which the new block moves.
    const char* old = chars_.data();
    auto rebase = [&](std::string_view& s) {
      if (!s.empty() && s.data() >= old && s.data() < old + at) s = {chars_.data() + (s.data() - old), s.size()};
    };
    chars_.reserve(std::max({need, 2 * chars_.capacity(), kUsualBytes}));
    rebase(name);
    rebase(value);
  }
  char* out = chars_.extend(name.size() + value.size());
  if (!name.empty()) std::memcpy(out, name.data(), name.size());
  if (!value.empty()) std::memcpy(out + name.size(), value.data(), value.size());
  entries_.push_back({static_cast<uint32_t>(at), static_cast<uint32_t>(name.size()),
                      static_cast<uint32_t>(at + name.size()), static_cast<uint32_t>(value.size())});
  bytes_ += name.size() + value.size();
}

std::optional<std::string_view> HeaderMap::find(std::string_view name) const {
  for (const Entry& e : entries_) {
    if (e.name_len == name.size() && std::memcmp(chars_.data() + e.name_at, name.data(), name.size()) == 0)
      return std::string_view(chars_.data() + e.value_at, e.value_len);
  }
  return std::nullopt;
}

void HeaderMap::remove(std::string_view name) { drop(name, entries_.end()); }

void HeaderMap::set(std::string_view name, std::string_view value) {
  // Added first, the old fields dropped after: `value` may view one of them.
  add(name, value);
  drop(name, entries_.end() - 1);
}

void HeaderMap::drop(std::string_view name, Entries::iterator end) {
  auto kept_end = std::remove_if(entries_.begin(), end, [&](const Entry& e) {
    if (field(e).name != name) return false;
    bytes_ -= e.name_len + e.value_len;
    return true;
  });
  entries_.erase(kept_end, end);
}

namespace {

// Fields kept out of the HPACK dynamic table (sent as never-indexed literals).
// - Credentials: in the table, a compression oracle could recover them.
// - Values that are new on every request (the correlation ids, a deadline's remaining
//   time): indexing them cannot pay, since no later block repeats them, and each one
//   inserted costs a table entry (an allocation, a hash insert) on both ends and evicts
//   an entry that would have been reused (the constant fields of the next request), so
//   those go out as literals again. nghttp2 indexes every field its heuristics do not
//   exclude; these names are excluded here.
bool never_indexed(std::string_view n) {
  switch (n.size()) {
    case 6: return n == "cookie";
    case 11: return n == "traceparent";
    case 12: return n == "x-request-id" || n == "grpc-timeout";
    case 13: return n == "authorization";
    case 14: return n == "authentication";
    default: return false;
  }
}

}  // namespace

NvArray HeaderMap::to_nv() const {
  NvArray nv;
  nv.reserve(entries_.size());
  for (const Entry& e : entries_) {
    const auto [n, v] = field(e);
    // nghttp2 copies the fields at submit time, so the map may be a temporary.
    const uint8_t flags = never_indexed(n) ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE;
    nv.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                  reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(), flags});
  }
  return nv;
}

bool is_hop_by_hop(std::string_view name) {
  return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
         name == "transfer-encoding" || name == "upgrade" || name == "host" || name == "te";
}

}  // namespace sparkgate::http2
