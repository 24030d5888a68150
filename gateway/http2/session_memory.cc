#include "http2/session_memory.h"

#include <malloc.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace sparkgate::http2 {

namespace {

// Every block is an ordinary malloc block, with no header of ours and no rounding, so a
// block that lives as long as its connection (the session, its frame buffer, the HPACK
// tables) costs exactly what malloc would, and realloc is malloc's. A freed block joins
// the list of its malloc chunk size (malloc_usable_size rounded down to 16 bytes); a
// request takes from the list of the chunk size malloc would give it (its size rounded up
// to 16 bytes), so a block handed out is always at least as large as the request. Up to
// 2 KiB: what nghttp2 takes and gives back per stream and per frame (stream objects,
// outbound items, header block copies) is smaller.
constexpr size_t kGranule = 16;
constexpr size_t kMaxCachedSize = kLargestPooledBytes;

// glibc's chunk for a request of n bytes holds n + 8 rounded up to 16 (at least 32).
constexpr size_t request_class(size_t n) { return (std::max(n + 8, size_t{32}) + kGranule - 1) / kGranule; }
constexpr size_t block_class(size_t usable) { return (usable + 8) / kGranule; }

// One list per class up to that of a kMaxCachedSize request (class 129, one above
// kMaxCachedSize / kGranule), so a 2 KiB block (BodyChunk's small chunk, WriteBuffer's
// second size) is cached too.
constexpr size_t kClasses = request_class(kMaxCachedSize) + 1;
// Bounds per class and per thread. A class holds at least as many blocks as a worker
// has RPCs in flight in the benchmark's unary load (64): with 32 KiB per class the
// largest classes (the RPC object, the 2 KiB body chunk and write buffer step) held
// 15-17 blocks, and about 2.5 blocks per RPC went back to malloc and came out again
// (tests/bench/RESULTS.md).
constexpr size_t kMaxCachedBytesPerClass = 256 * 1024;
constexpr size_t kMaxCachedBytesPerThread = 1024 * 1024;

struct FreeBlock {
  FreeBlock* next;
};

struct Cache {
  std::array<FreeBlock*, kClasses> head{};
  std::array<uint32_t, kClasses> count{};
  size_t cached_bytes = 0;

  ~Cache() { release(); }

  void release() {
    for (FreeBlock*& h : head) {
      while (h != nullptr) {
        FreeBlock* b = h;
        h = b->next;
        std::free(b);
      }
    }
    count.fill(0);
    cached_bytes = 0;
  }
};

// The cache is reached through a check of a trivially destructible flag, so that a
// session destroyed after this thread's thread_local destructors ran (at exit) frees to
// malloc instead of touching a destroyed list.
thread_local bool t_cache_dead = false;
struct CacheOwner {
  Cache cache;
  ~CacheOwner() { t_cache_dead = true; }
};

Cache* cache() {
  if (t_cache_dead) return nullptr;
  thread_local CacheOwner owner;
  return &owner.cache;
}

void* mem_malloc(size_t n, void*) {
  if (n <= kMaxCachedSize) {
    const size_t c = request_class(n);
    Cache* k = cache();
    if (k != nullptr && c < kClasses && k->head[c] != nullptr) {
      FreeBlock* b = k->head[c];
      k->head[c] = b->next;
      --k->count[c];
      k->cached_bytes -= c * kGranule;
      return b;
    }
  }
  return std::malloc(n);
}

void mem_free(void* p, void*) {
  if (p == nullptr) return;
  const size_t usable = malloc_usable_size(p);
  const size_t c = block_class(usable);
  Cache* k = cache();
  if (k == nullptr || usable < sizeof(FreeBlock) || c >= kClasses ||
      (k->count[c] + 1) * c * kGranule > kMaxCachedBytesPerClass ||
      k->cached_bytes + c * kGranule > kMaxCachedBytesPerThread) {
    std::free(p);
    return;
  }
  auto* b = static_cast<FreeBlock*>(p);
  b->next = k->head[c];
  k->head[c] = b;
  ++k->count[c];
  k->cached_bytes += c * kGranule;
}

void* mem_calloc(size_t count, size_t size, void* ud) {
  if (size != 0 && count > SIZE_MAX / size) return nullptr;
  const size_t n = count * size;
  void* p = mem_malloc(n, ud);
  if (p != nullptr) std::memset(p, 0, n);
  return p;
}

void* mem_realloc(void* p, size_t n, void*) { return std::realloc(p, n); }

nghttp2_mem g_mem{nullptr, mem_malloc, mem_free, mem_calloc, mem_realloc};

}  // namespace

nghttp2_mem* session_memory() { return &g_mem; }

void* pooled_malloc(size_t n) { return mem_malloc(n, nullptr); }
void pooled_free(void* p) noexcept { mem_free(p, nullptr); }

size_t session_memory_cached_bytes() {
  Cache* k = cache();
  return k == nullptr ? 0 : k->cached_bytes;
}

void session_memory_release_cached() {
  if (Cache* k = cache()) k->release();
}

}  // namespace sparkgate::http2
