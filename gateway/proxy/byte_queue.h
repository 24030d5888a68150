// A FIFO of bytes for one direction of one stream. Its size is bounded by the HTTP/2
// stream window the gateway advertises: bytes are only consumed (window reopened) once
// they have left the queue, so the peer can never push more than one window into it.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace sparkgate::proxy {

class ByteQueue {
 public:
  void append(const uint8_t* data, size_t n) {
    if (n == 0) return;
    if (head_ > 0 && buf_.size() + n > buf_.capacity()) {
      // Reuse the space already read instead of growing.
      buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
    buf_.insert(buf_.end(), data, data + n);
  }
  // Copies up to `n` bytes out and drops them; returns how many.
  size_t read(uint8_t* out, size_t n) {
    size_t take = n < size() ? n : size();
    std::memcpy(out, buf_.data() + head_, take);
    head_ += take;
    if (head_ == buf_.size()) clear();
    return take;
  }
  // Drops the last `n` bytes (at most size()).
  void drop_back(size_t n) { buf_.resize(buf_.size() - (n < size() ? n : size())); if (empty()) clear(); }
  size_t size() const { return buf_.size() - head_; }
  bool empty() const { return size() == 0; }
  void clear() {
    buf_.clear();
    head_ = 0;
  }
  // Returns the memory of an idle queue (long-lived streams keep theirs while busy).
  void release() { std::vector<uint8_t>().swap(buf_); head_ = 0; }

 private:
  std::vector<uint8_t> buf_;
  size_t head_ = 0;
};

}  // namespace sparkgate::proxy
