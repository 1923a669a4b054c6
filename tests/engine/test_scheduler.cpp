// The continuous-batching scheduler without a model: admission, chunked prefill, decode batching,
// the FIFO queue, finishing and aborting; KV blocks: tables, prefix-cache hits skipping prefill,
// recompute preemption when the pool runs out.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "core/error.h"
#include "engine/scheduler.h"

using namespace nibble;

namespace {

// A scheduler over a pool large enough never to preempt (16-position blocks).
scheduler_options opts(int32_t n_slots, int32_t max_batched, int32_t n_blocks = 256, int32_t block_size = 16,
                       int32_t max_ctx = 1024) {
    scheduler_options o;
    o.n_slots = n_slots;
    o.max_batched_tokens = max_batched;
    o.n_blocks = n_blocks;
    o.block_size = block_size;
    o.max_ctx = max_ctx;
    return o;
}

// A prompt of n distinct tokens, different for each id (no prefix is shared by accident).
std::vector<int32_t> prompt(int64_t id, int32_t n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    std::iota(t.begin(), t.end(), int32_t(id * 100000));
    return t;
}

// Sampled items of a plan get a token appended (the sequence keeps running).
void append_sampled(scheduler& s, const step_plan& p) {
    for (const step_item& it : p.items)
        if (it.sample) s.append(it.id, 7);
}

}  // namespace

TEST(scheduler, prefill_then_decode_in_one_slot) {
    scheduler s(opts(1, 16));
    s.add(1, prompt(1, 5));
    step_plan p = s.schedule();
    ASSERT_EQ(p.items.size(), 1u);
    EXPECT_EQ(p.items[0].slot, 0);
    EXPECT_EQ(p.items[0].start, 0);
    EXPECT_EQ(p.items[0].n_tokens, 5);
    EXPECT_TRUE(p.items[0].sample);
    s.append(1, 7);
    p = s.schedule();
    ASSERT_EQ(p.items.size(), 1u);
    EXPECT_EQ(p.items[0].start, 5);
    EXPECT_EQ(p.items[0].n_tokens, 1);
    EXPECT_TRUE(p.items[0].sample);
    s.finish(1);
    EXPECT_TRUE(s.idle());
    EXPECT_EQ(s.n_free_slots(), 1);
    EXPECT_TRUE(s.schedule().items.empty());
}

TEST(scheduler, chunked_prefill_under_the_token_budget) {
    scheduler s(opts(2, 4));
    s.add(1, prompt(1, 10));
    std::vector<int32_t> starts, sizes;
    std::vector<bool> samples;
    for (int i = 0; i < 3; ++i) {
        step_plan p = s.schedule();
        ASSERT_EQ(p.items.size(), 1u);
        starts.push_back(p.items[0].start);
        sizes.push_back(p.items[0].n_tokens);
        samples.push_back(p.items[0].sample);
        EXPECT_LE(p.n_tokens, 4);
    }
    EXPECT_EQ(starts, (std::vector<int32_t>{0, 4, 8}));
    EXPECT_EQ(sizes, (std::vector<int32_t>{4, 4, 2}));
    EXPECT_EQ(samples, (std::vector<bool>{false, false, true}));
}

TEST(scheduler, decodes_batch_with_a_new_prefill_chunk) {
    scheduler s(opts(4, 8));
    s.add(1, prompt(1, 3));
    s.add(2, prompt(2, 3));
    step_plan p = s.schedule();
    ASSERT_EQ(p.items.size(), 2u);
    EXPECT_EQ(p.n_tokens, 6);
    append_sampled(s, p);
    s.add(3, prompt(3, 20));
    p = s.schedule();
    // Two decodes first, then the newcomer's chunk fills the rest of the budget.
    ASSERT_EQ(p.items.size(), 3u);
    EXPECT_EQ(p.items[0].id, 1);
    EXPECT_EQ(p.items[0].n_tokens, 1);
    EXPECT_EQ(p.items[1].id, 2);
    EXPECT_EQ(p.items[1].n_tokens, 1);
    EXPECT_EQ(p.items[2].id, 3);
    EXPECT_EQ(p.items[2].n_tokens, 6);
    EXPECT_FALSE(p.items[2].sample);
    EXPECT_EQ(p.n_tokens, 8);
    EXPECT_EQ(s.n_running(), 3);
}

