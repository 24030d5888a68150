// An ordered list of HTTP/2 header fields, as received or to be submitted.
#pragma once

#include <boost/container/small_vector.hpp>
#include <nghttp2/nghttp2.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sparkgate::http2 {

// The nghttp2_nv array of one submit call: on the stack for the usual header count.
using NvArray = boost::container::small_vector<nghttp2_nv, 16>;

class HeaderMap {
 public:
  // A gRPC request carries 10 to 14 fields (pseudo-headers, content-type, te, user-agent,
  // grpc-timeout, the correlation ids, ...): the first add reserves room for this many,
  // so that the usual header block makes one allocation for the list, not five.
  static constexpr size_t kUsualFields = 16;

  void add(std::string name, std::string value) {
    if (fields_.capacity() == 0) fields_.reserve(kUsualFields);
    bytes_ += name.size() + value.size();
    fields_.emplace_back(std::move(name), std::move(value));
  }
  // First value of `name` (lower-case), or nullptr.
  const std::string* find(std::string_view name) const;
  // Replaces all values of `name` by one, or adds it.
  void set(std::string_view name, std::string value);
  void remove(std::string_view name);

  const std::vector<std::pair<std::string, std::string>>& fields() const { return fields_; }
  // Moves the fields out (for relaying them without copying each string); the map is
  // left empty.
  std::vector<std::pair<std::string, std::string>> take_fields() {
    bytes_ = 0;
    return std::move(fields_);
  }
  size_t size() const { return fields_.size(); }
  // Sum of names and values, the figure limits are checked against.
  size_t bytes() const { return bytes_; }
  void clear() {
    fields_.clear();
    bytes_ = 0;
  }

  // nghttp2_nv views into this map, for a submit call made while the map is alive
  // (nghttp2 copies the fields during the call).
  NvArray to_nv() const;

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
  size_t bytes_ = 0;
};

// True for connection-specific fields that must not be forwarded between hops
// (RFC 9113 §8.2.2) and for "host", which HTTP/2 carries as :authority.
bool is_hop_by_hop(std::string_view name);

}  // namespace sparkgate::http2
