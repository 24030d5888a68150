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
    auto next = std::make_unique_for_overwrite<uint8_t[]>(cap);
    if (size_) std::memcpy(next.get(), buf_.get(), size_);
    buf_ = std::move(next);
    capacity_ = cap;
  }

  static constexpr size_t kMinCapacity = 1024;
  std::unique_ptr<uint8_t[]> buf_;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

}  // namespace sparkgate::http2
