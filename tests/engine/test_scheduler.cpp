// The continuous-batching scheduler without a model: admission, chunked prefill, decode batching,
// the FIFO queue, finishing and aborting.
#include <gtest/gtest.h>

#include "core/error.h"
#include "engine/scheduler.h"

using namespace nibble;

namespace {

// Sampled items of a plan get a token appended (the sequence keeps running).
void append_sampled(scheduler& s, const step_plan& p) {
    for (const step_item& it : p.items)
        if (it.sample) s.append(it.id);
}

}  // namespace

TEST(scheduler, prefill_then_decode_in_one_slot) {
    scheduler s(1, 16);
    s.add(1, 5);
    step_plan p = s.schedule();
    ASSERT_EQ(p.items.size(), 1u);
    EXPECT_EQ(p.items[0].slot, 0);
    EXPECT_EQ(p.items[0].start, 0);
    EXPECT_EQ(p.items[0].n_tokens, 5);
    EXPECT_TRUE(p.items[0].sample);
    s.append(1);
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
    scheduler s(2, 4);
    s.add(1, 10);
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
    scheduler s(4, 8);
    s.add(1, 3);
    s.add(2, 3);
    step_plan p = s.schedule();
    ASSERT_EQ(p.items.size(), 2u);
    EXPECT_EQ(p.n_tokens, 6);
    append_sampled(s, p);
    s.add(3, 20);
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
    scheduler s(2, 64);
    for (int64_t id = 1; id <= 4; ++id) s.add(id, 2);
    step_plan p = s.schedule();
    ASSERT_EQ(p.items.size(), 2u);
    EXPECT_EQ(s.n_waiting(), 2);
    EXPECT_EQ(p.items[0].slot, 0);
    EXPECT_EQ(p.items[1].slot, 1);
    s.append(1);
    s.finish(2);  // slot 1 frees: request 3 (not 4) is admitted into it
    p = s.schedule();
    ASSERT_EQ(p.items.size(), 2u);
    EXPECT_EQ(p.items[0].id, 1);
    EXPECT_EQ(p.items[1].id, 3);
    EXPECT_EQ(p.items[1].slot, 1);
    EXPECT_EQ(s.n_waiting(), 1);
}

TEST(scheduler, abort_frees_the_slot_at_the_next_step) {
    scheduler s(1, 64);
    s.add(1, 4);
    s.add(2, 4);
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
    s.add(3, 4);
    s.abort(3);
    p = s.schedule();
    EXPECT_EQ(p.dropped, (std::vector<int64_t>{3}));
    EXPECT_EQ(s.n_waiting(), 0);
}

TEST(scheduler, rejects_misuse) {
    EXPECT_THROW(scheduler(0, 8), nibble::error);
    EXPECT_THROW(scheduler(1, 0), nibble::error);
    scheduler s(1, 8);
    s.add(1, 3);
    EXPECT_THROW(s.add(1, 3), nibble::error);
    EXPECT_THROW(s.add(2, 0), nibble::error);
    EXPECT_THROW(s.append(1), nibble::error);  // its prompt was not computed yet
}
