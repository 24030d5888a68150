// The allocator behind every nghttp2 session (nghttp2_mem): per-thread free lists of
// power-of-two size classes, so that the per-stream and per-frame memory nghttp2 takes
// and gives back on every RPC (stream objects, outbound items, header copies, HPACK
// buffers: 12 of the ~109 heap allocations per unary RPC before it) comes from a list
// instead of malloc once a worker has warmed up.
//
// Blocks are plain malloc blocks (no header, no rounding; lists per malloc chunk size), so
// what lives as long as a connection costs an idle connection no more than with malloc.
// Bounded: each thread keeps at most 32 KiB per chunk size up to 2 KiB (4 MiB per thread
// at the very most, far less in practice: only the sizes nghttp2 frees are held); what
// does not fit goes back to malloc. A block freed on another thread joins that
// thread's lists, which is correct (the lists only hold malloc'ed blocks).
//
// Threading: thread-safe (all state is per thread).
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstddef>

namespace sparkgate::http2 {

// The nghttp2_mem to pass to nghttp2_session_{server,client}_new3.
nghttp2_mem* session_memory();

// Bytes cached in this thread's lists (tests).
size_t session_memory_cached_bytes();

}  // namespace sparkgate::http2
