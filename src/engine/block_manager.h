// The paged KV block manager with automatic prefix caching (vLLM V1's design), never touching a
// tensor: it decides which KV blocks hold which positions of which sequence; the KV cache itself
// lives elsewhere and is indexed by these block ids (position p of a sequence is slot
// block_table[p / block_size] * block_size + p % block_size).
//
// Contract
// - A pool of n_blocks blocks of block_size token positions. A sequence owns a block table (block
//   ids in position order) covering all its known tokens (prompt, then each appended token).
// - allocate(id, tokens) looks the prompt up in the prefix cache, block by block from the start,
//   and returns how many leading tokens already have their KV (a multiple of block_size, at most
//   the full blocks before the last token: the last token is always computed, for its logits).
//   The rest of the prompt gets fresh blocks. Preemption by recompute is free() then a later
//   allocate() with every known token (it usually hits its own blocks, still cached).
// - append_slot(id, token) adds one known token (a decode step), taking a new block when the last
//   one is full. can_allocate() / can_append() say whether enough blocks are free; calling
//   allocate() / append_slot() when they are not is an error.
// - mark_computed(id, n) tells that the KV of the first n tokens is written (n never decreases).
//   Only then do the full blocks among them enter the prefix cache, so that no other sequence
//   reuses a block whose KV is not there yet (chunked prefill, decode blocks once they fill).
// - free(id) releases the table. Full cached blocks whose reference count drops to 0 stay in the
//   cache (evictable); the others return to the free pool at once.
// - Misuse (unknown id, allocating an id twice, no free block, n going backwards) is a nibble::error
//   naming the sequence and the numbers.
//
// Prefix cache
// - A full block's hash chains its parent's hash (0 for the first block) and its token ids:
//   FNV-1a 64 over the parent hash (8 bytes, little endian) then each id (4 bytes, little endian).
//   A hit is verified: the cached block must hold the same token ids and follow the block matched
//   just before it (its parent block id), so a hash collision is never reused.
// - A block enters the cache only when its parent is in the cache (the first block always may) and
//   its hash is not already taken (then the first block keeps it; this sequence's later blocks stay
//   private). Hence every table holding a cached block holds its parent just before it.
// - Allocation takes never-used (or uncached freed) blocks first, then evicts the least recently
//   freed cached block (removing it from the cache). free() releases a table from its last block
//   to its first, so a chain's tail is evicted before its head, and a child before its parent.
//
// Data layout
// - blocks_[b]: reference count (tables holding b), whether b is in the cache, its hash, its
//   parent block id (-1 for a first block) and its position in the LRU list while evictable.
// - cached_ids_: block_size token ids per block (block b at b * block_size), valid while cached.
// - fresh_: free uncached blocks (a stack; the lowest ids are taken first at the start).
// - lru_: free cached blocks, least recently freed first. cache_: hash -> cached block id.
// - seqs_: per sequence its block table, its known token ids, how many are computed and how many
//   leading blocks the cache has seen (hit or considered for insertion).
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

namespace nibble {

// The hash of a full block given its parent's hash (0 for the first block) and its token ids.
using block_hash_fn = std::function<uint64_t(uint64_t parent, std::span<const int32_t> tokens)>;

// FNV-1a 64 over the parent hash (8 bytes, little endian) and each token id (4 bytes, little endian).
uint64_t block_hash_fnv1a(uint64_t parent, std::span<const int32_t> tokens);

// Prefix cache counters in tokens, as vllm:prefix_cache_queries_total / vllm:prefix_cache_hits_total.
struct prefix_cache_stats {
    int64_t n_queried = 0;  // prompt tokens looked up by allocate()
    int64_t n_hit = 0;      // of which had their KV cached
};

class block_manager {
  public:
    // n_blocks >= 1 blocks of block_size >= 1 tokens; hash defaults to block_hash_fnv1a (tests
    // inject colliding ones). caching = false turns the prefix cache off (no hits, nothing cached:
    // vLLM's --no-enable-prefix-caching).
    block_manager(int32_t n_blocks, int32_t block_size, block_hash_fn hash = block_hash_fnv1a,
                  bool caching = true);

