// A FIFO of bytes for one direction of one stream. Its size is bounded by the HTTP/2
// stream window the gateway advertises: bytes are only consumed (window reopened) once
// they have left the queue, so the peer can never push more than one window into it.
//
// A list of reference-counted chunks (http2/body_chunk.h): an append copies each byte
// once, into the last chunk; take() hands bytes to the connection that sends them as
// references to those chunks, so they are written to the socket from where they are
// (WriteBuffer::append_shared) and never copied again. A chunk goes back once the queue
// has handed out all of it and every write that held it is done. The first chunk is
// small (2 KiB, from the per-thread lists) when the first append is: a unary response
// needs no more; later ones are 64 KiB. So what a queue holds follows its backlog, not the
// bytes that passed through it.
//
// Single-threaded, like the stream that owns it.
#pragma once

#include <boost/container/small_vector.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "http2/body_chunk.h"
#include "http2/write_buffer.h"

namespace sparkgate::proxy {

class ByteQueue {
 public:
  void append(const uint8_t* data, size_t n) {
    while (n > 0) {
      if (chunks_.empty() || chunks_.back()->room() == 0) add_chunk(n);
      size_t put = chunks_.back()->fill(data, n);
      data += put;
      n -= put;
      size_ += put;
    }
  }
  // Copies up to `n` bytes out and drops them; returns how many.
  size_t read(uint8_t* out, size_t n) {
    size_t take = std::min(n, size_);
    for (size_t left = take; left > 0;) {
      size_t run = front_run(left);
      std::memcpy(out, chunks_.front()->data() + head_, run);
      out += run;
      left -= run;
      drop_front(run);
    }
    return take;
  }
  // Appends the first `n` bytes (at most size()) to `out`, by reference to their chunks,
  // and drops them from the queue.
  void take(size_t n, http2::WriteBuffer& out) {
    for (size_t left = std::min(n, size_); left > 0;) {
      size_t run = front_run(left);
      out.append_shared(chunks_.front(), chunks_.front()->data() + head_, run);
      left -= run;
      drop_front(run);
    }
  }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Bytes of the chunks the queue holds.
  size_t capacity() const {
    size_t c = 0;
    for (const auto& ch : chunks_) c += ch->capacity();
    return c;
  }
  // Lets go of every chunk (a finished direction of a long-lived stream keeps none).
  void release() {
    chunks_.clear();
    head_ = size_ = 0;
  }

 private:
  // Queued bytes of the first chunk, up to `n`.
  size_t front_run(size_t n) const { return std::min(n, chunks_.front()->size() - head_); }
  void drop_front(size_t n) {
    head_ += n;
    size_ -= n;
    if (head_ < chunks_.front()->size()) return;
    if (chunks_.size() == 1) {
      // Empty: keep the chunk to append to, from its start if no write still holds it,
      // else after its last byte while it has room.
      if (chunks_.front()->reuse_if_unshared()) {
        head_ = 0;
      } else if (chunks_.front()->room() == 0) {
        chunks_.clear();
        head_ = 0;
      }
      return;
    }
    chunks_.erase(chunks_.begin());
    head_ = 0;
  }
  void add_chunk(size_t want) {
    // After a first chunk, large ones: the stream is streaming.
    size_t cap = chunks_.empty() && !used_ ? want : http2::BodyChunk::kLargeCapacity;
    used_ = true;
    chunks_.emplace_back(http2::BodyChunk::make(cap));
  }

  // In order; bytes [head_, size()) of the first chunk and all of the others are queued.
  boost::container::small_vector<http2::ChunkRef, 2> chunks_;
  size_t head_ = 0;
  size_t size_ = 0;
  bool used_ = false;  // a chunk was made before
};

}  // namespace sparkgate::proxy
