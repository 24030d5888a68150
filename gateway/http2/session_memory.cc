#include "http2/session_memory.h"

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace sparkgate::http2 {

namespace {

// Classes 64 B .. 16 KiB. nghttp2's largest regular blocks are its outbound frame buffer
// chunks (16 KiB + the frame header) and the inflater's buffers; those over 16 KiB go to
// malloc.
constexpr size_t kMinShift = 6;
constexpr size_t kClasses = 9;  // 64, 128, ..., 16384
constexpr size_t kMaxClassBytes = size_t{1} << (kMinShift + kClasses - 1);
constexpr size_t kMaxCachedBytesPerClass = 128 * 1024;
constexpr uint32_t kDirect = 0xffffffff;  // the block came from malloc, not a class

// In front of every block, keeping the payload 16-byte aligned as malloc's is.
struct alignas(16) Header {
  uint32_t size_class;
  uint32_t unused;
  size_t direct_bytes;  // kDirect blocks: the payload size (for realloc)
};
static_assert(sizeof(Header) == 16);

struct FreeBlock {
  FreeBlock* next;
};

struct Cache {
  std::array<FreeBlock*, kClasses> head{};
  std::array<size_t, kClasses> count{};
  size_t cached_bytes = 0;

  ~Cache() {
    for (size_t c = 0; c < kClasses; ++c) {
      while (head[c] != nullptr) {
        FreeBlock* b = head[c];
        head[c] = b->next;
        std::free(reinterpret_cast<Header*>(b) - 1);
      }
    }
  }
};

// The cache is reached through a trivially destructible pointer, so that a session
// destroyed after this thread's thread_local destructors ran (at exit) still finds out
// that the lists are gone and frees to malloc.
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

size_t class_of(size_t n) {
  size_t c = 0;
  while ((size_t{1} << (kMinShift + c)) < n) ++c;
  return c;
}

size_t class_bytes(size_t c) { return size_t{1} << (kMinShift + c); }

void* alloc_direct(size_t n) {
  auto* h = static_cast<Header*>(std::malloc(sizeof(Header) + n));
  if (h == nullptr) return nullptr;
  h->size_class = kDirect;
  h->direct_bytes = n;
  return h + 1;
}

void* mem_malloc(size_t n, void*) {
  if (n > kMaxClassBytes) return alloc_direct(n);
  const size_t c = class_of(n);
  Cache* k = cache();
  if (k != nullptr && k->head[c] != nullptr) {
    FreeBlock* b = k->head[c];
    k->head[c] = b->next;
    --k->count[c];
    k->cached_bytes -= class_bytes(c);
    auto* h = reinterpret_cast<Header*>(b) - 1;
    h->size_class = static_cast<uint32_t>(c);
    return b;
  }
  auto* h = static_cast<Header*>(std::malloc(sizeof(Header) + class_bytes(c)));
  if (h == nullptr) return nullptr;
  h->size_class = static_cast<uint32_t>(c);
  return h + 1;
}

void mem_free(void* p, void*) {
  if (p == nullptr) return;
  auto* h = static_cast<Header*>(p) - 1;
  const uint32_t c = h->size_class;
  if (c == kDirect) {
    std::free(h);
    return;
  }
  Cache* k = cache();
  if (k == nullptr || (k->count[c] + 1) * class_bytes(c) > kMaxCachedBytesPerClass) {
    std::free(h);
    return;
  }
  auto* b = static_cast<FreeBlock*>(p);
  b->next = k->head[c];
  k->head[c] = b;
  ++k->count[c];
  k->cached_bytes += class_bytes(c);
}

void* mem_calloc(size_t count, size_t size, void* ud) {
  if (size != 0 && count > SIZE_MAX / size) return nullptr;
  const size_t n = count * size;
  void* p = mem_malloc(n, ud);
  if (p != nullptr) std::memset(p, 0, n);
  return p;
}

void* mem_realloc(void* p, size_t n, void* ud) {
  if (p == nullptr) return mem_malloc(n, ud);
  if (n == 0) {
    mem_free(p, ud);
    return nullptr;
  }
  auto* h = static_cast<Header*>(p) - 1;
  size_t old_bytes;
  if (h->size_class == kDirect) {
    if (n > kMaxClassBytes) {
      auto* g = static_cast<Header*>(std::realloc(h, sizeof(Header) + n));
      if (g == nullptr) return nullptr;
      g->direct_bytes = n;
      return g + 1;
    }
    old_bytes = h->direct_bytes;
  } else {
    old_bytes = class_bytes(h->size_class);
    if (n <= old_bytes) return p;  // still fits its class
  }
  void* q = mem_malloc(n, ud);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, old_bytes < n ? old_bytes : n);
  mem_free(p, ud);
  return q;
}

nghttp2_mem g_mem{nullptr, mem_malloc, mem_free, mem_calloc, mem_realloc};

}  // namespace

nghttp2_mem* session_memory() { return &g_mem; }

size_t session_memory_cached_bytes() {
  Cache* k = cache();
  return k == nullptr ? 0 : k->cached_bytes;
}

}  // namespace sparkgate::http2