    // Whether n_tokens tokens fit in free blocks without any prefix hit.
    bool can_allocate(int32_t n_tokens) const;
    // Whether allocate(id, tokens) would succeed now (counting its prefix hits).
    bool can_allocate(std::span<const int32_t> tokens) const;
    // Gives a new sequence blocks for tokens (at least 1); returns the number of leading tokens
    // whose KV is cached (they count as computed).
    int32_t allocate(int64_t seq_id, std::span<const int32_t> tokens);
    // Whether append_slot(seq_id, ...) would succeed now.
    bool can_append(int64_t seq_id) const;
    // One more known token at position n_tokens(seq_id) (a new block when the last one is full).
    void append_slot(int64_t seq_id, int32_t token);
    // The KV of the first n_computed tokens is written (n_computed <= n_tokens, never decreasing).
    void mark_computed(int64_t seq_id, int32_t n_computed);
    // Releases the sequence's blocks; its full cached blocks stay in the prefix cache.
    void free(int64_t seq_id);

    bool contains(int64_t seq_id) const { return seqs_.count(seq_id) != 0; }
    const std::vector<int32_t>& block_table(int64_t seq_id) const;
    int32_t n_tokens(int64_t seq_id) const;
    int32_t n_computed(int64_t seq_id) const;

    int32_t block_size() const { return block_size_; }
    int32_t n_blocks() const { return int32_t(blocks_.size()); }
    // Free blocks: never used or uncached, plus cached ones no table holds (evictable).
    int32_t n_free_blocks() const { return int32_t(fresh_.size() + lru_.size()); }
    // Blocks currently in the prefix cache (held or evictable).
    int32_t n_cached_blocks() const { return int32_t(cache_.size()); }
    // Fraction of blocks held by some table, in [0, 1] (vllm:kv_cache_usage_perc).
    double usage() const { return 1.0 - double(n_free_blocks()) / double(n_blocks()); }
    const prefix_cache_stats& stats() const { return stats_; }

    // Introspection for tests and debugging.
    int32_t ref_count(int32_t block) const;
    bool is_cached(int32_t block) const;
    // Checks every internal invariant (reference counts equal table references, each block in
    // exactly one of held / fresh / lru, the cache map, cached parents); fails with the first broken.
    void check_invariants() const;

  private:
    struct block {
        int32_t ref_count = 0;
        bool cached = false;
        uint64_t hash = 0;
        int32_t parent = -1;
        std::list<int32_t>::iterator lru_pos;  // valid while cached with ref_count 0
    };
    struct sequence {
        std::vector<int32_t> table;
        std::vector<int32_t> tokens;
        int32_t n_computed = 0;
        int32_t n_hashed = 0;  // leading full blocks already hit or considered for the cache
    };

    // Cached blocks matching the leading full blocks of tokens (at most (size - 1) / block_size).
    std::vector<int32_t> match_prefix(std::span<const int32_t> tokens) const;
    // Free blocks allocate(tokens) would use up, given its prefix hits.
    int32_t n_blocks_needed(std::span<const int32_t> tokens, const std::vector<int32_t>& hits) const;
    int32_t take_free_block();
    void cache_full_blocks(sequence& s);
    sequence& find(int64_t seq_id, const char* what);
    const sequence& find(int64_t seq_id, const char* what) const;
    std::span<const int32_t> cached_ids(int32_t b) const;

    int32_t block_size_;
    bool caching_;
    block_hash_fn hash_;
    std::vector<block> blocks_;
    std::vector<int32_t> cached_ids_;
    std::vector<int32_t> fresh_;
    std::list<int32_t> lru_;
    std::unordered_map<uint64_t, int32_t> cache_;
    std::unordered_map<int64_t, sequence> seqs_;
    prefix_cache_stats stats_;
};

}  // namespace nibble
