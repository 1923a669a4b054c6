// The paged KV block manager without a model: accounting, block boundaries, decode appends, automatic
// prefix caching (hits, sharing, LRU eviction, verified hash hits), misuse errors and a randomized
// stress test against a shadow model of what each block's KV holds.
#include <gtest/gtest.h>

#include <map>
#include <numeric>
#include <random>
#include <string>

#include "core/error.h"
#include "engine/block_manager.h"

using namespace nibble;

namespace {

// count ids starting at first: first, first + 1, ...
std::vector<int32_t> iota_ids(int32_t count, int32_t first = 0) {
    std::vector<int32_t> v(static_cast<size_t>(count));
    std::iota(v.begin(), v.end(), first);
    return v;
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// Expects a nibble::error whose message contains every one of parts.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
    try {
        f();
        ADD_FAILURE() << "no error";
    } catch (const error& e) {
        for (const std::string& p : parts)
            EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
}

}  // namespace

TEST(block_manager, fnv1a_hash_is_well_defined) {
    // By the definition: the offset basis, then xor and multiply by the prime for each byte.
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < 8; ++i) h = (h ^ 0) * 0x100000001b3ull;
    EXPECT_EQ(block_hash_fnv1a(0, {}), h);
    for (uint8_t byte : {0x01, 0x00, 0x00, 0x00}) h = (h ^ byte) * 0x100000001b3ull;
    std::vector<int32_t> one{1};
    EXPECT_EQ(block_hash_fnv1a(0, one), h);
    std::vector<int32_t> a{1, 2}, b{2, 1};
    EXPECT_NE(block_hash_fnv1a(0, a), block_hash_fnv1a(0, b));
    EXPECT_NE(block_hash_fnv1a(0, a), block_hash_fnv1a(1, a));
}

TEST(block_manager, allocation_and_free_accounting) {
    block_manager m(10, 16);
    EXPECT_EQ(m.n_blocks(), 10);
    EXPECT_EQ(m.block_size(), 16);
    EXPECT_EQ(m.n_free_blocks(), 10);
    EXPECT_TRUE(m.can_allocate(160));
    EXPECT_FALSE(m.can_allocate(161));
    EXPECT_EQ(m.allocate(1, iota_ids(40)), 0);
    EXPECT_EQ(m.block_table(1), (std::vector<int32_t>{0, 1, 2}));
    EXPECT_EQ(m.n_free_blocks(), 7);
    EXPECT_EQ(m.n_tokens(1), 40);
    EXPECT_EQ(m.n_computed(1), 0);
    EXPECT_EQ(m.allocate(2, iota_ids(5, 1000)), 0);
    EXPECT_EQ(m.block_table(2), (std::vector<int32_t>{3}));
    EXPECT_EQ(m.n_free_blocks(), 6);
    m.free(1);
    EXPECT_FALSE(m.contains(1));
    EXPECT_EQ(m.n_free_blocks(), 9);
    m.free(2);
    EXPECT_EQ(m.n_free_blocks(), 10);
    EXPECT_EQ(m.n_cached_blocks(), 0);  // nothing was marked computed
    m.check_invariants();
}

TEST(block_manager, block_boundaries) {
    for (auto [n, n_blocks] :
         std::vector<std::pair<int32_t, size_t>>{{1, 1}, {15, 1}, {16, 1}, {17, 2}, {33, 3}}) {
        block_manager m(8, 16);
        m.allocate(7, iota_ids(n));
        EXPECT_EQ(m.block_table(7).size(), n_blocks) << n << " tokens";
        EXPECT_EQ(m.n_free_blocks(), 8 - int32_t(n_blocks)) << n << " tokens";
        m.check_invariants();
    }
}

TEST(block_manager, decode_appends_across_a_block_boundary) {
    block_manager m(3, 16);
    m.allocate(1, iota_ids(14));
    m.mark_computed(1, 14);
    EXPECT_TRUE(m.can_append(1));
    m.append_slot(1, 100);  // position 14
    m.append_slot(1, 101);  // position 15: the first block is now full
    EXPECT_EQ(m.block_table(1).size(), 1u);
    EXPECT_EQ(m.n_free_blocks(), 2);
    m.append_slot(1, 102);  // position 16: a new block
    EXPECT_EQ(m.block_table(1), (std::vector<int32_t>{0, 1}));
    EXPECT_EQ(m.n_tokens(1), 17);
    EXPECT_EQ(m.n_free_blocks(), 1);
    // The full first block enters the cache only once its KV is computed.
    EXPECT_FALSE(m.is_cached(0));
    m.mark_computed(1, 16);
    EXPECT_TRUE(m.is_cached(0));
    EXPECT_FALSE(m.is_cached(1));
    m.check_invariants();
}

