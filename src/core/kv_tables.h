// The host side of a paged KV cache (core/backend.h, kv_cache_shape): the pool's sizes and every slot's
// block table, validated once here for every backend. The CPU backend reads positions through it; the
// CUDA backend mirrors the tables on the device ([n_slots][max_blocks] int32, uploaded when changed).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/backend.h"

namespace nibble {

class kv_tables {
  public:
    // Validates the shape (n_slots, max_ctx >= 1, block_size a power of two, n_blocks >= 0) and sets the
    // tables: preset (n_blocks == 0, which resolves n_blocks) or empty.
    void init(const kv_cache_shape& shape);
    // Replaces slot's table; fails for a slot, length or block id out of range.
    void set(int32_t slot, std::span<const int32_t> blocks);
    // The block holding position pos of slot; fails when the slot or position is outside the table.
    int32_t block_of(int32_t slot, int32_t pos) const;
    // Fails unless position pos of slot is inside its table (and inside max_ctx).
    void check(int32_t slot, int32_t pos) const { (void)block_of(slot, pos); }

    int32_t n_slots() const { return n_slots_; }
    int32_t max_ctx() const { return max_ctx_; }
    int32_t block_size() const { return block_size_; }
    int32_t block_shift() const { return block_shift_; }
    int32_t n_blocks() const { return n_blocks_; }
    // Entries per table row: ceil(max_ctx / block_size).
    int32_t max_blocks() const { return max_blocks_; }
    // Row-major [n_slots][max_blocks]; entries past a table's length are -1.
    const std::vector<int32_t>& rows() const { return rows_; }
    // Slots whose tables changed since the last clear_dirty(), as a range [first, last) (empty: first ==
    // last).
    int32_t dirty_first() const { return dirty_first_; }
    int32_t dirty_last() const { return dirty_last_; }
    void clear_dirty() { dirty_first_ = dirty_last_ = 0; }

  private:
    int32_t n_slots_ = 0, max_ctx_ = 0, block_size_ = 0, block_shift_ = 0, n_blocks_ = 0, max_blocks_ = 0;
    std::vector<int32_t> rows_, lengths_;
    int32_t dirty_first_ = 0, dirty_last_ = 0;
};

}  // namespace nibble
