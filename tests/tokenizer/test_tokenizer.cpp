// Tokenizer tests on small hand-written tokenizer.json files: BPE merges (both formats), added
// tokens and their flags, special-token parsing, post-processor and BOS rules, decoding, the
// streaming detokenizer, and the errors for malformed files.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace {

using nlohmann::json;
using ids = std::vector<int32_t>;

const char* k_qwen_regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// A byte-level BPE tokenizer: ids 0..255 are the bytes, then one id per merge result (in order).
// Merges are given as raw byte strings.
json byte_level_json(const std::vector<std::pair<std::string, std::string>>& merges, bool pair_form = true) {
    json vocab = json::object();
    for (int b = 0; b < 256; ++b) vocab[nibble::byte_level_encode(std::string(1, char(b)))] = b;
    json m = json::array();
    int next = 256;
    for (const auto& [a, b] : merges) {
        std::string ea = nibble::byte_level_encode(a), eb = nibble::byte_level_encode(b);
        if (!vocab.contains(ea + eb)) vocab[ea + eb] = next++;
        if (pair_form)
            m.push_back(json::array({ea, eb}));
        else
            m.push_back(ea + " " + eb);
    }
    json j;
    j["version"] = "1.0";
    j["added_tokens"] = json::array();
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers",
         json::array({{{"type", "Split"},
                       {"pattern", {{"Regex", k_qwen_regex}}},
                       {"behavior", "Isolated"},
                       {"invert", false}},
                      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}};
    j["post_processor"] = nullptr;
    j["decoder"] = {{"type", "ByteLevel"}};
    j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", m}, {"ignore_merges", false}};
    return j;
}

void add_token(json& j, int id, const std::string& content, bool special, json flags = json::object()) {
    json t = {{"id", id},        {"content", content},   {"special", special},    {"lstrip", false},
              {"rstrip", false}, {"single_word", false}, {"normalized", !special}};
    for (auto it = flags.begin(); it != flags.end(); ++it) t[it.key()] = it.value();
    j["added_tokens"].push_back(t);
}

nibble::tokenizer load(const json& j, const json& cfg = json()) {
    return nibble::tokenizer::from_json(j.dump(), cfg.is_null() ? "" : cfg.dump());
}

std::string load_error(const json& j) {
    try {
        load(j);
    } catch (const nibble::error& e) {
        return e.what();
    }
    return "(no error)";
}

