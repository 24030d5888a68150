// An ordered list of HTTP/2 header fields, as received or to be submitted.
//
// The names and values are kept in one character block, and each field is an entry of
// offsets into it; both come from the per-thread free lists of session_memory.h. A header
// block therefore costs no malloc once a worker has warmed up, however many fields it
// has, and moving a map (from the connection to the RPC, from the relay to the submit
// call) moves two pointers.
//
// Threading: none (a map belongs to one stream's thread); a block freed on another
// thread is as safe as with malloc.
#pragma once

#include <boost/container/small_vector.hpp>
#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <cstring>
#include <iterator>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "http2/session_memory.h"

namespace sparkgate::http2 {

// The nghttp2_nv array of one submit call: on the stack for the usual header count.
using NvArray = boost::container::small_vector<nghttp2_nv, 16>;

class HeaderMap {
  struct Entry {
    uint32_t name_at, name_len, value_at, value_len;
  };

 public:
  struct Field {
    std::string_view name;
    std::string_view value;
  };

  // The fields in order, as Field views (valid until the map changes).
  class Fields {
   public:
    class iterator {
     public:
      using iterator_category = std::forward_iterator_tag;
      using value_type = Field;
      using difference_type = std::ptrdiff_t;
      using pointer = void;
      using reference = Field;
      iterator() = default;
      iterator(const HeaderMap* map, const Entry* at) : map_(map), at_(at) {}
      Field operator*() const { return map_->field(*at_); }
      iterator& operator++() {
        ++at_;
        return *this;
      }
      iterator operator++(int) {
        iterator old = *this;
        ++at_;
        return old;
      }
      bool operator==(const iterator& o) const { return at_ == o.at_; }

     private:
      const HeaderMap* map_ = nullptr;
      const Entry* at_ = nullptr;
    };
    explicit Fields(const HeaderMap& map) : map_(&map) {}
    iterator begin() const { return {map_, map_->entries_.data()}; }
    iterator end() const { return {map_, map_->entries_.data() + map_->entries_.size()}; }
    size_t size() const { return map_->entries_.size(); }
    bool empty() const { return map_->entries_.empty(); }
    Field operator[](size_t i) const { return map_->field(map_->entries_[i]); }

   private:
    const HeaderMap* map_;
  };

  // A gRPC request carries 10 to 14 fields (pseudo-headers, content-type, te, user-agent,
  // grpc-timeout, the correlation ids, ...) in about 400 bytes: the first add reserves
  // room for this many, so that the usual header block takes one block of each kind.
  static constexpr size_t kUsualFields = 16;
  static constexpr size_t kUsualBytes = 512;

  // Copies `name` and `value` in (either may view a temporary or this map's own fields).
  void add(std::string_view name, std::string_view value);
  // First value of `name` (lower-case), or nullopt. The view is valid until the map changes.
  std::optional<std::string_view> find(std::string_view name) const;
  // Replaces all values of `name` by one, or adds it.
  void set(std::string_view name, std::string_view value);
  void remove(std::string_view name);
  // Removes every field for which `drop(Field)` is true, keeping the others in order.
  template <typename Pred>
  void erase_if(Pred drop) {
    size_t kept = 0;
    for (const Entry& e : entries_) {
      if (drop(field(e))) {
        bytes_ -= e.name_len + e.value_len;
      } else {
        entries_[kept++] = e;
      }
    }
    entries_.resize(kept);
  }

  Fields fields() const { return Fields(*this); }
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  // Sum of names and values, the figure limits are checked against.
  size_t bytes() const { return bytes_; }
  // Empties the map and keeps its blocks, for the next header block.
  void clear() {
    entries_.clear();
    chars_.clear();
    bytes_ = 0;
  }

  // nghttp2_nv views into this map, for a submit call made while the map is alive and
  // unchanged (nghttp2 copies the fields during the call).
  NvArray to_nv() const;

 private:
  Field field(const Entry& e) const {
    return {{chars_.data() + e.name_at, e.name_len}, {chars_.data() + e.value_at, e.value_len}};
  }

  // The character block: one pooled block that grows by copying. Unlike a vector's
  // resize, claiming room does not zero-fill it (add writes every byte it claims).
  class Chars {
   public:
    Chars() = default;
    Chars(const Chars& o) {
      if (o.size_ == 0) return;
      reserve(o.size_);
      std::memcpy(data_, o.data_, o.size_);
      size_ = o.size_;
    }
    Chars(Chars&& o) noexcept
        : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), cap_(std::exchange(o.cap_, 0)) {}
    Chars& operator=(Chars o) noexcept {  // copy or move, then swap
      std::swap(data_, o.data_);
      std::swap(size_, o.size_);
      std::swap(cap_, o.cap_);
      return *this;
    }
    ~Chars() {
      if (data_ != nullptr) pooled_free(data_);
    }
    const char* data() const { return data_; }
    size_t size() const { return size_; }
    size_t capacity() const { return cap_; }
    void clear() { size_ = 0; }
    void reserve(size_t n) {
      if (n <= cap_) return;
      char* block = static_cast<char*>(pooled_new(n));
      if (size_ != 0) std::memcpy(block, data_, size_);
      if (data_ != nullptr) pooled_free(data_);
      data_ = block;
      cap_ = n;
    }
    // Claims `n` more bytes (within the capacity) and returns where they start.
    char* extend(size_t n) {
      char* at = data_ + size_;
      size_ += n;
      return at;
    }

   private:
    char* data_ = nullptr;
    size_t size_ = 0;
    size_t cap_ = 0;
  };

  using Entries = std::vector<Entry, PooledAllocator<Entry>>;
  // Removes the fields named `name` before `end`.
  void drop(std::string_view name, Entries::iterator end);

  Entries entries_;
  // Names and values, back to back; removed fields leave their bytes until clear().
  Chars chars_;
  size_t bytes_ = 0;
};

// True for connection-specific fields that must not be forwarded between hops
// (RFC 9113 §8.2.2) and for "host", which HTTP/2 carries as :authority.
bool is_hop_by_hop(std::string_view name);

}  // namespace sparkgate::http2
