#include "core/kv_tables.h"

#include <algorithm>

#include "core/error.h"

namespace nibble {

void kv_tables::init(const kv_cache_shape& s) {
    if (s.n_slots < 1) fail("the KV cache needs at least one slot, got {}", s.n_slots);
    if (s.max_ctx < 1) fail("the KV cache needs a context of at least one position, got {}", s.max_ctx);
    if (s.block_size < 1 || (s.block_size & (s.block_size - 1)))
        fail("KV block size {} is not a power of two", s.block_size);
    if (s.n_blocks < 0) fail("KV pool of {} blocks", s.n_blocks);
    n_slots_ = s.n_slots;
    max_ctx_ = s.max_ctx;
    block_size_ = s.block_size;
    block_shift_ = 0;
    while ((1 << block_shift_) < s.block_size) ++block_shift_;
    max_blocks_ = kv_blocks_for(s.max_ctx, s.block_size);
    const bool preset = s.n_blocks == 0;
    const int64_t n = preset ? int64_t(n_slots_) * max_blocks_ : s.n_blocks;
    if (n > INT32_MAX) fail("KV pool of {} blocks exceeds the int32 block ids", n);
    n_blocks_ = int32_t(n);
    rows_.assign(size_t(n_slots_) * size_t(max_blocks_), -1);
    lengths_.assign(size_t(n_slots_), preset ? max_blocks_ : 0);
    if (preset)
        for (size_t i = 0; i < rows_.size(); ++i) rows_[i] = int32_t(i);
    dirty_first_ = 0;
    dirty_last_ = n_slots_;
}

void kv_tables::set(int32_t slot, std::span<const int32_t> blocks) {
    if (slot < 0 || slot >= n_slots_) fail("block table of slot {} outside [0, {})", slot, n_slots_);
    if (int64_t(blocks.size()) > max_blocks_)
        fail("block table of slot {} has {} blocks, at most {} ({} positions of {})", slot, blocks.size(),
             max_blocks_, max_ctx_, block_size_);
    for (int32_t b : blocks)
        if (b < 0 || b >= n_blocks_)
            fail("block table of slot {}: block {} outside [0, {})", slot, b, n_blocks_);
    int32_t* row = rows_.data() + size_t(slot) * size_t(max_blocks_);
    const size_t len = size_t(lengths_[size_t(slot)]);
    if (len == blocks.size() && std::equal(blocks.begin(), blocks.end(), row)) return;
    std::copy(blocks.begin(), blocks.end(), row);
    std::fill(row + blocks.size(), row + max_blocks_, -1);
    lengths_[size_t(slot)] = int32_t(blocks.size());
    if (dirty_first_ == dirty_last_) {
        dirty_first_ = slot;
        dirty_last_ = slot + 1;
    } else {
        dirty_first_ = std::min(dirty_first_, slot);
        dirty_last_ = std::max(dirty_last_, slot + 1);
    }
}

int32_t kv_tables::block_of(int32_t slot, int32_t pos) const {
    if (slot < 0 || slot >= n_slots_) fail("sequence slot {} outside [0, {})", slot, n_slots_);
    if (pos < 0 || pos >= max_ctx_) fail("position {} outside the context of {} tokens", pos, max_ctx_);
    const int32_t i = pos >> block_shift_;
    if (i >= lengths_[size_t(slot)])
        fail("position {} of slot {} is past its {} KV blocks of {} positions", pos, slot,
             lengths_[size_t(slot)], block_size_);
    return rows_[size_t(slot) * size_t(max_blocks_) + size_t(i)];
}

}  // namespace nibble
