#include "proxy/byte_queue.h"

#include <doctest/doctest.h>

#include <deque>
#include <vector>

using sparkgate::proxy::ByteQueue;

TEST_CASE("byte queue is FIFO across wrap-around and growth") {
  ByteQueue q;
  std::deque<uint8_t> model;
  uint8_t next = 0;
  uint32_t x = 7;
  std::vector<uint8_t> in, out;
  for (int step = 0; step < 5000; ++step) {
    x = x * 1103515245 + 12345;
    size_t n = (x >> 8) % 9000;
    if ((x >> 20) % 2) {
      in.resize(n);
      for (auto& b : in) model.push_back(b = next++);
      q.append(in.data(), n);
    } else {
      out.resize(n);
      size_t got = q.read(out.data(), n);
      REQUIRE(got == std::min(n, model.size()));
      for (size_t i = 0; i < got; ++i) {
        REQUIRE(out[i] == model.front());
        model.pop_front();
      }
    }
    REQUIRE(q.size() == model.size());
  }
}

TEST_CASE("byte queue capacity follows the backlog, not the bytes that passed through") {
  ByteQueue q;
  std::vector<uint8_t> chunk(16 * 1024, 1), sink(16 * 1024);
  // A steady 1 MiB backlog with 64 MiB flowing through it: the capacity stays at the
  // backlog's power of two instead of growing with the traffic.
  for (int i = 0; i < 64; ++i) q.append(chunk.data(), chunk.size());
  for (int i = 0; i < 64 * 64; ++i) {
    q.append(chunk.data(), chunk.size());
    REQUIRE(q.read(sink.data(), sink.size()) == sink.size());
  }
  CHECK(q.size() == 1024 * 1024);
  CHECK(q.capacity() <= 2 * 1024 * 1024);
  q.release();
  CHECK(q.capacity() == 0);
  CHECK(q.empty());
  q.append(chunk.data(), 10);
  CHECK(q.size() == 10);
}

TEST_CASE("byte queue: reading an empty, never-allocated queue copies nothing") {
  ByteQueue q;
  uint8_t out[4] = {9, 9, 9, 9};
  CHECK(q.read(out, sizeof out) == 0);
  CHECK(out[0] == 9);
  const uint8_t one[1] = {1};
  q.append(one, 1);  // grow() reads the (empty) old contents first
  CHECK(q.read(out, sizeof out) == 1);
  CHECK(out[0] == 1);
}