TEST(block_manager, can_append_when_the_pool_is_full) {
    block_manager m(1, 4);
    m.allocate(1, iota_ids(3));
    EXPECT_TRUE(m.can_append(1));  // room left in the last block
    m.append_slot(1, 9);
    EXPECT_FALSE(m.can_append(1));
    expect_error([&] { m.append_slot(1, 10); }, {"sequence 1", "position 4", "none of 1"});
    EXPECT_EQ(m.n_tokens(1), 4);  // unchanged by the failed append
}

TEST(block_manager, prefix_hit_of_a_shared_40_token_prefix) {
    block_manager m(16, 16);
    std::vector<int32_t> prefix = iota_ids(40);
    std::vector<int32_t> a = concat(prefix, iota_ids(10, 500));
    std::vector<int32_t> b = concat(prefix, iota_ids(7, 900));
    EXPECT_EQ(m.allocate(1, a), 0);
    m.mark_computed(1, 50);
    EXPECT_EQ(m.n_cached_blocks(), 3);  // blocks 0..2 of a are full (48 tokens)
    // b shares 40 tokens: 2 full blocks match, the third (tokens 32..47) differs at 40.
    EXPECT_EQ(m.allocate(2, b), 32);
    EXPECT_EQ(m.n_computed(2), 32);
    const auto& ta = m.block_table(1);
    const auto& tb = m.block_table(2);
    ASSERT_EQ(tb.size(), 3u);
    EXPECT_EQ(tb[0], ta[0]);
    EXPECT_EQ(tb[1], ta[1]);
    EXPECT_NE(tb[2], ta[2]);
    EXPECT_EQ(m.ref_count(ta[0]), 2);
    EXPECT_EQ(m.ref_count(ta[1]), 2);
    EXPECT_EQ(m.ref_count(ta[2]), 1);
    EXPECT_EQ(m.stats().n_queried, 50 + 47);
    EXPECT_EQ(m.stats().n_hit, 32);
    m.check_invariants();
}

TEST(block_manager, a_partial_block_is_never_cached) {
    block_manager m(8, 16);
    std::vector<int32_t> p = iota_ids(40);
    m.allocate(1, p);
    m.mark_computed(1, 40);
    EXPECT_EQ(m.n_cached_blocks(), 2);
    m.free(1);
    // The same 40 tokens plus more: only the two full blocks hit.
    EXPECT_EQ(m.allocate(2, concat(p, iota_ids(20, 40))), 32);
}

TEST(block_manager, full_prompt_hit_still_computes_the_last_token) {
    block_manager m(8, 16);
    std::vector<int32_t> p = iota_ids(32);
    m.allocate(1, p);
    m.mark_computed(1, 32);
    EXPECT_EQ(m.n_cached_blocks(), 2);
    // Both blocks are cached, but the last token must be computed: only the first block hits.
    EXPECT_EQ(m.allocate(2, p), 16);
    EXPECT_EQ(m.block_table(2)[0], m.block_table(1)[0]);
    EXPECT_NE(m.block_table(2)[1], m.block_table(1)[1]);
    // One token more and both full blocks hit.
    EXPECT_EQ(m.allocate(3, concat(p, {7})), 32);
    // A prompt within one block never hits.
    block_manager one(4, 16);
    one.allocate(1, iota_ids(16));
    one.mark_computed(1, 16);
    EXPECT_EQ(one.allocate(2, iota_ids(16)), 0);
}

