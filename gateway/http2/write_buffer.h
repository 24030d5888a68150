// The bytes a connection has serialized and not yet written to its socket: nghttp2's frames
// and the DATA payloads of its streams.
//
// Two kinds of bytes, kept in order: the buffer's own (frames, frame headers, small
// payloads; a growable array without std::string's zero-filling resize), and payloads
// that stay where they are, in a stream queue's chunk (body_chunk.h), held by a reference
// until the write is done. buffers() gives both as one gather list for a single socket
// write, so a large relayed payload is never copied on its way out. With in-place writes
// off (TLS: OpenSSL copies into its records anyway, and a 9-byte frame header would
// become a record of its own) shared payloads are copied like the rest.
//
// Single-threaded, like the connection that owns it.
#pragma once

#include <boost/asio/buffer.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "http2/body_chunk.h"
#include "http2/session_memory.h"

namespace sparkgate::http2 {

class WriteBuffer {
 public:
  // Payloads shorter than this are copied: an entry in the gather list and a reference
  // cost more than copying a few cache lines.
  static constexpr size_t kCopyBelow = 2048;

  // Makes room for `n` more own bytes and returns where they go; they count once written
  // (the caller fills all `n`).
  uint8_t* extend(size_t n) {
    if (own_size_ + n > capacity_) grow(own_size_ + n);
    uint8_t* at = buf_.get() + own_size_;
    own_size_ += n;
    size_ += n;
    return at;
  }
  void append(const uint8_t* data, size_t n) {
    if (n) std::memcpy(extend(n), data, n);
  }
  // Appends `n` bytes at `data`, which lie in `chunk`: by reference when in-place writes
  // are on and the run is long enough, else copied.
  void append_shared(const ChunkRef& chunk, const uint8_t* data, size_t n) {
    if (!in_place_ || n < kCopyBelow) {
      append(data, n);
      return;
    }
    shared_.push_back({own_size_, chunk, data, n});
    size_ += n;
  }

  // A position to go back to (an append that turned out not to be wanted).
  struct Mark {
    size_t own_size;
    size_t shared_count;
    size_t size;
  };
  Mark mark() const { return {own_size_, shared_.size(), size_}; }
  void rollback(const Mark& m) {
    own_size_ = m.own_size;
    shared_.resize(m.shared_count);
    size_ = m.size;
  }

  // Empties the buffer and lets go of every chunk it held.
  void clear() {
    own_size_ = size_ = 0;
    shared_.clear();
  }
  // Frees the memory when it is larger than a small connection needs, so a connection
  // that once streamed a large response does not keep that buffer while idle.
  void trim(size_t keep_bytes) {
    if (size_ == 0 && capacity_ > keep_bytes) {
      buf_.reset();
      capacity_ = 0;
    }
    if (size_ == 0 && keep_bytes == 0) {
      shared_ = {};
      gather_ = {};
    }
  }
  void set_in_place(bool on) { in_place_ = on; }

  // Every byte in order, for one gather write. Valid until the buffer next changes.
  std::span<const boost::asio::const_buffer> buffers() {
    if (shared_.empty()) {
      single_ = boost::asio::const_buffer(buf_.get(), own_size_);
      return {&single_, 1};
    }
    gather_.clear();
    size_t own_at = 0;
    for (const Shared& s : shared_) {
      if (s.own_before > own_at) gather_.emplace_back(buf_.get() + own_at, s.own_before - own_at);
      gather_.emplace_back(s.data, s.size);
      own_at = s.own_before;
    }
    if (own_size_ > own_at) gather_.emplace_back(buf_.get() + own_at, own_size_ - own_at);
    return gather_;
  }

  // The own bytes (only meaningful when nothing is shared: raw replies).
  const uint8_t* data() const { return buf_.get(); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const { return capacity_; }
  size_t shared_runs() const { return shared_.size(); }

 private:
  void grow(size_t need) {
    size_t cap = std::max<size_t>(capacity_ * 2, kMinCapacity);
    while (cap < need) cap *= 2;
    // From the per-thread lists (session_memory.h) up to their largest size: a buffer
    // given back when its connection goes idle (trim) and taken again for the next
    // RPC costs no malloc.
    Block next(static_cast<uint8_t*>(pooled_new(cap)));
    if (own_size_) std::memcpy(next.get(), buf_.get(), own_size_);
    buf_ = std::move(next);
    capacity_ = cap;
  }

  struct PooledFree {
    void operator()(uint8_t* p) const noexcept { pooled_free(p); }
  };
  using Block = std::unique_ptr<uint8_t[], PooledFree>;

  // A run of a chunk's bytes, written after the own bytes before `own_before`.
  struct Shared {
    size_t own_before;
    ChunkRef chunk;
    const uint8_t* data;
    size_t size;
  };

  static constexpr size_t kMinCapacity = 1024;
  Block buf_;
  size_t own_size_ = 0;  // bytes in buf_
  size_t size_ = 0;      // own and shared
  size_t capacity_ = 0;
  bool in_place_ = false;
  std::vector<Shared> shared_;
  std::vector<boost::asio::const_buffer> gather_;
  boost::asio::const_buffer single_;
};

}  // namespace sparkgate::http2
