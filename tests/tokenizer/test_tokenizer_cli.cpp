// nibble tokenize / detokenize on a folder holding only a tokenizer.json.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tokenizer/unicode.h"

namespace {

using nlohmann::json;

// A byte-level tokenizer: ids 0..255 are bytes, 256 = "he", 257 = <|end|> (special).
void write_tokenizer(const std::string& dir) {
    json vocab = json::object();
    for (int b = 0; b < 256; ++b) vocab[nibble::byte_level_encode(std::string(1, char(b)))] = b;
    vocab["he"] = 256;
    json j = {{"added_tokens", json::array({{{"id", 257}, {"content", "<|end|>"}, {"special", true}}})},
              {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
              {"decoder", {{"type", "ByteLevel"}}},
              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({"h e"})}}}};
    nibble::test::write_file(dir + "/tokenizer.json", j.dump());
}

TEST(tokenizer_cli, tokenize_and_detokenize) {
    nibble::test::temp_dir dir;
    write_tokenizer(dir.path);
    auto r = nibble::test::run_nibble("tokenize --model " + dir.path + " 'hey<|end|>'");
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(r.out, "256 121 257\n");
    r = nibble::test::run_nibble("tokenize --model " + dir.path + " --json 'he'");
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(json::parse(r.out)["ids"], json::array({256}));
    EXPECT_EQ(json::parse(r.out)["tokens"], json::array({"he"}));
    nibble::test::write_file(dir / "in.txt", "he he");
    r = nibble::test::run_nibble("tokenize --model " + dir.path + " --file " + (dir / "in.txt"));
    EXPECT_EQ(r.out, "256 32 256\n");
    r = nibble::test::run_nibble("detokenize --model " + dir.path + " 256 121 257");
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(r.out, "hey<|end|>\n");
    r = nibble::test::run_nibble("detokenize --model " + dir.path + " --skip-special 256,121,257");
    EXPECT_EQ(r.out, "hey\n");
}

TEST(tokenizer_cli, errors) {
    nibble::test::temp_dir dir;
    auto r = nibble::test::run_nibble("tokenize --model " + dir.path + " x");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.out.find("tokenizer.json"), std::string::npos) << r.out;
    write_tokenizer(dir.path);
    r = nibble::test::run_nibble("detokenize --model " + dir.path + " 99999");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.out.find("outside the vocabulary"), std::string::npos) << r.out;
    r = nibble::test::run_nibble("detokenize --model " + dir.path + " abc");
    EXPECT_NE(r.exit_code, 0);
}

}  // namespace