TEST(block_manager, shared_blocks_freed_in_either_order) {
    for (bool first_frees_first : {true, false}) {
        block_manager m(8, 4);
        std::vector<int32_t> p = iota_ids(9);
        m.allocate(1, p);
        m.mark_computed(1, 9);
        EXPECT_EQ(m.allocate(2, p), 8);
        std::vector<int32_t> shared{m.block_table(1)[0], m.block_table(1)[1]};
        for (int32_t b : shared) EXPECT_EQ(m.ref_count(b), 2);
        EXPECT_EQ(m.n_free_blocks(), 8 - 4);  // 2 shared + 2 private partial blocks
        EXPECT_DOUBLE_EQ(m.usage(), 0.5);
        m.free(first_frees_first ? 1 : 2);
        for (int32_t b : shared) EXPECT_EQ(m.ref_count(b), 1);
        EXPECT_EQ(m.n_free_blocks(), 5);
        m.check_invariants();
        m.free(first_frees_first ? 2 : 1);
        for (int32_t b : shared) {
            EXPECT_EQ(m.ref_count(b), 0);
            EXPECT_TRUE(m.is_cached(b));  // evictable, still cached
        }
        EXPECT_EQ(m.n_free_blocks(), 8);
        EXPECT_DOUBLE_EQ(m.usage(), 0.0);
        m.check_invariants();
        // A later identical prefix reuses them.
        EXPECT_EQ(m.allocate(3, p), 8);
        EXPECT_EQ(m.block_table(3)[0], shared[0]);
        EXPECT_EQ(m.block_table(3)[1], shared[1]);
    }
}

TEST(block_manager, fresh_blocks_before_evicting_and_lru_order) {
    block_manager m(6, 4);
    std::vector<int32_t> a = iota_ids(8, 0), b = iota_ids(8, 100);
    m.allocate(1, a);
    m.mark_computed(1, 8);
    m.allocate(2, b);
    m.mark_computed(2, 8);
    std::vector<int32_t> ta = m.block_table(1), tb = m.block_table(2);
    m.free(1);  // LRU: a1, a0
    m.free(2);  // LRU: a1, a0, b1, b0
    EXPECT_EQ(m.n_cached_blocks(), 4);
    // 2 never-used blocks are taken first: nothing is evicted.
    m.allocate(3, iota_ids(8, 200));
    EXPECT_EQ(m.n_cached_blocks(), 4);
    m.free(3);  // not computed, so its blocks return uncached
    // 3 blocks: 2 uncached, then the least recently freed cached block, a's last one.
    m.allocate(4, iota_ids(12, 300));
    EXPECT_FALSE(m.is_cached(ta[1]));
    EXPECT_TRUE(m.is_cached(ta[0]));
    EXPECT_TRUE(m.is_cached(tb[0]));
    EXPECT_TRUE(m.is_cached(tb[1]));
    m.free(4);
    // a now hits its first block only (needs a9 as the computed last token).
    EXPECT_EQ(m.allocate(5, concat(a, {9})), 4);
    EXPECT_EQ(m.block_table(5)[0], ta[0]);
    m.free(5);  // LRU: b1, b0, then 5's cached a0 (touched by the hit, freed last)
    m.check_invariants();
    // A hit moves a block to the back: 3 uncached blocks go first, then b1, b0.
    m.allocate(6, iota_ids(20, 400));
    EXPECT_FALSE(m.is_cached(tb[1]));
    EXPECT_FALSE(m.is_cached(tb[0]));
    EXPECT_TRUE(m.is_cached(ta[0]));
    m.check_invariants();
}

TEST(block_manager, eviction_takes_the_tail_of_a_chain_first) {
    block_manager m(4, 2);
    std::vector<int32_t> p = iota_ids(6);
    m.allocate(1, p);
    m.mark_computed(1, 6);
    m.free(1);
    EXPECT_EQ(m.n_cached_blocks(), 3);
    // One fresh block, then the chain's last block: the first two still hit.
    m.allocate(2, iota_ids(4, 50));
    m.free(2);
    EXPECT_EQ(m.allocate(3, concat(p, {6})), 4);
    m.check_invariants();
}

TEST(block_manager, a_hash_collision_is_not_reused) {
    // Every block hashes alike: a hit must be verified on the stored token ids.
    block_manager m(8, 4, [](uint64_t, std::span<const int32_t>) { return uint64_t(42); });
    m.allocate(1, iota_ids(5, 0));
    m.mark_computed(1, 5);
    EXPECT_EQ(m.n_cached_blocks(), 1);
    EXPECT_EQ(m.allocate(2, iota_ids(5, 10)), 0);  // same hash, other ids
    m.mark_computed(2, 5);
    EXPECT_EQ(m.n_cached_blocks(), 1);            // the hash stays with the first block
    EXPECT_EQ(m.allocate(3, iota_ids(5, 0)), 4);  // the genuine prefix still hits
    EXPECT_EQ(m.block_table(3)[0], m.block_table(1)[0]);
    m.check_invariants();
}

