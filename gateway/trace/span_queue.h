// The bounded queue between the workers, which finish spans, and the exporter on the
// control thread, which sends them in batches. A worker never waits for the exporter:
// submit() holds a mutex for one move into a ring of fixed capacity and drops the span
// (counted in sparkgate_spans_dropped_total{reason="queue_full"}) when the ring is full.
//
// Threading: every method is thread-safe.
#pragma once

#include <cstddef>
#include <functional>
#include <mutex>
#include <vector>

#include "trace/span.h"

namespace prometheus {
class Counter;
}

namespace sparkgate::trace {

class SpanQueue {
 public:
  // `dropped` (may be null) counts spans refused because the queue is full; it outlives
  // the queue.
  SpanQueue(size_t capacity, prometheus::Counter* dropped);

  // Adds a finished span, or drops and counts it when `capacity` spans are queued. When
  // the queue reaches the batch size, the batch-ready callback is called (on this
  // thread, outside the lock). Returns false when dropped.
  bool submit(Span&& span);
  // Moves up to `max` spans, oldest first, to the end of `out`; returns how many.
  size_t pop(std::vector<Span>& out, size_t max);
  size_t size() const;
  size_t capacity() const;

  // A reload: the new capacity applies to later submits (spans already queued stay); the
  // batch size decides when `on_batch_ready` is called. The callback must be cheap and
  // thread-safe (it posts to the exporter's thread); set it before workers submit.
  void configure(size_t capacity, size_t batch_size);
  void set_on_batch_ready(std::function<void()> callback);

 private:
  mutable std::mutex mu_;
  std::vector<Span> ring_;  // at least capacity_ slots (more after a shrink that kept spans)
  size_t capacity_;
  size_t head_ = 0;         // the oldest span
  size_t count_ = 0;
  size_t batch_size_ = 512;
  prometheus::Counter* dropped_;
  std::function<void()> on_batch_ready_;
};

}  // namespace sparkgate::trace
