// The bytes a connection has serialized and not yet written to its socket: nghttp2's frames
// and the DATA payloads that the send_data callback copies in straight from a stream's
// queue. A growable array without std::string's zero-filling resize.
//
// Single-threaded, like the connection that owns it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>

#include "http2/session_memory.h"

namespace sparkgate::http2 {

class WriteBuffer {
 public:
  // Makes room for `n` more bytes and returns where they go; they count once written
  // (the caller fills all `n`).
  uint8_t* extend(size_t n) {
    if (size_ + n > capacity_) grow(size_ + n);
    uint8_t* at = buf_.get() + size_;
    size_ += n;
    return at;
  }
  void append(const uint8_t* data, size_t n) {
    if (n) std::memcpy(extend(n), data, n);
  }
  // Drops the last `n` bytes (an append that turned out not to be wanted).
  void truncate(size_t n) { size_ -= std::min(n, size_); }
  void clear() { size_ = 0; }
  // Frees the memory when it is larger than a small connection needs, so a connection
  // that once streamed a large response does not keep that buffer while idle.
  void trim(size_t keep_bytes) {
    if (size_ == 0 && capacity_ > keep_bytes) {
      buf_.reset();
      capacity_ = 0;
    }
  }
  const uint8_t* data() const { return buf_.get(); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const { return capacity_; }

 private:
  void grow(size_t need) {
    size_t cap = std::max<size_t>(capacity_ * 2, kMinCapacity);
    while (cap < need) cap *= 2;
    // From the per-thread lists (session_memory.h) up to their largest size: a buffer
    // given back when its connection goes idle (trim) and taken again for the next
    // RPC costs no malloc.
    Block next(static_cast<uint8_t*>(pooled_new(cap)));
    if (size_) std::memcpy(next.get(), buf_.get(), size_);
    buf_ = std::move(next);
    capacity_ = cap;
  }

  struct PooledFree {
    void operator()(uint8_t* p) const noexcept { pooled_free(p); }
  };
  using Block = std::unique_ptr<uint8_t[], PooledFree>;

  static constexpr size_t kMinCapacity = 1024;
  Block buf_;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

}  // namespace sparkgate::http2
