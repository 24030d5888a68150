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

namespace {
std::string flatten(sparkgate::http2::WriteBuffer& out) {
  std::string s;
  for (const auto& b : out.buffers()) s.append(static_cast<const char*>(b.data()), b.size());
  return s;
}
std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}
}  // namespace

TEST_CASE("byte queue take: large runs go out by reference, and later appends never overwrite them") {
  using sparkgate::http2::WriteBuffer;
  ByteQueue q;
  auto a = pattern(100 * 1024, 1);
  q.append(a.data(), a.size());
  WriteBuffer out;
  out.set_in_place(true);
  const uint8_t hd[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  out.append(hd, sizeof hd);
  q.take(70 * 1024, out);
  CHECK(q.size() == 30 * 1024);
  CHECK(out.size() == 9 + 70 * 1024);
  // The 64 KiB chunk boundary splits the run: two shared runs after the header.
  CHECK(out.shared_runs() == 2);
  // The queue drains and refills while the write still holds its chunks: the bytes the
  // write refers to stay as they were.
  std::vector<uint8_t> sink(30 * 1024);
  REQUIRE(q.read(sink.data(), sink.size()) == sink.size());
  CHECK(std::equal(sink.begin(), sink.end(), a.begin() + 70 * 1024));
  auto b = pattern(200 * 1024, 99);
  q.append(b.data(), b.size());
  std::string written = flatten(out);
  REQUIRE(written.size() == 9 + 70 * 1024);
  CHECK(std::equal(hd, hd + 9, reinterpret_cast<const uint8_t*>(written.data())));
  CHECK(std::equal(a.begin(), a.begin() + 70 * 1024, reinterpret_cast<const uint8_t*>(written.data()) + 9));
  out.clear();  // the write is done: its chunks go back
  std::vector<uint8_t> rest(b.size());
  REQUIRE(q.read(rest.data(), rest.size()) == rest.size());
  CHECK(rest == b);
}

TEST_CASE("byte queue take: small runs and TLS-style buffers are copied, in order") {
  using sparkgate::http2::WriteBuffer;
  ByteQueue q;
  auto a = pattern(1000, 5);
  q.append(a.data(), a.size());
  WriteBuffer out;
  out.set_in_place(true);
  q.take(1000, out);  // below WriteBuffer::kCopyBelow
  CHECK(out.shared_runs() == 0);
  WriteBuffer tls;  // in-place writes off
  auto big = pattern(50 * 1024, 3);
  q.append(big.data(), big.size());
  q.take(big.size(), tls);
  CHECK(tls.shared_runs() == 0);
  std::string s = flatten(out) + flatten(tls);
  REQUIRE(s.size() == a.size() + big.size());
  CHECK(std::equal(a.begin(), a.end(), reinterpret_cast<const uint8_t*>(s.data())));
  CHECK(std::equal(big.begin(), big.end(), reinterpret_cast<const uint8_t*>(s.data()) + a.size()));
  CHECK(q.empty());
}

TEST_CASE("write buffer: a rollback drops the frame and the chunk references it took") {
  using sparkgate::http2::WriteBuffer;
  ByteQueue q;
  auto a = pattern(8 * 1024, 11);
  q.append(a.data(), a.size());
  WriteBuffer out;
  out.set_in_place(true);
  const uint8_t frame[3] = {7, 7, 7};
  out.append(frame, 3);
  auto m = out.mark();
  out.append(frame, 3);
  q.take(8 * 1024, out);
  CHECK(out.shared_runs() == 1);
  out.rollback(m);
  CHECK(out.shared_runs() == 0);
  CHECK(flatten(out) == std::string(3, '\7'));
}