TEST(block_manager, a_hit_follows_its_parent_block) {
    // Hash by the block's ids only (ignoring the parent): the same second block after another
    // first block must not be reused.
    auto ids_only = [](uint64_t, std::span<const int32_t> ids) { return block_hash_fnv1a(0, ids); };
    block_manager m(12, 2, ids_only);
    m.allocate(1, {{1, 2, 3, 4, 5}});
    m.mark_computed(1, 5);
    EXPECT_EQ(m.allocate(2, {{9, 9, 3, 4, 5}}), 0);
    m.mark_computed(2, 5);
    EXPECT_EQ(m.allocate(3, {{1, 2, 3, 4, 5}}), 4);
    // [9, 9] hits 2's block; [3, 4] hashes to 1's second block, whose parent is 1's first.
    EXPECT_EQ(m.allocate(4, {{9, 9, 3, 4, 5}}), 2);
    m.check_invariants();
}

TEST(block_manager, concurrent_identical_prompts_keep_one_cached_copy) {
    block_manager m(8, 4);
    std::vector<int32_t> p = iota_ids(9);
    m.allocate(1, p);
    m.allocate(2, p);  // no hit: 1 has not computed anything yet
    EXPECT_EQ(m.n_computed(2), 0);
    m.mark_computed(1, 9);
    m.mark_computed(2, 9);
    EXPECT_EQ(m.n_cached_blocks(), 2);
    m.free(2);
    EXPECT_EQ(m.n_free_blocks(), 5);  // 2's copies were never cached and are free at once
    EXPECT_EQ(m.allocate(3, p), 8);
    EXPECT_EQ(m.block_table(3)[0], m.block_table(1)[0]);
    m.check_invariants();
}

TEST(block_manager, chunked_prefill_caches_blocks_as_they_are_computed) {
    block_manager m(8, 4);
    std::vector<int32_t> p = iota_ids(13);
    m.allocate(1, p);
    m.mark_computed(1, 6);
    EXPECT_EQ(m.n_cached_blocks(), 1);
    EXPECT_EQ(m.allocate(2, p), 4);
    m.mark_computed(1, 13);
    EXPECT_EQ(m.n_cached_blocks(), 3);
    EXPECT_EQ(m.allocate(3, p), 12);
}

TEST(block_manager, preemption_by_recompute) {
    block_manager m(4, 4);
    std::vector<int32_t> known = iota_ids(6);
    m.allocate(1, known);
    m.mark_computed(1, 6);
    for (int32_t t : {100, 101, 102}) {
        m.append_slot(1, t);
        known.push_back(t);
        m.mark_computed(1, m.n_tokens(1));
    }
    m.free(1);  // preempted
    EXPECT_EQ(m.n_free_blocks(), 4);
    // Re-admitted with every known token (9): its two full blocks are still cached.
    EXPECT_EQ(m.allocate(1, known), 8);
    EXPECT_EQ(m.n_tokens(1), 9);
    m.check_invariants();
}

TEST(block_manager, usage_values) {
    block_manager m(4, 4);
    EXPECT_DOUBLE_EQ(m.usage(), 0.0);
    m.allocate(1, iota_ids(4));
    EXPECT_DOUBLE_EQ(m.usage(), 0.25);
    m.allocate(2, iota_ids(12, 10));
    EXPECT_DOUBLE_EQ(m.usage(), 1.0);
    m.mark_computed(2, 12);
    m.free(2);  // cached but evictable blocks count as free
    EXPECT_DOUBLE_EQ(m.usage(), 0.25);
}

