// A counting allocator for the benchmark: built as an LD_PRELOAD shared object
// (tests/bench/meson.build), it counts every heap allocation of the process it is loaded
// into and passes each call on to glibc's allocator (__libc_malloc and friends).
//
//   ALLOC_COUNTER_FILE=/tmp/counts LD_PRELOAD=build/tests/bench/liballoc_counter.so sparkgate ...
//
// Counted: malloc, calloc, realloc, free, posix_memalign, aligned_alloc, memalign, valloc,
// and every form of operator new and delete (which also count as the malloc or free they
// make). The counts live in a shared mapping of ALLOC_COUNTER_FILE (the struct below,
// 8-byte counters in that order), so a reader (tests/bench/bench.py) takes a snapshot
// whenever it likes, without a signal and without stopping the process: "allocations per
// RPC after warm-up" is the difference of two snapshots divided by the RPCs between them.
// At exit the totals are printed to stderr as one line, `alloc_counter: malloc=N ...`.
// Without ALLOC_COUNTER_FILE only the exit line is written.

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void __libc_free(void*);
void* __libc_memalign(size_t, size_t);
}

namespace {

// The layout of ALLOC_COUNTER_FILE: keep in step with ALLOC_FIELDS in bench.py.
struct Counters {
  std::atomic<uint64_t> magic;        // kMagic once the mapping is set up
  std::atomic<uint64_t> allocations;  // every call that returns new memory (malloc, calloc,
                                      // realloc of nullptr or to a new block, memalign, new)
  std::atomic<uint64_t> frees;        // free of a non-null pointer, delete
  std::atomic<uint64_t> mallocs;
  std::atomic<uint64_t> callocs;
  std::atomic<uint64_t> reallocs;
  std::atomic<uint64_t> aligned;  // posix_memalign, aligned_alloc, memalign, valloc
  std::atomic<uint64_t> news;     // operator new, every form
  std::atomic<uint64_t> deletes;  // operator delete of a non-null pointer, every form
  std::atomic<uint64_t> bytes;    // bytes requested by the allocations
};
constexpr uint64_t kMagic = 0x616c6c6f63636e74;  // "alloccnt"

Counters g_static;  // before the mapping exists, and when there is none
Counters* g = &g_static;

void count_alloc(size_t n) {
  g->allocations.fetch_add(1, std::memory_order_relaxed);
  g->bytes.fetch_add(n, std::memory_order_relaxed);
}

__attribute__((constructor)) void map_counters() {
  const char* path = std::getenv("ALLOC_COUNTER_FILE");
  if (path == nullptr || *path == '\0') return;
  int fd = ::open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;
  if (::ftruncate(fd, static_cast<off_t>(sizeof(Counters))) != 0) {
    ::close(fd);
    return;
  }
  void* p = ::mmap(nullptr, sizeof(Counters), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return;
  auto* mapped = static_cast<Counters*>(p);
  // The counts so far (the dynamic loader's and constructors' allocations) move over.
  mapped->allocations.store(g_static.allocations.load());
  mapped->frees.store(g_static.frees.load());
  mapped->mallocs.store(g_static.mallocs.load());
  mapped->callocs.store(g_static.callocs.load());
  mapped->reallocs.store(g_static.reallocs.load());
  mapped->aligned.store(g_static.aligned.load());
  mapped->news.store(g_static.news.load());
  mapped->deletes.store(g_static.deletes.load());
  mapped->bytes.store(g_static.bytes.load());
  mapped->magic.store(kMagic, std::memory_order_release);
  g = mapped;
}

__attribute__((destructor)) void print_counters() {
  char line[400];
  int n = std::snprintf(line, sizeof line,
                        "alloc_counter: allocations=%llu frees=%llu malloc=%llu calloc=%llu realloc=%llu "
                        "aligned=%llu new=%llu delete=%llu bytes=%llu\n",
                        static_cast<unsigned long long>(g->allocations.load()),
                        static_cast<unsigned long long>(g->frees.load()),
                        static_cast<unsigned long long>(g->mallocs.load()),
                        static_cast<unsigned long long>(g->callocs.load()),
                        static_cast<unsigned long long>(g->reallocs.load()),
                        static_cast<unsigned long long>(g->aligned.load()),
                        static_cast<unsigned long long>(g->news.load()),
                        static_cast<unsigned long long>(g->deletes.load()),
                        static_cast<unsigned long long>(g->bytes.load()));
  if (n > 0) {
    ssize_t ignored = ::write(STDERR_FILENO, line, static_cast<size_t>(n));
    (void)ignored;
  }
}

void* counted_new(size_t n) {
  g->news.fetch_add(1, std::memory_order_relaxed);
  void* p = std::malloc(n == 0 ? 1 : n);  // counted as a malloc too
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void* counted_new_aligned(size_t n, std::align_val_t al) {
  g->news.fetch_add(1, std::memory_order_relaxed);
  g->aligned.fetch_add(1, std::memory_order_relaxed);
  count_alloc(n);
  void* p = __libc_memalign(static_cast<size_t>(al), n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void counted_delete(void* p) {
  if (p == nullptr) return;
  g->deletes.fetch_add(1, std::memory_order_relaxed);
  std::free(p);  // counted as a free too
}

}  // namespace

extern "C" {

void* malloc(size_t n) {
  g->mallocs.fetch_add(1, std::memory_order_relaxed);
  count_alloc(n);
  return __libc_malloc(n);
}

void* calloc(size_t count, size_t size) {
  g->callocs.fetch_add(1, std::memory_order_relaxed);
  count_alloc(count * size);
  return __libc_calloc(count, size);
}

void* realloc(void* p, size_t n) {
  g->reallocs.fetch_add(1, std::memory_order_relaxed);
  void* q = __libc_realloc(p, n);
  // A realloc that grows in place allocates nothing new; one that moves (or starts from
  // nullptr) is an allocation, and a move frees the old block.
  if (q != nullptr && q != p) {
    count_alloc(n);
    if (p != nullptr) g->frees.fetch_add(1, std::memory_order_relaxed);
  } else if (q == nullptr && p != nullptr && n == 0) {
    g->frees.fetch_add(1, std::memory_order_relaxed);
  }
  return q;
}

void free(void* p) {
  if (p == nullptr) return;
  g->frees.fetch_add(1, std::memory_order_relaxed);
  __libc_free(p);
}

int posix_memalign(void** out, size_t alignment, size_t n) {
  if (alignment < sizeof(void*) || (alignment & (alignment - 1)) != 0) return EINVAL;
  g->aligned.fetch_add(1, std::memory_order_relaxed);
  count_alloc(n);
  void* p = __libc_memalign(alignment, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

void* aligned_alloc(size_t alignment, size_t n) {
  g->aligned.fetch_add(1, std::memory_order_relaxed);
  count_alloc(n);
  return __libc_memalign(alignment, n);
}

void* memalign(size_t alignment, size_t n) {
  g->aligned.fetch_add(1, std::memory_order_relaxed);
  count_alloc(n);
  return __libc_memalign(alignment, n);
}

void* valloc(size_t n) {
  g->aligned.fetch_add(1, std::memory_order_relaxed);
  count_alloc(n);
  return __libc_memalign(static_cast<size_t>(::sysconf(_SC_PAGESIZE)), n);
}

}  // extern "C"

void* operator new(size_t n) { return counted_new(n); }
void* operator new[](size_t n) { return counted_new(n); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new(size_t n, std::align_val_t al) { return counted_new_aligned(n, al); }
void* operator new[](size_t n, std::align_val_t al) { return counted_new_aligned(n, al); }
void* operator new(size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  try {
    return counted_new_aligned(n, al);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new[](size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  try {
    return counted_new_aligned(n, al);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

void operator delete(void* p) noexcept { counted_delete(p); }
void operator delete[](void* p) noexcept { counted_delete(p); }
void operator delete(void* p, size_t) noexcept { counted_delete(p); }
void operator delete[](void* p, size_t) noexcept { counted_delete(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_delete(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_delete(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_delete(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_delete(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { counted_delete(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { counted_delete(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { counted_delete(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { counted_delete(p); }
