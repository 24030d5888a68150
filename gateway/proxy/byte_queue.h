// A FIFO of bytes for one direction of one stream. Its size is bounded by the HTTP/2
// stream window the gateway advertises: bytes are only consumed (window reopened) once
// they have left the queue, so the peer can never push more than one window into it.
//
// A ring buffer: appends and reads copy each byte once and never move what is queued,
// however the two interleave. Capacity grows by doubling up to the largest backlog seen.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>

namespace sparkgate::proxy {

class ByteQueue {
 public:
  void append(const uint8_t* data, size_t n) {
    if (n == 0) return;
    if (size_ + n > capacity_) grow(size_ + n);
    size_t tail = (head_ + size_) & (capacity_ - 1);
    size_t first = std::min(n, capacity_ - tail);
    std::memcpy(buf_.get() + tail, data, first);
    std::memcpy(buf_.get(), data + first, n - first);
    size_ += n;
  }
  // Copies up to `n` bytes out and drops them; returns how many.
  size_t read(uint8_t* out, size_t n) {
    size_t take = std::min(n, size_);
    if (take == 0) return 0;  // buf_ may still be null: memcpy from null is undefined
    size_t first = std::min(take, capacity_ - head_);
    std::memcpy(out, buf_.get() + head_, first);
    std::memcpy(out + first, buf_.get(), take - first);
    head_ = size_ == take ? 0 : (head_ + take) & (capacity_ - 1);
    size_ -= take;
    return take;
  }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t capacity() const { return capacity_; }
  // Frees the memory (a finished direction of a long-lived stream keeps none).
  void release() {
    buf_.reset();
    capacity_ = head_ = size_ = 0;
  }

 private:
  void grow(size_t need) {
    size_t cap = capacity_ ? capacity_ : kMinCapacity;
    while (cap < need) cap *= 2;
    auto next = std::make_unique_for_overwrite<uint8_t[]>(cap);
    size_t live = size_;
    read(next.get(), live);  // unwraps the queued bytes to the front of the new buffer
    buf_ = std::move(next);
    capacity_ = cap;
    head_ = 0;
    size_ = live;
  }

  static constexpr size_t kMinCapacity = 16 * 1024;  // a power of two, like every capacity
  std::unique_ptr<uint8_t[]> buf_;
  size_t capacity_ = 0;
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace sparkgate::proxy