TEST(block_manager, can_allocate_counts_prefix_hits) {
    block_manager m(3, 4);
    std::vector<int32_t> p = iota_ids(9);
    m.allocate(1, p);
    m.mark_computed(1, 9);
    EXPECT_EQ(m.n_free_blocks(), 0);
    EXPECT_FALSE(m.can_allocate(9));
    EXPECT_FALSE(m.can_allocate(p));  // 2 hits, but the partial block needs a free one
    m.free(1);
    m.allocate(2, iota_ids(3, 50));  // takes the uncached block: 2 cached evictable are left
    EXPECT_FALSE(m.can_allocate(9));
    EXPECT_FALSE(m.can_allocate(p));           // the hits use both evictable blocks: none left
    EXPECT_TRUE(m.can_allocate(iota_ids(8)));  // 1 hit (the last token is computed) + 1 evicted
    EXPECT_EQ(m.allocate(3, iota_ids(8)), 4);
    m.check_invariants();
}

TEST(block_manager, misuse_is_a_clear_error) {
    block_manager m(2, 16);
    m.allocate(1, iota_ids(3));
    expect_error([&] { m.allocate(1, iota_ids(3)); }, {"sequence 1", "already allocated"});
    expect_error([&] { m.allocate(2, {}); }, {"sequence 2", "no tokens"});
    expect_error([&] { m.free(9); }, {"free", "unknown sequence 9"});
    expect_error([&] { m.block_table(9); }, {"unknown sequence 9"});
    expect_error([&] { m.append_slot(9, 1); }, {"unknown sequence 9"});
    expect_error([&] { m.can_append(9); }, {"unknown sequence 9"});
    expect_error([&] { m.allocate(3, iota_ids(40)); },
                 {"sequence 3", "needs 3 free KV blocks for 40 tokens", "only 1 of 2"});
    EXPECT_FALSE(m.contains(3));
    expect_error([&] { m.mark_computed(1, 4); }, {"sequence 1", "marked 4", "0 to 3"});
    m.mark_computed(1, 2);
    expect_error([&] { m.mark_computed(1, 1); }, {"marked 1", "2 to 3"});
    expect_error([&] { block_manager(0, 16); }, {"0 blocks"});
    expect_error([&] { m.ref_count(2); }, {"block 2 out of range"});
    m.check_invariants();
}

