// The host side of the paged KV cache: shape validation, preset tables, set() checks, position lookup and
// the dirty range a backend uploads.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "core/kv_tables.h"

using namespace nibble;

namespace {

template <class F>
void expect_error(F&& f, const std::string& part) {
    try {
        f();
        ADD_FAILURE() << "no error, expected one naming '" << part << "'";
    } catch (const error& e) {
        EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
}

}  // namespace

TEST(kv_tables, preset_tables_give_each_slot_its_own_blocks) {
    kv_tables t;
    t.init(kv_cache_shape{3, 40, 16, 0});
    EXPECT_EQ(t.max_blocks(), 3);  // ceil(40 / 16)
    EXPECT_EQ(t.n_blocks(), 9);
    EXPECT_EQ(t.block_shift(), 4);
    EXPECT_EQ(t.block_of(0, 0), 0);
    EXPECT_EQ(t.block_of(1, 17), 4);
    EXPECT_EQ(t.block_of(2, 39), 8);
    EXPECT_EQ(t.dirty_first(), 0);
    EXPECT_EQ(t.dirty_last(), 3);
    expect_error([&] { t.check(1, 40); }, "outside the context of 40");
    expect_error([&] { t.check(3, 0); }, "slot 3 outside [0, 3)");
}

TEST(kv_tables, set_replaces_a_table_and_marks_it_dirty) {
    kv_tables t;
    t.init(kv_cache_shape{4, 64, 8, 20});
    t.clear_dirty();
    expect_error([&] { t.check(0, 0); }, "past its 0 KV blocks");  // managed pools start empty
    const std::vector<int32_t> a = {7, 3, 19};
    t.set(2, a);
    EXPECT_EQ(t.block_of(2, 0), 7);
    EXPECT_EQ(t.block_of(2, 15), 3);
    EXPECT_EQ(t.block_of(2, 23), 19);
    expect_error([&] { t.check(2, 24); }, "past its 3 KV blocks of 8 positions");
    EXPECT_EQ(t.dirty_first(), 2);
    EXPECT_EQ(t.dirty_last(), 3);
    t.clear_dirty();
    t.set(2, a);  // unchanged: not dirty
    EXPECT_EQ(t.dirty_first(), t.dirty_last());
    t.set(0, std::vector<int32_t>{1});
    t.set(3, std::vector<int32_t>{2});
    EXPECT_EQ(t.dirty_first(), 0);
    EXPECT_EQ(t.dirty_last(), 4);
    EXPECT_EQ(t.rows()[size_t(2) * 8 + 3], -1);  // entries past a table's length
}

TEST(kv_tables, bad_shapes_and_tables_are_errors) {
    kv_tables t;
    expect_error([&] { t.init(kv_cache_shape{1, 64, 12, 0}); }, "block size 12 is not a power of two");
    expect_error([&] { t.init(kv_cache_shape{0, 64, 16, 0}); }, "at least one slot");
    expect_error([&] { t.init(kv_cache_shape{1, 0, 16, 0}); }, "at least one position");
    t.init(kv_cache_shape{2, 32, 16, 5});
    expect_error([&] { t.set(0, std::vector<int32_t>{0, 1, 2}); }, "has 3 blocks, at most 2");
    expect_error([&] { t.set(0, std::vector<int32_t>{5}); }, "block 5 outside [0, 5)");
    expect_error([&] { t.set(2, std::vector<int32_t>{0}); }, "slot 2 outside [0, 2)");
}
