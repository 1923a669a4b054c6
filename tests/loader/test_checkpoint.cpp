// checkpoint folders: single file, sharded with model.safetensors.index.json, shards without an index,
// and broken folders (each error names the file and the tensor).
#include <gtest/gtest.h>

#include "loader/checkpoint.h"
#include "loader_test_util.h"
#include "test_util.h"

using namespace nibble;
using namespace nibble::test;

namespace {

std::string checkpoint_error(const std::string& dir) {
    try {
        checkpoint ck(dir);
    } catch (const nibble::error& e) {
        return e.what();
    }
    ADD_FAILURE() << "expected a nibble::error opening " << dir;
    return "";
}

const char* k_index_name = "model.safetensors.index.json";

// Two shards: layer 0 in the first, layer 1 and the head in the second.
void write_two_shards(const temp_dir& tmp, const std::string& a = "model-00001-of-00002.safetensors",
                      const std::string& b = "model-00002-of-00002.safetensors") {
    write_pattern_file(tmp / a, {st_entry("model.layers.0.w", dtype_bf16, {4, 8}),
                                 st_entry("model.layers.0.s", dtype_f32, {})});
    write_pattern_file(tmp / b,
                       {st_entry("model.layers.1.w", dtype_bf16, {4, 8}),
                        st_entry("lm_head.weight", dtype_f8_e4m3, {3, 5}), st_entry("empty", dtype_u8, {0})},
                       {{"format", "pt"}});
}

std::string index_json(const std::string& a = "model-00001-of-00002.safetensors",
                       const std::string& b = "model-00002-of-00002.safetensors") {
    return R"({"metadata": {"total_size": 181}, "weight_map": {
        "model.layers.0.w": ")" +
           a + R"(", "model.layers.0.s": ")" + a + R"(",
        "model.layers.1.w": ")" +
           b + R"(", "lm_head.weight": ")" + b + R"(", "empty": ")" + b + R"("}})";
}

void expect_two_shard_contents(const checkpoint& ck) {
    ASSERT_EQ(ck.tensors().size(), 5u);
    EXPECT_EQ(ck.total_bytes(), 64u + 4 + 64 + 15 + 0);
    const tensor_view& w1 = ck.get("model.layers.1.w");
    EXPECT_EQ(w1.type, dtype_bf16);
    EXPECT_EQ(w1.shape, (std::vector<int64_t>{4, 8}));
    ASSERT_EQ(w1.n_bytes, 64u);
    for (size_t i = 0; i < 64; ++i) ASSERT_EQ(w1.data[i], pattern_byte(0, i));
    const tensor_view& head = ck.get("lm_head.weight");
    for (size_t i = 0; i < 15; ++i) ASSERT_EQ(head.data[i], pattern_byte(1, i));
    const tensor_view& s = ck.get("model.layers.0.s");
    EXPECT_TRUE(s.shape.empty());
    EXPECT_EQ(s.numel(), 1);
    EXPECT_EQ(s.n_bytes, 4u);
    EXPECT_EQ(ck.get("empty").n_bytes, 0u);
}

}  // namespace

TEST(checkpoint, sharded_with_index) {
    temp_dir tmp;
    write_two_shards(tmp);
    write_file(tmp / k_index_name, index_json());
    write_file(tmp / "config.json", "{}");
    checkpoint ck(tmp.path);
    expect_two_shard_contents(ck);
    EXPECT_EQ(ck.dir(), tmp.path);
    EXPECT_EQ(ck.files(), (std::vector<std::string>{tmp / "model-00001-of-00002.safetensors",
                                                    tmp / "model-00002-of-00002.safetensors"}));
}

TEST(checkpoint, shards_without_index_are_globbed) {
    temp_dir tmp;
    write_two_shards(tmp, "b.safetensors", "a.safetensors");
    write_file(tmp / "notes.txt", "x");
    checkpoint ck(tmp.path);
    expect_two_shard_contents(ck);
    EXPECT_EQ(ck.files(), (std::vector<std::string>{tmp / "a.safetensors", tmp / "b.safetensors"}));
}

TEST(checkpoint, single_file_wins_over_index) {
    temp_dir tmp;
    write_pattern_file(tmp / "model.safetensors", {st_entry("x", dtype_f32, {2})});
    write_file(tmp / k_index_name, R"({"weight_map": {"y": "missing.safetensors"}})");
    checkpoint ck(tmp.path);
    EXPECT_EQ(ck.tensors().size(), 1u);
    EXPECT_NE(ck.find("x"), nullptr);
    try {
        ck.get("y");
        ADD_FAILURE();
    } catch (const nibble::error& e) {
        EXPECT_EQ(std::string(e.what()), "tensor y not found in " + tmp.path);
    }
}

TEST(checkpoint_hostile, index_names_missing_shard) {
    temp_dir tmp;
    write_two_shards(tmp);
    write_file(tmp / k_index_name, index_json("model-00001-of-00002.safetensors", "gone.safetensors"));
    EXPECT_CONTAINS(checkpoint_error(tmp.path), k_index_name, "\"gone.safetensors\"", "\"empty\"",
                    "does not exist");
}

