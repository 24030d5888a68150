// The allocator behind every nghttp2 session (nghttp2_mem): per-thread free lists of
// power-of-two size classes, so that the per-stream and per-frame memory nghttp2 takes
// and gives back on every RPC (stream objects, outbound items, header copies, HPACK
// buffers: 12 of the ~109 heap allocations per unary RPC before it) comes from a list
// instead of malloc once a worker has warmed up.
//
// Blocks are plain malloc blocks (no header, no rounding; lists per malloc chunk size), so
// what lives as long as a connection costs an idle connection no more than with malloc.
// Bounded: each thread keeps at most 256 KiB per chunk size up to 2 KiB, and 1 MiB in
// all; what does not fit goes back to malloc. A block freed on another thread joins that
// thread's lists, which is correct (the lists only hold malloc'ed blocks).
//
// Threading: thread-safe (all state is per thread).
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <new>
#include <string>

namespace sparkgate::http2 {

// The nghttp2_mem to pass to nghttp2_session_{server,client}_new3.
nghttp2_mem* session_memory();

// Bytes cached in this thread's lists (tests).
size_t session_memory_cached_bytes();
// Gives every block of this thread's lists back to malloc (tests start from empty lists).
void session_memory_release_cached();

// The largest request the lists serve; a larger one goes to malloc and back every time.
// A per-RPC object checks its size against it (static_assert) so that growing it past
// the lists shows at build time, not as a malloc per RPC in the benchmark.
inline constexpr size_t kLargestPooledBytes = 2048;

// The same lists for the gateway's own per-stream objects: a class that is made and
// destroyed once per RPC declares
//   static void* operator new(size_t n) { return pooled_new(n); }
//   static void operator delete(void* p) noexcept { pooled_free(p); }
// Blocks are malloc blocks, so a block freed on another thread is as safe as with malloc.
void* pooled_malloc(size_t n);  // nullptr when out of memory
void pooled_free(void* p) noexcept;
inline void* pooled_new(size_t n) {
  if (void* p = pooled_malloc(n)) return p;
  throw std::bad_alloc();
}

// A std::allocator over the same lists, for std::allocate_shared of a per-RPC object (its
// control block and the object in one pooled block).
template <typename T>
struct PooledAllocator {
  using value_type = T;
  PooledAllocator() = default;
  template <typename U>
  PooledAllocator(const PooledAllocator<U>&) noexcept {}
  T* allocate(size_t n) { return static_cast<T*>(pooled_new(n * sizeof(T))); }
  void deallocate(T* p, size_t) noexcept { pooled_free(p); }
  template <typename U>
  bool operator==(const PooledAllocator<U>&) const noexcept {
    return true;
  }
};

// A per-RPC string longer than the 15 characters a std::string holds in place (an id, a
// header value kept for the RPC's life): its block comes from the same lists.
using PooledString = std::basic_string<char, std::char_traits<char>, PooledAllocator<char>>;

}  // namespace sparkgate::http2
