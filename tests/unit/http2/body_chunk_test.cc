#include "http2/body_chunk.h"

#include <doctest/doctest.h>

#include <vector>

using namespace sparkgate::http2;

TEST_CASE("body chunk: shared until the last reference goes; large ones come back from a bounded cache") {
  ChunkRef a(BodyChunk::make(100));
  CHECK(a->capacity() == BodyChunk::kSmallCapacity);
  const uint8_t bytes[4] = {1, 2, 3, 4};
  CHECK(a->fill(bytes, 4) == 4);
  {
    ChunkRef held = a;  // a pending write
    CHECK(a->refs() == 2);
    CHECK_FALSE(a->reuse_if_unshared());  // its bytes are still to be written
  }
  CHECK(a->refs() == 1);
  CHECK(a->reuse_if_unshared());
  CHECK(a->size() == 0);

  std::vector<ChunkRef> many;
  for (int i = 0; i < 40; ++i) many.emplace_back(BodyChunk::make(BodyChunk::kLargeCapacity));
  CHECK(many.front()->capacity() == BodyChunk::kLargeCapacity);
  std::vector<uint8_t> big(BodyChunk::kLargeCapacity + 10, 9);
  CHECK(many.front()->fill(big.data(), big.size()) == BodyChunk::kLargeCapacity);
  CHECK(many.front()->room() == 0);
  many.clear();
  CHECK(cached_body_chunks() == 16);  // the rest went back to malloc
  ChunkRef again(BodyChunk::make(70000));
  CHECK(again->capacity() == BodyChunk::kLargeCapacity);
  CHECK(cached_body_chunks() == 15);
}
