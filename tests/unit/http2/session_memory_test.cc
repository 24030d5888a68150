#include "http2/session_memory.h"

#include <doctest/doctest.h>

#include <cstring>
#include <memory>
#include <vector>

using namespace sparkgate::http2;

// Under AddressSanitizer malloc_usable_size is the size asked for, not glibc's chunk
// size, so a block is found again only when its size is a whole chunk: the identity
// checks hold for glibc's malloc.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kGlibcChunks = false;
#else
constexpr bool kGlibcChunks = true;
#endif

TEST_CASE("session memory: a freed block is handed out again for a request of its size, bounded per size") {
  nghttp2_mem* mem = session_memory();
  const size_t before = session_memory_cached_bytes();
  void* a = mem->malloc(200, mem->mem_user_data);
  REQUIRE(a != nullptr);
  std::memset(a, 0xab, 200);
  mem->free(a, mem->mem_user_data);
  CHECK(session_memory_cached_bytes() > before);
  void* b = mem->malloc(200, mem->mem_user_data);
  CHECK(b == a);  // from the list, not malloc (200 + 8 is a whole chunk, also under ASan)
  CHECK(session_memory_cached_bytes() == before);
  mem->free(b, mem->mem_user_data);

  // calloc zeroes a recycled block; realloc keeps the contents.
  auto* z = static_cast<unsigned char*>(mem->calloc(1, 200, mem->mem_user_data));
  REQUIRE(z != nullptr);
  CHECK(z[0] == 0);
  CHECK(z[199] == 0);
  z[0] = 7;
  auto* r = static_cast<unsigned char*>(mem->realloc(z, 5000, mem->mem_user_data));
  REQUIRE(r != nullptr);
  CHECK(r[0] == 7);
  mem->free(r, mem->mem_user_data);
  mem->free(nullptr, mem->mem_user_data);

  // Many frees of one size keep about 256 KiB of that size, not the 440 KiB freed. The
  // bound is per malloc chunk size, and blocks asked for with one size need not all have
  // the same chunk: glibc hands out a free chunk up to 16 bytes larger whole (the
  // remainder would be too small to split), so the blocks fall into at most two
  // neighbouring lists, each bounded.
  session_memory_release_cached();
  std::vector<void*> blocks;
  for (int i = 0; i < 4000; ++i) blocks.push_back(mem->malloc(100, mem->mem_user_data));
  for (void* p : blocks) mem->free(p, mem->mem_user_data);
  const size_t kept = session_memory_cached_bytes();
  CHECK(kept >= 192 * 1024);      // most of one list's worth is kept for reuse
  CHECK(kept <= 2 * 256 * 1024);  // and no more than two lists' bound
  session_memory_release_cached();
  CHECK(session_memory_cached_bytes() == 0);
}

TEST_CASE("session memory: a thread keeps at most 1 MiB in all its lists") {
  // Five sizes, 400 blocks each (2.2 MB in all, each size past its own list's 256 KiB):
  // what is kept stops at the thread's 1 MiB.
  session_memory_release_cached();
  std::vector<void*> blocks;
  for (size_t size : {2000, 1500, 1000, 700, 400}) {
    for (int i = 0; i < 400; ++i) blocks.push_back(pooled_new(size));
  }
  for (void* p : blocks) pooled_free(p);
  const size_t kept = session_memory_cached_bytes();
  CHECK(kept <= 1024 * 1024);
  CHECK(kept >= 1024 * 1024 - 2 * 2064);  // filled up to the bound (the last block may not fit)
  // A block of an empty list does not take the thread past its bound either.
  void* one = pooled_new(64);
  pooled_free(one);
  CHECK(session_memory_cached_bytes() <= 1024 * 1024);
  session_memory_release_cached();
}

namespace {
struct Pooled {
  static void* operator new(size_t n) { return pooled_new(n); }
  static void operator delete(void* p) noexcept { pooled_free(p); }
  char payload[300];
};
}  // namespace

TEST_CASE("session memory: per-RPC objects reuse their blocks (operator new, allocate_shared)") {
  auto* first = new Pooled;
  void* where = first;
  delete first;
  auto* second = new Pooled;
  if (kGlibcChunks) CHECK(static_cast<void*>(second) == where);
  delete second;

  auto s = std::allocate_shared<Pooled>(PooledAllocator<Pooled>());
  const void* block = s.get();
  s.reset();
  auto t = std::allocate_shared<Pooled>(PooledAllocator<Pooled>());
  if (kGlibcChunks) CHECK(static_cast<const void*>(t.get()) == block);
  CHECK(t.use_count() == 1);
}

TEST_CASE("session memory: a 2 KiB block, the largest cached size, is cached too") {
  // A request of 2048 bytes gets glibc's chunk of 2064 bytes (usable 2056), one class above
  // 2048 / 16: the lists once stopped one class short, so the small body chunk and the
  // write buffer's 2 KiB step went to malloc and back on every RPC. The lists start empty.
  session_memory_release_cached();
  std::vector<void*> held;
  for (int i = 0; i < 20; ++i) held.push_back(pooled_new(2048));
  const size_t before = session_memory_cached_bytes();
  void* a = held.back();
  held.pop_back();
  pooled_free(a);
  CHECK(session_memory_cached_bytes() > before);
  // The classes are glibc's chunk sizes: under AddressSanitizer malloc_usable_size is the
  // size asked for, so a freed block lands one class lower than a request of its size
  // looks in, and the byte counts below hold only for glibc's malloc (the plain unit run).
  void* b = pooled_new(2048);
  if (kGlibcChunks) CHECK(b == a);
  if (kGlibcChunks) CHECK(session_memory_cached_bytes() == before);
  held.push_back(b);

  // The next chunk size up (a request of 2057 bytes or more) is not cached.
  void* c = pooled_new(2057);
  pooled_free(c);
  if (kGlibcChunks) CHECK(session_memory_cached_bytes() == before);
  for (void* p : held) pooled_free(p);
}