TEST(scheduler, requests_beyond_the_slots_wait_in_fifo_order) {
    scheduler s(opts(2, 64));
    for (int64_t id = 1; id <= 4; ++id) s.add(id, prompt(id, 2));
    step_plan p = s.schedule();
    ASSERT_EQ(p.items.size(), 2u);
    EXPECT_EQ(s.n_waiting(), 2);
    EXPECT_EQ(p.items[0].slot, 0);
    EXPECT_EQ(p.items[1].slot, 1);
    s.append(1, 7);
    s.finish(2);  // slot 1 frees: request 3 (not 4) is admitted into it
    p = s.schedule();
    ASSERT_EQ(p.items.size(), 2u);
    EXPECT_EQ(p.items[0].id, 1);
    EXPECT_EQ(p.items[1].id, 3);
    EXPECT_EQ(p.items[1].slot, 1);
    EXPECT_EQ(s.n_waiting(), 1);
}

TEST(scheduler, abort_frees_the_slot_at_the_next_step) {
    scheduler s(opts(1, 64));
    s.add(1, prompt(1, 4));
    s.add(2, prompt(2, 4));
    step_plan p = s.schedule();
    append_sampled(s, p);
    s.abort(1);
    s.abort(99);  // unknown: ignored
    p = s.schedule();
    EXPECT_EQ(p.dropped, (std::vector<int64_t>{1}));
    ASSERT_EQ(p.items.size(), 1u);
    EXPECT_EQ(p.items[0].id, 2);
    EXPECT_EQ(p.items[0].slot, 0);
    // A waiting request can be aborted too.
    s.add(3, prompt(3, 4));
    s.abort(3);
    p = s.schedule();
    EXPECT_EQ(p.dropped, (std::vector<int64_t>{3}));
    EXPECT_EQ(s.n_waiting(), 0);
}

TEST(scheduler, rejects_misuse) {
    EXPECT_THROW(scheduler(opts(0, 8)), nibble::error);
    EXPECT_THROW(scheduler(opts(1, 0)), nibble::error);
    EXPECT_THROW(scheduler(opts(1, 8, 3, 16, 64)), nibble::error);  // 48 positions < one 64-token sequence
    scheduler s(opts(1, 8));
    s.add(1, prompt(1, 3));
    EXPECT_THROW(s.add(1, prompt(1, 3)), nibble::error);
    EXPECT_THROW(s.add(2, prompt(2, 0)), nibble::error);
    EXPECT_THROW(s.add(3, prompt(3, 1024)), nibble::error);  // no room left for a generated token
    EXPECT_THROW(s.append(1, 7), nibble::error);             // its prompt was not computed yet
}

TEST(scheduler, items_name_block_tables_covering_their_tokens) {
    scheduler s(opts(2, 64, 16, 4, 32));
    s.add(1, prompt(1, 6));
    s.add(2, prompt(2, 9));
    step_plan p = s.schedule();
    ASSERT_EQ(p.items.size(), 2u);
    EXPECT_EQ(s.block_table(1).size(), 2u);  // 6 tokens in blocks of 4
    EXPECT_EQ(s.block_table(2).size(), 3u);
    append_sampled(s, p);
    // Token 7 of sequence 1 still fits its second block; sequence 2's 10th token needs no new one either.
    p = s.schedule();
    EXPECT_EQ(s.block_table(1).size(), 2u);
    EXPECT_EQ(s.block_table(2).size(), 3u);
    append_sampled(s, p);
    append_sampled(s, s.schedule());
    p = s.schedule();  // sequence 1 at 9 tokens: a third block
    EXPECT_EQ(s.block_table(1).size(), 3u);
    s.blocks().check_invariants();
}

TEST(scheduler, prefix_cache_hits_skip_their_prefill) {
    scheduler s(opts(3, 64, 32, 4, 64));
    std::vector<int32_t> a = prompt(1, 10);
    s.add(1, a);
    step_plan p = s.schedule();
    ASSERT_EQ(p.items.size(), 1u);
    EXPECT_EQ(p.n_cached_tokens, 0);
    // Nothing is cached before the step ran: a second request with the same prompt admitted in the same
    // schedule() would recompute it, but after the next schedule() the first two blocks are cached.
    append_sampled(s, p);
    s.add(2, a);
    p = s.schedule();
    ASSERT_EQ(p.items.size(), 2u);
    EXPECT_EQ(p.items[1].id, 2);
    EXPECT_EQ(p.items[1].start, 8);  // 2 full blocks of 4 hit, the last 2 tokens are fed
    EXPECT_EQ(p.items[1].n_tokens, 2);
    EXPECT_EQ(p.n_cached_tokens, 8);
    EXPECT_EQ(s.block_table(2)[0], s.block_table(1)[0]);
    EXPECT_EQ(s.block_table(2)[1], s.block_table(1)[1]);
    EXPECT_NE(s.block_table(2)[2], s.block_table(1)[2]);
    // A prompt that is exactly 2 blocks still computes its last token (for its logits).
    append_sampled(s, p);
    s.add(3, std::vector<int32_t>(a.begin(), a.begin() + 8));
    p = s.schedule();
    ASSERT_EQ(p.items.size(), 3u);
    const step_item& last = p.items.back();
    EXPECT_EQ(last.id, 3);
    EXPECT_EQ(last.start, 4);
    EXPECT_EQ(last.n_tokens, 4);
    EXPECT_EQ(s.blocks().stats().n_hit, 12);
    s.blocks().check_invariants();
}

