// generation_config.json: eos ids as an int or a list, sampling defaults, missing file.
#include <gtest/gtest.h>

#include "core/error.h"
#include "test_util.h"
#include "tokenizer/generation_config.h"

namespace {

TEST(generation_config, eos_int_or_list_and_sampling_defaults) {
    nibble::generation_config g = nibble::generation_config_parse(
        R"({"bos_token_id": 151643, "do_sample": true, "eos_token_id": [151645, 151643], "pad_token_id": 151643,
            "temperature": 0.6, "top_k": 20, "top_p": 0.95, "transformers_version": "4.51.0"})");
    EXPECT_EQ(g.eos_token_ids, (std::vector<int32_t>{151645, 151643}));
    EXPECT_EQ(g.bos_token_id, 151643);
    EXPECT_EQ(g.do_sample, true);
    EXPECT_DOUBLE_EQ(*g.temperature, 0.6);
    EXPECT_EQ(g.top_k, 20);
    EXPECT_DOUBLE_EQ(*g.top_p, 0.95);
    EXPECT_FALSE(g.min_p.has_value());
    EXPECT_FALSE(g.max_new_tokens.has_value());
    g = nibble::generation_config_parse(
        R"({"eos_token_id": 2, "repetition_penalty": 1.1, "max_new_tokens": 512, "min_p": 0.05})");
    EXPECT_EQ(g.eos_token_ids, (std::vector<int32_t>{2}));
    EXPECT_DOUBLE_EQ(*g.repetition_penalty, 1.1);
    EXPECT_EQ(g.max_new_tokens, 512);
    EXPECT_DOUBLE_EQ(*g.min_p, 0.05);
}

TEST(generation_config, errors_and_missing_file) {
    try {
        nibble::generation_config_parse(R"({"temperature": "hot"})");
        ADD_FAILURE() << "no error";
    } catch (const nibble::error& e) {
        EXPECT_NE(std::string(e.what()).find("temperature"), std::string::npos);
    }
    try {
        nibble::generation_config_parse(R"({"eos_token_id": "x"})");
        ADD_FAILURE() << "no error";
    } catch (const nibble::error& e) {
        EXPECT_NE(std::string(e.what()).find("eos_token_id"), std::string::npos);
    }
    nibble::test::temp_dir dir;
    nibble::generation_config g = nibble::generation_config_load(dir.path);
    EXPECT_TRUE(g.eos_token_ids.empty());
    EXPECT_FALSE(g.temperature.has_value());
    nibble::test::write_file(dir / "generation_config.json", R"({"eos_token_id": [1, 2], "top_k": 5})");
    g = nibble::generation_config_load(dir.path);
    EXPECT_EQ(g.eos_token_ids, (std::vector<int32_t>{1, 2}));
    EXPECT_EQ(g.top_k, 5);
}

}  // namespace