TEST(tokenizer_bpe, merges_lowest_rank_first_both_formats) {
    std::vector<std::pair<std::string, std::string>> merges = {
        {"l", "l"}, {"h", "e"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"}};
    for (bool pair_form : {true, false}) {
        nibble::tokenizer t = load(byte_level_json(merges, pair_form));
        // hello -> "hello" (ids: ll=256, he=257, hell=258, hello=259), " w" = 260
        EXPECT_EQ(t.encode("hello"), ids({259}));
        EXPECT_EQ(t.encode("hello world"), ids({259, 260, 'o', 'r', 'l', 'd'}));
        EXPECT_EQ(t.decode(t.encode("hello world")), "hello world");
        EXPECT_EQ(t.token_id(nibble::byte_level_encode("hell")), 258);
    }
}

TEST(tokenizer_bpe, tie_breaks_leftmost) {
    nibble::tokenizer t = load(byte_level_json({{"a", "a"}}));
    EXPECT_EQ(t.encode("aaa"), ids({256, 'a'}));
    EXPECT_EQ(t.encode("aaaa"), ids({256, 256}));
}

TEST(tokenizer_bpe, ignore_merges_takes_whole_piece) {
    json j = byte_level_json({{"a", "b"}, {"b", "c"}});
    std::string abc = nibble::byte_level_encode("abc");
    j["model"]["vocab"][abc] = 300;
    nibble::tokenizer without = load(j);
    EXPECT_EQ(without.encode("abc"), ids({256, 'c'}));  // no merge reaches "abc"
    j["model"]["ignore_merges"] = true;
    nibble::tokenizer with = load(j);
    EXPECT_EQ(with.encode("abc"), ids({300}));
}

TEST(tokenizer_bpe, pretokenizer_splits_before_merging) {
    nibble::tokenizer t = load(byte_level_json({{" ", " "}, {"  ", " "}}));
    // \s+(?!\S): "a   b" -> "a", "  ", " b"
    EXPECT_EQ(t.encode("a   b"), ids({'a', 256, ' ', 'b'}));
    // Qwen: one digit per piece.
    EXPECT_EQ(t.encode("12"), ids({'1', '2'}));
}

TEST(tokenizer_added, special_tokens_matched_before_bpe_longest_first) {
    json j = byte_level_json({{"<", "|"}});
    add_token(j, 400, "<|im_start|>", true);
    add_token(j, 401, "<|im_start|>x", true);
    add_token(j, 402, "<think>", false);
    nibble::tokenizer t = load(j);
    EXPECT_EQ(t.encode("a<|im_start|>b"), ids({'a', 400, 'b'}));
    EXPECT_EQ(t.encode("<|im_start|>x"), ids({401}));
    EXPECT_EQ(t.encode("<|im_start"), ids({256, 'i', 'm', '_', 's', 't', 'a', 'r', 't'}));
    // parse_special=false: special text is plain text, non-special added tokens still match.
    ids plain = t.encode("<|im_start|><think>", true, false);
    EXPECT_EQ(plain.back(), 402);
    EXPECT_EQ(plain.front(), 256);
    EXPECT_EQ(t.decode(ids({'a', 400, 402})), "a<|im_start|><think>");
    EXPECT_EQ(t.decode(ids({'a', 400, 402}), true), "a<think>");
    EXPECT_TRUE(t.is_special(400));
    EXPECT_FALSE(t.is_special(402));
    EXPECT_EQ(t.n_vocab(), 403);
}

TEST(tokenizer_added, lstrip_rstrip_single_word) {
    json j = byte_level_json({});
    add_token(j, 400, "<mask>", true, {{"lstrip", true}});
    add_token(j, 401, "<sep>", true, {{"rstrip", true}});
    add_token(j, 402, "cat", false, {{"single_word", true}});
    nibble::tokenizer t = load(j);
    EXPECT_EQ(t.encode("a  <mask> b"), ids({'a', 400, ' ', 'b'}));
    EXPECT_EQ(t.encode("a <sep>  b"), ids({'a', ' ', 401, 'b'}));
    EXPECT_EQ(t.encode("cat"), ids({402}));
    EXPECT_EQ(t.encode("a cat."), ids({'a', ' ', 402, '.'}));
    EXPECT_EQ(t.encode("concat"), ids({'c', 'o', 'n', 'c', 'a', 't'}));
}

TEST(tokenizer_post, template_and_add_bos_token) {
    json j = byte_level_json({});
    add_token(j, 500, "<s>", true);
    add_token(j, 501, "</s>", true);
    j["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {500}}, {"tokens", {"<s>"}}}}}}};
    nibble::tokenizer t = load(j);
    EXPECT_EQ(t.encode("a"), ids({500, 'a'}));
    EXPECT_EQ(t.encode("a", false), ids({'a'}));
    EXPECT_EQ(t.bos_id(), 500);
    nibble::tokenizer off = load(j, {{"bos_token", "<s>"}, {"add_bos_token", false}, {"eos_token", "</s>"}});
    EXPECT_EQ(off.encode("a"), ids({'a'}));
    EXPECT_EQ(off.eos_id(), 501);
    j["post_processor"] = {{"type", "ByteLevel"}};
    nibble::tokenizer on = load(j, {{"bos_token", {{"__type", "AddedToken"}, {"content", "<s>"}}},
                                    {"add_bos_token", true},
                                    {"add_eos_token", true},
                                    {"eos_token", "</s>"}});
    EXPECT_EQ(on.encode("a"), ids({500, 'a', 501}));
}

TEST(tokenizer_decode, invalid_utf8_input_and_output) {
    nibble::tokenizer t = load(byte_level_json({}));
    // Invalid input bytes become U+FFFD before tokenizing (EF BF BD).
    EXPECT_EQ(t.encode("a\xFF"), ids({'a', 0xEF, 0xBF, 0xBD}));
    // Decoding half a character gives U+FFFD.
    EXPECT_EQ(t.decode(ids({0xE2, 0x82})), "\xEF\xBF\xBD");
    EXPECT_EQ(t.decode(ids({0xE2, 0x82, 0xAC})), "\xE2\x82\xAC");
    EXPECT_EQ(t.decode(ids({'a', 99999, 'b'})), "ab");  // ids outside the vocabulary are skipped
}

TEST(tokenizer_stream, holds_back_split_characters) {
    json j = byte_level_json({});
    add_token(j, 400, "<|im_end|>", true);
    nibble::tokenizer t = load(j);
    nibble::stream_decoder sd(t);
    EXPECT_EQ(sd.push('a'), "a");
    EXPECT_EQ(sd.push(0xF0), "");  // 😀 = F0 9F 98 80, one byte per token
    EXPECT_EQ(sd.push(0x9F), "");
    EXPECT_EQ(sd.push(0x98), "");
    EXPECT_EQ(sd.n_pending(), 3u);
    EXPECT_EQ(sd.push(0x80), "\xF0\x9F\x98\x80");
    EXPECT_EQ(sd.push(0xE2), "");
    EXPECT_EQ(sd.push(400), "");  // special, skipped by default
    EXPECT_EQ(sd.push('b'),
              "\xEF\xBF\xBD"
              "b");  // the unfinished E2 can no longer complete
    EXPECT_EQ(sd.push(0xC3), "");
    EXPECT_EQ(sd.flush(), "\xEF\xBF\xBD");
    nibble::stream_decoder keep(t, false);
    EXPECT_EQ(keep.push(400), "<|im_end|>");
}

TEST(tokenizer_stream, concatenation_equals_decode) {
    nibble::tokenizer t = load(byte_level_json({{"\xE4", "\xBD"}, {"\xE4\xBD", "\xA0"}}));
    std::string text = "你好 héllo 😀 wörld \xE2\x82\xAC";
    ids all = t.encode(text);
    nibble::stream_decoder sd(t);
    std::string out;
    for (int32_t id : all) out += sd.push(id);
    out += sd.flush();
    EXPECT_EQ(out, text);
    EXPECT_EQ(t.decode(all), text);
}

TEST(tokenizer_errors, malformed_files_name_the_field) {
    EXPECT_NE(load_error(json::object()).find("missing \"model\""), std::string::npos);
    json j = byte_level_json({});
    j["model"].erase("vocab");
    EXPECT_NE(load_error(j).find("model.vocab"), std::string::npos);
    j = byte_level_json({});
    j["model"]["type"] = "WordPiece";
    EXPECT_NE(load_error(j).find("model.type \"WordPiece\""), std::string::npos);
    j = byte_level_json({});
    j["model"]["type"] = "Unigram";
    EXPECT_NE(load_error(j).find("Unigram"), std::string::npos);
    j = byte_level_json({});
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(ab";
    std::string e = load_error(j);
    EXPECT_NE(e.find("pre_tokenizer Split pattern"), std::string::npos) << e;
    EXPECT_NE(e.find("offset 3"), std::string::npos) << e;
    EXPECT_NE(e.find("missing closing parenthesis"), std::string::npos) << e;
    j = byte_level_json({});
    j["model"]["merges"].push_back(json::array({"zz", "q"}));
    e = load_error(j);
    EXPECT_NE(e.find("model.merges[0]: token \"zz\" is not in model.vocab"), std::string::npos) << e;
    j = byte_level_json({});
    j["model"]["merges"].push_back("a");
    EXPECT_NE(load_error(j).find("model.merges[0]"), std::string::npos);
    j = byte_level_json({});
    j["pre_tokenizer"] = {{"type", "Whitespace"}};
    EXPECT_NE(load_error(j).find("pre_tokenizer type \"Whitespace\""), std::string::npos);
    j = byte_level_json({});
    j["normalizer"] = {{"type", "NFKD"}};
    EXPECT_NE(load_error(j).find("normalizer type \"NFKD\""), std::string::npos);
    EXPECT_NE(load_error(json::parse("[1]")).find("expected a JSON object"), std::string::npos);
    try {
        nibble::tokenizer::from_json("{not json");
        ADD_FAILURE() << "no error";
    } catch (const nibble::error& err) {
        EXPECT_NE(std::string(err.what()).find("not valid JSON"), std::string::npos);
    }
    try {
        nibble::tokenizer::load("/nonexistent-dir");
        ADD_FAILURE() << "no error";
    } catch (const nibble::error& err) {
        EXPECT_NE(std::string(err.what()).find("/nonexistent-dir/tokenizer.json"), std::string::npos);
    }
}

TEST(tokenizer_normalizer, nfc_applies_before_splitting) {
    json j = byte_level_json({});
    j["normalizer"] = {{"type", "NFC"}};
    nibble::tokenizer t = load(j);
    EXPECT_EQ(t.encode("e\xCC\x81"), t.encode("\xC3\xA9"));  // e + U+0301 -> é
    EXPECT_EQ(t.decode(t.encode("e\xCC\x81")), "\xC3\xA9");
}

TEST(tokenizer_bpe, very_long_pieces_are_linear_enough) {
    nibble::tokenizer t = load(byte_level_json({{"a", "a"}, {"aa", "aa"}, {" ", " "}}));
    std::string word(200000, 'a'), spaces(200000, ' ');
    EXPECT_EQ(t.encode(word).size(), 50000u);
    EXPECT_EQ(t.decode(t.encode(spaces + "x")), spaces + "x");
}

}  // namespace

namespace {

// A SentencePiece-style BPE (no ByteLevel): Prepend/Replace normalizer, byte_fallback, and the
// Replace/ByteFallback/Fuse/Strip decoder chain.
TEST(tokenizer_bpe, byte_fallback_and_metaspace_style_decoder) {
    const std::string sp = "\xE2\x96\x81";  // ▁
    json vocab = json::object();
    int id = 0;
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        vocab[name] = id++;
    }
    for (std::string s : {sp, std::string("h"), std::string("i"), sp + "h", sp + "hi"}) vocab[s] = id++;
    json j = {
        {"normalizer",
         {{"type", "Sequence"},
          {"normalizers",
           json::array({{{"type", "Prepend"}, {"prepend", sp}},
                        {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", sp}}})}}},
        {"pre_tokenizer", nullptr},
        {"decoder",
         {{"type", "Sequence"},
          {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", sp}}}, {"content", " "}},
                                    {{"type", "ByteFallback"}},
                                    {{"type", "Fuse"}},
                                    {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}}},
        {"model",
         {{"type", "BPE"},
          {"vocab", vocab},
          {"merges", json::array({sp + " h", sp + "h i"})},
          {"byte_fallback", true}}}};
    nibble::tokenizer t = load(j);
    // "hi é" -> ▁hi ▁ <0xC3> <0xA9>
    ids got = t.encode("hi \xC3\xA9");
    EXPECT_EQ(got, ids({260, 256, 0xC3, 0xA9}));
    EXPECT_EQ(t.decode(got), "hi \xC3\xA9");
    nibble::stream_decoder sd(t);
    std::string out;
    for (int32_t i : got) out += sd.push(i);
    EXPECT_EQ(out + sd.flush(), "hi \xC3\xA9");
}

}  // namespace