TEST(scheduler, preempts_the_latest_sequence_when_blocks_run_out_and_recomputes_it) {
    // 4 blocks of 4 positions: two sequences of 6 prompt tokens take 2 blocks each.
    scheduler s(opts(2, 64, 4, 4, 16));
    s.add(1, prompt(1, 6));
    s.add(2, prompt(2, 6));
    step_plan p = s.schedule();
    ASSERT_EQ(p.items.size(), 2u);
    // Decode until sequence 1 needs a third block (its 9th token): the pool is full, so sequence 2 (the
    // latest admitted) is preempted and sequence 1 decodes alone.
    int steps = 0;
    while (p.preempted.empty() && steps < 10) {
        append_sampled(s, p);
        p = s.schedule();
        ++steps;
    }
    ASSERT_EQ(p.preempted, (std::vector<int64_t>{2}));
    ASSERT_EQ(p.items.size(), 1u);
    EXPECT_EQ(p.items[0].id, 1);
    EXPECT_EQ(p.items[0].n_tokens, 1);
    EXPECT_EQ(s.n_running(), 1);
    EXPECT_EQ(s.n_waiting(), 1);
    EXPECT_EQ(s.n_preemptions(), 1);
    EXPECT_EQ(s.block_table(1).size(), 3u);
    s.blocks().check_invariants();
    // When sequence 1 finishes, sequence 2 comes back with every known token (6 prompt + 3 generated), its
    // first block a prefix-cache hit (its second, cached too, was evicted tail first for sequence 1's
    // third block), the rest recomputed.
    append_sampled(s, p);
    s.finish(1);
    p = s.schedule();
    ASSERT_EQ(p.items.size(), 1u);
    EXPECT_EQ(p.items[0].id, 2);
    EXPECT_EQ(p.items[0].start + p.items[0].n_tokens, 9);
    EXPECT_TRUE(p.items[0].sample);
    EXPECT_EQ(p.items[0].start, 4);
    s.blocks().check_invariants();
}

TEST(scheduler, a_lone_sequence_is_never_preempted_for_itself) {
    // A pool that exactly holds one sequence of max_ctx positions: it runs to the end.
    scheduler s(opts(1, 8, 4, 4, 16));
    s.add(1, prompt(1, 3));
    step_plan p = s.schedule();
    for (int i = 0; i < 12; ++i) {
        ASSERT_TRUE(p.preempted.empty()) << i;
        ASSERT_EQ(p.items.size(), 1u);
        append_sampled(s, p);
        p = s.schedule();
    }
    EXPECT_EQ(s.block_table(1).size(), 4u);
}

// Many sequences over a small pool with random finishes and aborts: every plan fits the budget, every
// running sequence's table covers its tokens, and the block manager's invariants hold throughout.
TEST(scheduler, stress_small_pool) {
    std::mt19937 rng(3);
    scheduler s(opts(4, 24, 12, 4, 32));
    int64_t next = 1;
    std::vector<int64_t> live;
    int64_t preemptions = 0;
    for (int step = 0; step < 2000; ++step) {
        if (rng() % 3 == 0) {
            // Shared prefixes now and then, so that cached blocks are reused while others are held.
            std::vector<int32_t> t = prompt(rng() % 4 == 0 ? 1 : next, int32_t(1 + rng() % 12));
            s.add(next, t);
            live.push_back(next++);
        }
        if (!live.empty() && rng() % 17 == 0) s.abort(live[rng() % live.size()]);
        step_plan p = s.schedule();
        preemptions += int64_t(p.preempted.size());
        for (int64_t id : p.dropped) live.erase(std::find(live.begin(), live.end(), id));
        ASSERT_LE(p.n_tokens, 24);
        for (const step_item& it : p.items) {
            ASSERT_GE(s.block_table(it.id).size() * 4, size_t(it.start + it.n_tokens));
            if (!it.sample) continue;
            if (rng() % 9 == 0 || it.start + it.n_tokens >= 31) {
                s.finish(it.id);
                live.erase(std::find(live.begin(), live.end(), it.id));
            } else {
                s.append(it.id, int32_t(rng() % 50));
            }
        }
        s.blocks().check_invariants();
    }
    EXPECT_GT(preemptions, 0);
    EXPECT_EQ(preemptions, s.n_preemptions());
}