namespace {

// The randomized stress test: a small pool, prompts drawn from a few shared prefixes over a small
// alphabet (many hits), every operation checked against a shadow model. kv[b] is the token prefix
// whose KV block b holds (set when a sequence computes a block it did not hit); a hit must find
// exactly its own prefix there.
void stress(block_manager& m, uint32_t seed) {
    std::mt19937 rng(seed);
    auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    const int32_t bs = m.block_size();
    std::vector<std::vector<int32_t>> bases;
    for (int i = 0; i < 4; ++i) {
        std::vector<int32_t> base;
        for (int j = 0; j < 3 * bs; ++j) base.push_back(uniform(0, 2));
        bases.push_back(base);
    }
    struct shadow {
        std::vector<int32_t> tokens;
        int32_t n_computed = 0;
        int32_t n_hit_blocks = 0;
    };
    std::map<int64_t, shadow> seqs;
    std::map<int32_t, std::vector<int32_t>> kv;
    int64_t next_id = 0;
    int n_hits = 0;
    for (int op = 0; op < 4000; ++op) {
        int kind = uniform(0, 9);
        if (kind <= 2 || seqs.empty()) {
            const auto& base = bases[size_t(uniform(0, 3))];
            std::vector<int32_t> p(base.begin(), base.begin() + uniform(0, int(base.size())));
            for (int j = uniform(p.empty() ? 1 : 0, bs + 2); j > 0; --j) p.push_back(uniform(0, 2));
            int64_t id = next_id++;
            bool fits = m.can_allocate(p);
            if (!fits) {
                EXPECT_THROW(m.allocate(id, p), error);
                continue;
            }
            int32_t n_cached = m.allocate(id, p);
            ASSERT_EQ(n_cached % bs, 0);
            ASSERT_LT(n_cached, int32_t(p.size()));
            const auto& t = m.block_table(id);
            for (int32_t i = 0; i < n_cached / bs; ++i) {
                std::vector<int32_t> prefix(p.begin(), p.begin() + (i + 1) * bs);
                ASSERT_EQ(kv.at(t[size_t(i)]), prefix)
                    << "block " << t[size_t(i)] << " reused for another prefix";
            }
            n_hits += n_cached > 0;
            seqs[id] = {p, n_cached, n_cached / bs};
        } else {
            auto it = seqs.begin();
            std::advance(it, uniform(0, int(seqs.size()) - 1));
            int64_t id = it->first;
            shadow& s = it->second;
            if (kind <= 4) {
                m.free(id);
                seqs.erase(it);
            } else if (s.n_computed < int32_t(s.tokens.size())) {
                int32_t n = uniform(s.n_computed + 1, int(s.tokens.size()));
                m.mark_computed(id, n);
                const auto& t = m.block_table(id);
                for (int32_t i = s.n_hit_blocks; i < n / bs; ++i)
                    if (i >= s.n_computed / bs)
                        kv[t[size_t(i)]] =
                            std::vector<int32_t>(s.tokens.begin(), s.tokens.begin() + (i + 1) * bs);
                s.n_computed = n;
            } else if (m.can_append(id)) {
                int32_t tok = uniform(0, 2);
                m.append_slot(id, tok);
                s.tokens.push_back(tok);
            } else {
                EXPECT_THROW(m.append_slot(id, 0), error);
            }
        }
        m.check_invariants();
        // Externally: reference counts equal table references, free + held = all, a block in
        // two tables is a full cached block at the same index after the same tokens.
        std::map<int32_t, std::pair<int64_t, size_t>> owner;
        std::vector<int32_t> refs(size_t(m.n_blocks()), 0);
        int32_t n_held = 0;
        for (const auto& [id, s] : seqs) {
            const auto& t = m.block_table(id);
            ASSERT_EQ(t.size(), (s.tokens.size() + size_t(bs) - 1) / size_t(bs));
            ASSERT_EQ(m.n_tokens(id), int32_t(s.tokens.size()));
            for (size_t i = 0; i < t.size(); ++i) {
                if (refs[size_t(t[i])]++ == 0) {
                    ++n_held;
                    owner[t[i]] = {id, i};
                    continue;
                }
                auto [other, j] = owner[t[i]];
                ASSERT_TRUE(m.is_cached(t[i])) << "uncached block " << t[i] << " in two tables";
                ASSERT_EQ(i, j);
                const auto& o = seqs.at(other).tokens;
                ASSERT_TRUE(
                    std::equal(o.begin(), o.begin() + ptrdiff_t((i + 1) * size_t(bs)), s.tokens.begin()));
            }
        }
        for (int32_t b = 0; b < m.n_blocks(); ++b)
            ASSERT_EQ(m.ref_count(b), refs[size_t(b)]) << "block " << b;
        ASSERT_EQ(m.n_free_blocks() + n_held, m.n_blocks());
    }
    EXPECT_GT(n_hits, 50);  // the test exercised the prefix cache
    for (const auto& [id, s] : seqs) m.free(id);
    EXPECT_EQ(m.n_free_blocks(), m.n_blocks());
    m.check_invariants();
}

}  // namespace

TEST(block_manager, randomized_stress) {
    for (uint32_t seed : {1u, 2u, 3u}) {
        block_manager m(12, 4);
        stress(m, seed);
    }
}

TEST(block_manager, randomized_stress_with_colliding_hashes) {
    // 8 hash values for every block: collisions on almost every lookup, all caught by verification.
    auto weak = [](uint64_t parent, std::span<const int32_t> ids) {
        return block_hash_fnv1a(parent, ids) & 7;
    };
    for (uint32_t seed : {4u, 5u}) {
        block_manager m(12, 4, weak);
        stress(m, seed);
    }
}

// With the prefix cache off (--no-enable-prefix-caching) an equal prompt never hits and no block is cached;
// freed blocks return to the fresh pool.
TEST(block_manager, caching_off_never_hits) {
    block_manager bm(8, 4, block_hash_fnv1a, false);
    const std::vector<int32_t> p = iota_ids(10);
    EXPECT_EQ(bm.allocate(1, p), 0);
    bm.mark_computed(1, 10);
    EXPECT_EQ(bm.n_cached_blocks(), 0);
    EXPECT_EQ(bm.allocate(2, p), 0);
    EXPECT_EQ(bm.stats().n_hit, 0);
    bm.free(1);
    bm.free(2);
    EXPECT_EQ(bm.n_free_blocks(), 8);
    bm.check_invariants();
}
