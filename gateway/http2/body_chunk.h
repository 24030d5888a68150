// Body bytes that a stream's queue and a connection's pending write share without a copy.
//
// A relayed DATA payload is copied once inside the gateway: from the read buffer into a
// chunk of the stream's queue (proxy/byte_queue.h). The connection that sends it does not
// copy it again: its write buffer (write_buffer.h) keeps a reference to the chunk and the
// socket write gathers the frame header from the write buffer and the payload from the
// chunk. The chunk lives until both the queue and every pending write have let it go.
//
// Threading: a chunk belongs to one worker thread (the stream and both of its connections
// run there), so the count is a plain integer. Chunks of the largest size are kept in a
// small per-thread cache, so a streaming RPC does not malloc and free 64 KiB blocks per
// window.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

namespace sparkgate::http2 {

class BodyChunk {
 public:
  // The largest chunk's capacity; a queue's first chunk may be smaller (see make).
  static constexpr size_t kHeaderBytes = 16;
  static constexpr size_t kLargeCapacity = 64 * 1024 - kHeaderBytes;
  // From the per-thread lists of session_memory.h, which hold blocks up to 2 KiB.
  static constexpr size_t kSmallCapacity = 2048 - kHeaderBytes;

  // A chunk with one reference and room for at least `capacity` bytes (at most
  // kLargeCapacity); small requests get a small chunk.
  static BodyChunk* make(size_t capacity);

  uint8_t* data() { return reinterpret_cast<uint8_t*>(this + 1); }
  const uint8_t* data() const { return reinterpret_cast<const uint8_t*>(this + 1); }
  size_t capacity() const { return capacity_; }
  // Bytes written so far, from data(); a chunk is only ever appended to.
  size_t size() const { return size_; }
  size_t room() const { return capacity_ - size_; }
  // Appends up to room() bytes of `p`; returns how many.
  size_t fill(const uint8_t* p, size_t n);
  // Starts over from data() when nobody else holds the chunk (its old bytes are dead).
  bool reuse_if_unshared() {
    if (refs_ != 1) return false;
    size_ = 0;
    return true;
  }

  void add_ref() { ++refs_; }
  void release() {
    if (--refs_ == 0) destroy(this);
  }
  uint32_t refs() const { return refs_; }

 private:
  explicit BodyChunk(uint32_t capacity) : capacity_(capacity) {}
  static void destroy(BodyChunk* c);

  uint32_t refs_ = 1;
  uint32_t capacity_;
  size_t size_ = 0;
};

static_assert(sizeof(BodyChunk) == BodyChunk::kHeaderBytes);

// An owning reference to a chunk (an intrusive pointer).
class ChunkRef {
 public:
  ChunkRef() = default;
  // Adopts the reference that BodyChunk::make returned.
  explicit ChunkRef(BodyChunk* adopt) : p_(adopt) {}
  ChunkRef(const ChunkRef& o) : p_(o.p_) {
    if (p_) p_->add_ref();
  }
  ChunkRef(ChunkRef&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  ChunkRef& operator=(ChunkRef o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~ChunkRef() { reset(); }
  void reset() {
    if (p_) std::exchange(p_, nullptr)->release();
  }
  BodyChunk* get() const { return p_; }
  BodyChunk* operator->() const { return p_; }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  BodyChunk* p_ = nullptr;
};

// Chunks of the largest size held in this thread's cache (tests).
size_t cached_body_chunks();

}  // namespace sparkgate::http2
