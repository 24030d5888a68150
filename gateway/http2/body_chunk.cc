#include "http2/body_chunk.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <vector>

#include "http2/session_memory.h"

namespace sparkgate::http2 {

namespace {

// Large chunks kept per thread: a streaming RPC's queue takes and gives back one per
// 64 KiB it relays, and 16 cover a 1 MiB stream window. More than that go back to malloc.
constexpr size_t kMaxCachedChunks = 16;

struct ChunkCache {
  std::vector<void*> blocks;
  ~ChunkCache() {
    for (void* b : blocks) ::operator delete(b);
  }
};

// Reached through a trivially destructible flag, like session_memory.cc's lists: a chunk
// freed after this thread's thread_local destructors ran goes straight back to malloc.
thread_local bool t_cache_dead = false;
struct CacheOwner {
  ChunkCache cache;
  ~CacheOwner() { t_cache_dead = true; }
};

ChunkCache* chunk_cache() {
  if (t_cache_dead) return nullptr;
  thread_local CacheOwner owner;
  return &owner.cache;
}

}  // namespace

BodyChunk* BodyChunk::make(size_t capacity) {
  if (capacity <= kSmallCapacity) {
    return new (pooled_new(kHeaderBytes + kSmallCapacity)) BodyChunk(static_cast<uint32_t>(kSmallCapacity));
  }
  void* block = nullptr;
  if (auto* cache = chunk_cache(); cache && !cache->blocks.empty()) {
    block = cache->blocks.back();
    cache->blocks.pop_back();
  } else {
    block = ::operator new(kHeaderBytes + kLargeCapacity);
  }
  return new (block) BodyChunk(static_cast<uint32_t>(kLargeCapacity));
}

void BodyChunk::destroy(BodyChunk* c) {
  const bool large = c->capacity_ == kLargeCapacity;
  c->~BodyChunk();
  if (!large) {
    pooled_free(c);
    return;
  }
  auto* cache = chunk_cache();
  if (cache && cache->blocks.size() < kMaxCachedChunks) {
    if (cache->blocks.capacity() == 0) cache->blocks.reserve(kMaxCachedChunks);
    cache->blocks.push_back(c);
    return;
  }
  ::operator delete(c);
}

size_t BodyChunk::fill(const uint8_t* p, size_t n) {
  size_t take = std::min(n, room());
  if (take) std::memcpy(data() + size_, p, take);
  size_ += take;
  return take;
}

size_t cached_body_chunks() {
  auto* cache = chunk_cache();
  return cache ? cache->blocks.size() : 0;
}

}  // namespace sparkgate::http2