TEST(checkpoint_hostile, index_names_tensor_not_in_its_shard) {
    temp_dir tmp;
    write_two_shards(tmp);
    std::string idx = index_json();
    idx.insert(idx.rfind("}}"), R"(, "model.layers.2.w": "model-00002-of-00002.safetensors")");
    write_file(tmp / k_index_name, idx);
    EXPECT_CONTAINS(checkpoint_error(tmp.path), k_index_name, "\"model.layers.2.w\"",
                    "model-00002-of-00002.safetensors", "does not hold it");
}

TEST(checkpoint_hostile, index_maps_tensor_to_the_wrong_shard) {
    temp_dir tmp;
    write_two_shards(tmp);
    std::string idx = index_json();
    size_t at = idx.find(R"("lm_head.weight": "model-00002)");
    idx.replace(at, 30, R"("lm_head.weight": "model-00001)");
    write_file(tmp / k_index_name, idx);
    EXPECT_CONTAINS(checkpoint_error(tmp.path), "\"lm_head.weight\"", "to model-00001-of-00002.safetensors",
                    "it is in model-00002-of-00002.safetensors");
}

TEST(checkpoint_hostile, duplicate_tensor_across_shards) {
    temp_dir tmp;
    write_pattern_file(tmp / "a.safetensors",
                       {st_entry("dup.weight", dtype_f32, {2}), st_entry("a", dtype_u8, {1})});
    write_pattern_file(tmp / "b.safetensors",
                       {st_entry("b", dtype_u8, {1}), st_entry("dup.weight", dtype_f32, {2})});
    EXPECT_CONTAINS(checkpoint_error(tmp.path), "\"dup.weight\"", "in both a.safetensors and b.safetensors");
    write_file(tmp / k_index_name, R"({"weight_map": {"dup.weight": "a.safetensors", "a": "a.safetensors",
                                                      "b": "b.safetensors"}})");
    EXPECT_CONTAINS(checkpoint_error(tmp.path), "\"dup.weight\"", "in both a.safetensors and b.safetensors");
}

TEST(checkpoint_hostile, malformed_shard_names_its_path) {
    temp_dir tmp;
    write_two_shards(tmp);
    write_file(tmp / k_index_name, index_json());
    std::string bytes = read_file(tmp / "model-00002-of-00002.safetensors");
    write_file(tmp / "model-00002-of-00002.safetensors", bytes.substr(0, bytes.size() - 1));
    EXPECT_CONTAINS(checkpoint_error(tmp.path), "/model-00002-of-00002.safetensors: tensor \"",
                    "exceed the data section of 78 bytes");
}

TEST(checkpoint_hostile, bad_index_files) {
    temp_dir tmp;
    write_two_shards(tmp);
    write_file(tmp / k_index_name, "{\"weight_map\": ");
    EXPECT_CONTAINS(checkpoint_error(tmp.path), k_index_name, "not valid JSON");
    write_file(tmp / k_index_name, R"({"metadata": {}})");
    EXPECT_CONTAINS(checkpoint_error(tmp.path), k_index_name, "missing \"weight_map\"");
    write_file(tmp / k_index_name, R"({"weight_map": {"x": 3}})");
    EXPECT_CONTAINS(checkpoint_error(tmp.path), k_index_name, "weight_map[\"x\"]", "found number");
    write_file(tmp / k_index_name, R"({"weight_map": {"x": "../model-00001-of-00002.safetensors"}})");
    EXPECT_CONTAINS(checkpoint_error(tmp.path), "weight_map[\"x\"]", "not a file name inside");
    write_file(tmp / k_index_name, R"({"weight_map": {}})");
    EXPECT_CONTAINS(checkpoint_error(tmp.path), "\"weight_map\" is empty");
}

TEST(checkpoint_hostile, no_weights_or_no_folder) {
    temp_dir tmp;
    write_file(tmp / "config.json", "{}");
    EXPECT_CONTAINS(checkpoint_error(tmp.path), tmp.path, "no weights found", "model.safetensors");
    EXPECT_CONTAINS(checkpoint_error(tmp / "nope"), "nope", "no such directory");
}

TEST(checkpoint, read_text_file_and_file_exists) {
    temp_dir tmp;
    write_file(tmp / "c.json", std::string("{\"a\":\0}", 7));
    EXPECT_EQ(read_text_file(tmp / "c.json"), std::string("{\"a\":\0}", 7));
    EXPECT_TRUE(file_exists(tmp / "c.json"));
    EXPECT_FALSE(file_exists(tmp / "d.json"));
    EXPECT_FALSE(file_exists(tmp.path));
    try {
        read_text_file(tmp / "d.json");
        ADD_FAILURE();
    } catch (const nibble::error& e) {
        EXPECT_CONTAINS(e.what(), "d.json", "No such file");
    }
    EXPECT_THROW(read_text_file(tmp.path), nibble::error);
}
