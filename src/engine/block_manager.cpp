// The paged KV block manager with automatic prefix caching: see block_manager.h for the contract.
#include "engine/block_manager.h"

#include <algorithm>
#include <cstddef>
#include <utility>

#include "core/error.h"

namespace nibble {

namespace {

constexpr uint64_t fnv_offset = 0xcbf29ce484222325ull;
constexpr uint64_t fnv_prime = 0x100000001b3ull;

uint64_t fnv1a_bytes(uint64_t h, uint64_t value, int n_bytes) {
    for (int i = 0; i < n_bytes; ++i) {
        h ^= (value >> (8 * i)) & 0xff;
        h *= fnv_prime;
    }
    return h;
}

}  // namespace

uint64_t block_hash_fnv1a(uint64_t parent, std::span<const int32_t> tokens) {
    uint64_t h = fnv1a_bytes(fnv_offset, parent, 8);
    for (int32_t t : tokens) h = fnv1a_bytes(h, uint64_t(uint32_t(t)), 4);
    return h;
}

block_manager::block_manager(int32_t n_blocks, int32_t block_size, block_hash_fn hash, bool caching)
    : block_size_(block_size), caching_(caching), hash_(std::move(hash)) {
    if (n_blocks < 1 || block_size < 1)
        fail("block_manager: needs n_blocks >= 1 and block_size >= 1, got {} blocks of {} tokens", n_blocks,
             block_size);
    if (!hash_) fail("block_manager: no hash function");
    blocks_.resize(size_t(n_blocks));
    cached_ids_.resize(size_t(n_blocks) * size_t(block_size));
    fresh_.reserve(size_t(n_blocks));
    for (int32_t b = n_blocks - 1; b >= 0; --b) fresh_.push_back(b);
}

std::span<const int32_t> block_manager::cached_ids(int32_t b) const {
    return {cached_ids_.data() + size_t(b) * size_t(block_size_), size_t(block_size_)};
}

block_manager::sequence& block_manager::find(int64_t seq_id, const char* what) {
    auto it = seqs_.find(seq_id);
    if (it == seqs_.end()) fail("block_manager: {} of unknown sequence {}", what, seq_id);
    return it->second;
}

const block_manager::sequence& block_manager::find(int64_t seq_id, const char* what) const {
    auto it = seqs_.find(seq_id);
    if (it == seqs_.end()) fail("block_manager: {} of unknown sequence {}", what, seq_id);
    return it->second;
}

std::vector<int32_t> block_manager::match_prefix(std::span<const int32_t> tokens) const {
    std::vector<int32_t> hits;
    if (tokens.empty() || !caching_) return hits;
    size_t n_full = (tokens.size() - 1) / size_t(block_size_);
    uint64_t parent_hash = 0;
    int32_t parent = -1;
    for (size_t i = 0; i < n_full; ++i) {
        std::span<const int32_t> ids = tokens.subspan(i * size_t(block_size_), size_t(block_size_));
        uint64_t h = hash_(parent_hash, ids);
        auto it = cache_.find(h);
        if (it == cache_.end()) break;
        int32_t b = it->second;
        std::span<const int32_t> stored = cached_ids(b);
        if (blocks_[size_t(b)].parent != parent || !std::equal(ids.begin(), ids.end(), stored.begin())) break;
        hits.push_back(b);
        parent_hash = h;
        parent = b;
    }
    return hits;
}

int32_t block_manager::n_blocks_needed(std::span<const int32_t> tokens,
                                       const std::vector<int32_t>& hits) const {
    int32_t n_table = int32_t((tokens.size() + size_t(block_size_) - 1) / size_t(block_size_));
    int32_t n_evictable_hits = 0;
    for (int32_t b : hits)
        if (blocks_[size_t(b)].ref_count == 0) ++n_evictable_hits;
    return n_table - int32_t(hits.size()) + n_evictable_hits;
}

bool block_manager::can_allocate(int32_t n_tokens) const {
    int64_t n_table = (int64_t(std::max(n_tokens, 0)) + block_size_ - 1) / block_size_;
    return n_table <= n_free_blocks();
}

bool block_manager::can_allocate(std::span<const int32_t> tokens) const {
    return n_blocks_needed(tokens, match_prefix(tokens)) <= n_free_blocks();
}

int32_t block_manager::take_free_block() {
    if (!fresh_.empty()) {
        int32_t b = fresh_.back();
        fresh_.pop_back();
        return b;
    }
    int32_t b = lru_.front();
    lru_.pop_front();
    block& blk = blocks_[size_t(b)];
    cache_.erase(blk.hash);
    blk.cached = false;
    blk.parent = -1;
    return b;
}

int32_t block_manager::allocate(int64_t seq_id, std::span<const int32_t> tokens) {
    if (seqs_.count(seq_id)) fail("block_manager: sequence {} is already allocated", seq_id);
    if (tokens.empty()) fail("block_manager: sequence {} has no tokens to allocate", seq_id);
    std::vector<int32_t> hits = match_prefix(tokens);
    int32_t n_needed = n_blocks_needed(tokens, hits);
    if (n_needed > n_free_blocks())
        fail(
            "block_manager: sequence {} needs {} free KV blocks for {} tokens ({} cached), only {} of {} are "
            "free",
            seq_id, n_needed, tokens.size(), hits.size() * size_t(block_size_), n_free_blocks(), n_blocks());
    sequence s;
    s.tokens.assign(tokens.begin(), tokens.end());
    s.table.reserve((tokens.size() + size_t(block_size_) - 1) / size_t(block_size_));
    for (int32_t b : hits) {
        block& blk = blocks_[size_t(b)];
        if (blk.ref_count++ == 0) lru_.erase(blk.lru_pos);
        s.table.push_back(b);
    }
    while (s.table.size() * size_t(block_size_) < tokens.size()) {
        int32_t b = take_free_block();
        blocks_[size_t(b)].ref_count = 1;
        s.table.push_back(b);
    }
    s.n_hashed = int32_t(hits.size());
    s.n_computed = int32_t(hits.size()) * block_size_;
    stats_.n_queried += int64_t(tokens.size());
    stats_.n_hit += s.n_computed;
    int32_t n_cached = s.n_computed;
    seqs_.emplace(seq_id, std::move(s));
    return n_cached;
}

bool block_manager::can_append(int64_t seq_id) const {
    const sequence& s = find(seq_id, "can_append");
    return s.tokens.size() < s.table.size() * size_t(block_size_) || n_free_blocks() > 0;
}

void block_manager::append_slot(int64_t seq_id, int32_t token) {
    sequence& s = find(seq_id, "append_slot");
    if (s.tokens.size() == s.table.size() * size_t(block_size_)) {
        if (n_free_blocks() == 0)
            fail("block_manager: sequence {} needs a new KV block for token position {}, none of {} is free",
                 seq_id, s.tokens.size(), n_blocks());
        int32_t b = take_free_block();
        blocks_[size_t(b)].ref_count = 1;
        s.table.push_back(b);
    }
    s.tokens.push_back(token);
}

void block_manager::mark_computed(int64_t seq_id, int32_t n_computed) {
    sequence& s = find(seq_id, "mark_computed");
    if (n_computed < s.n_computed || size_t(n_computed) > s.tokens.size())
        fail("block_manager: sequence {} marked {} tokens computed, expected {} to {}", seq_id, n_computed,
             s.n_computed, s.tokens.size());
    s.n_computed = n_computed;
    if (caching_) cache_full_blocks(s);
}

void block_manager::cache_full_blocks(sequence& s) {
    int32_t n_full = s.n_computed / block_size_;
    for (; s.n_hashed < n_full; ++s.n_hashed) {
        size_t i = size_t(s.n_hashed);
        int32_t parent = i == 0 ? -1 : s.table[i - 1];
        if (parent >= 0 && !blocks_[size_t(parent)].cached) continue;
        uint64_t parent_hash = parent >= 0 ? blocks_[size_t(parent)].hash : 0;
        std::span<const int32_t> ids{s.tokens.data() + i * size_t(block_size_), size_t(block_size_)};
        uint64_t h = hash_(parent_hash, ids);
        if (cache_.count(h)) continue;
        int32_t b = s.table[i];
        block& blk = blocks_[size_t(b)];
        blk.cached = true;
        blk.hash = h;
        blk.parent = parent;
        std::copy(ids.begin(), ids.end(), cached_ids_.begin() + ptrdiff_t(size_t(b) * size_t(block_size_)));
        cache_.emplace(h, b);
    }
}

void block_manager::free(int64_t seq_id) {
    sequence& s = find(seq_id, "free");
    for (auto it = s.table.rbegin(); it != s.table.rend(); ++it) {
        block& blk = blocks_[size_t(*it)];
        if (--blk.ref_count > 0) continue;
        if (blk.cached)
            blk.lru_pos = lru_.insert(lru_.end(), *it);
        else
            fresh_.push_back(*it);
    }
    seqs_.erase(seq_id);
}

const std::vector<int32_t>& block_manager::block_table(int64_t seq_id) const {
    return find(seq_id, "block_table").table;
}

int32_t block_manager::n_tokens(int64_t seq_id) const {
    return int32_t(find(seq_id, "n_tokens").tokens.size());
}

int32_t block_manager::n_computed(int64_t seq_id) const {
    return find(seq_id, "n_computed").n_computed;
}

int32_t block_manager::ref_count(int32_t block) const {
    if (block < 0 || block >= n_blocks())
        fail("block_manager: block {} out of range [0, {})", block, n_blocks());
    return blocks_[size_t(block)].ref_count;
}

bool block_manager::is_cached(int32_t block) const {
    if (block < 0 || block >= n_blocks())
        fail("block_manager: block {} out of range [0, {})", block, n_blocks());
    return blocks_[size_t(block)].cached;
}

void block_manager::check_invariants() const {
    std::vector<int32_t> refs(blocks_.size(), 0), n_free(blocks_.size(), 0);
    for (const auto& [id, s] : seqs_) {
        if (s.table.size() != (s.tokens.size() + size_t(block_size_) - 1) / size_t(block_size_))
            fail("block_manager: sequence {} has {} blocks for {} tokens", id, s.table.size(),
                 s.tokens.size());
        for (size_t i = 0; i < s.table.size(); ++i) {
            int32_t b = s.table[i];
            ++refs[size_t(b)];
            const block& blk = blocks_[size_t(b)];
            int32_t parent = i == 0 ? -1 : s.table[i - 1];
            if (blk.cached && blk.parent != parent)
                fail("block_manager: sequence {} holds cached block {} after {}, its parent is {}", id, b,
                     parent, blk.parent);
        }
    }
    for (int32_t b : fresh_) ++n_free[size_t(b)];
    for (int32_t b : lru_) ++n_free[size_t(b)];
    for (size_t b = 0; b < blocks_.size(); ++b) {
        const block& blk = blocks_[b];
        if (refs[b] != blk.ref_count)
            fail("block_manager: block {} has ref_count {} but {} table references", b, blk.ref_count,
                 refs[b]);
        if (n_free[b] != (blk.ref_count == 0 ? 1 : 0))
            fail("block_manager: block {} with ref_count {} is in the free lists {} times", b, blk.ref_count,
                 n_free[b]);
        if (blk.cached) {
            auto it = cache_.find(blk.hash);
            if (it == cache_.end() || it->second != int32_t(b))
                fail("block_manager: cached block {} is not in the cache map", b);
            if (blk.parent >= 0 && !blocks_[size_t(blk.parent)].cached)
                fail("block_manager: cached block {} has an uncached parent {}", b, blk.parent);
        }
    }
    for (int32_t b : lru_)
        if (!blocks_[size_t(b)].cached) fail("block_manager: uncached block {} is in the LRU list", b);
    for (int32_t b : fresh_)
        if (blocks_[size_t(b)].cached) fail("block_manager: cached block {} is in the fresh list", b);
    for (const auto& [h, b] : cache_)
        if (!blocks_[size_t(b)].cached || blocks_[size_t(b)].hash != h)
            fail("block_manager: the cache map names block {} for a hash it does not hold", b);
}

}  // namespace nibble
