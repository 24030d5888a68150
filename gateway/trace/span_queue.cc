#include "trace/span_queue.h"

#include <prometheus/counter.h>

namespace sparkgate::trace {

SpanQueue::SpanQueue(size_t capacity, prometheus::Counter* dropped)
    : ring_(capacity ? capacity : 1), capacity_(ring_.size()), dropped_(dropped) {}

bool SpanQueue::submit(Span&& span) {
  std::function<void()> ready;  // copied once per batch, called outside the lock
  {
    std::lock_guard lock(mu_);
    if (count_ >= capacity_) {
      if (dropped_) dropped_->Increment();
      return false;
    }
    ring_[(head_ + count_) % ring_.size()] = std::move(span);
    ++count_;
    if (count_ == batch_size_) ready = on_batch_ready_;
  }
  if (ready) ready();
  return true;
}

size_t SpanQueue::pop(std::vector<Span>& out, size_t max) {
  std::lock_guard lock(mu_);
  size_t n = std::min(max, count_);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(std::move(ring_[head_]));
    ring_[head_] = Span{};
    head_ = (head_ + 1) % ring_.size();
  }
  count_ -= n;
  return n;
}

size_t SpanQueue::size() const {
  std::lock_guard lock(mu_);
  return count_;
}

size_t SpanQueue::capacity() const {
  std::lock_guard lock(mu_);
  return capacity_;
}

void SpanQueue::configure(size_t capacity, size_t batch_size) {
  if (capacity == 0) capacity = 1;
  std::lock_guard lock(mu_);
  batch_size_ = batch_size;
  capacity_ = capacity;
  if (capacity == ring_.size()) return;
  // Re-pack into a ring of the new size; spans past the new capacity are kept by
  // growing to fit them (they were accepted), later submits see the new bound.
  std::vector<Span> next(std::max(capacity, count_));
  for (size_t i = 0; i < count_; ++i) next[i] = std::move(ring_[(head_ + i) % ring_.size()]);
  ring_ = std::move(next);
  head_ = 0;
}

void SpanQueue::set_on_batch_ready(std::function<void()> callback) {
  std::lock_guard lock(mu_);
  on_batch_ready_ = std::move(callback);
}

}  // namespace sparkgate::trace
