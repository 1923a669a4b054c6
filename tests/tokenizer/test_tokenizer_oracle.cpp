// nibble's tokenizer against transformers.js (@lenml/tokenizers) on the real Qwen3, Llama-3.1,
// gpt-oss and DeepSeek-V3 tokenizer.json files: identical ids for every corpus string (written by
// gen_oracle.mjs), decode round-trips, and the streaming decoder agreeing with decode().
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tokenizer/normalizer.h"
#include "tokenizer/tokenizer.h"

namespace {

std::string escaped(const std::string& s) {
    nlohmann::json j = s;
    std::string d = j.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
    return d.size() > 300 ? d.substr(0, 300) + "..." : d;
}

std::string ids_text(const std::vector<int32_t>& ids) {
    std::string s;
    for (size_t i = 0; i < ids.size() && i < 40; ++i) s += (i ? " " : "") + std::to_string(ids[i]);
    return ids.size() > 40 ? s + " ..." : s;
}

const nlohmann::json* oracle() {
    static nlohmann::json j;
    static bool loaded = false;
    if (!loaded) {
        loaded = true;
        std::ifstream f(NIBBLE_TOKENIZER_ORACLE_JSON);
        if (!f) return nullptr;
        std::stringstream ss;
        ss << f.rdbuf();
        j = nlohmann::json::parse(ss.str());
    }
    return j.is_object() ? &j : nullptr;
}

void check_tokenizer(const std::string& name) {
    std::string modules = std::string(NIBBLE_ORACLE_DIR) + "/node_modules/@lenml/tokenizers";
    if (!std::filesystem::exists(modules))
        GTEST_SKIP() << "SKIPPED: npm oracles not installed (" << modules
                     << " missing; run tests/oracle/install.sh or ctest with network)";
    const nlohmann::json* j = oracle();
    ASSERT_NE(j, nullptr) << "oracles are installed but " << NIBBLE_TOKENIZER_ORACLE_JSON
                          << " is missing: the tokenizer_oracle_gen step failed";
    const nlohmann::json* entry = nullptr;
    for (const auto& t : (*j)["tokenizers"])
        if (t["name"] == name) entry = &t;
    ASSERT_NE(entry, nullptr) << name << " is not in the oracle file";

    nibble::tokenizer tok = nibble::tokenizer::load((*entry)["dir"].get<std::string>());
    bool nfc = name == "qwen3";
    size_t n_cases = 0, n_bad_ids = 0, n_bad_special = 0, n_bad_decode = 0, n_bad_stream = 0, n_bytes = 0;
    double seconds = 0;
    for (const auto& c : (*entry)["cases"]) {
        std::string text = c["text"].get<std::string>();
        std::vector<int32_t> want = c["ids"].get<std::vector<int32_t>>();
        auto t0 = std::chrono::steady_clock::now();
        std::vector<int32_t> got = tok.encode(text, false);
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        n_bytes += text.size();
        ++n_cases;
        if (got != want && ++n_bad_ids <= 8)
            ADD_FAILURE() << name << ": ids differ for " << escaped(text) << "\n  js:     " << ids_text(want)
                          << "\n  nibble: " << ids_text(got);
        if (c.contains("ids_special")) {
            std::vector<int32_t> want_special = c["ids_special"].get<std::vector<int32_t>>();
            // DeepSeek-V3's tokenizer_config.json says add_bos_token: true, which transformers'
            // LlamaTokenizerFast honours and transformers.js ignores: HF (and nibble) add BOS 0.
            if (name == "deepseek_v3") want_special.insert(want_special.begin(), 0);
            std::vector<int32_t> got_special = tok.encode(text, true);
            if (got_special != want_special && ++n_bad_special <= 4)
                ADD_FAILURE() << name << ": ids with special tokens differ for " << escaped(text)
                              << "\n  expected: " << ids_text(want_special)
                              << "\n  nibble:   " << ids_text(got_special);
        }
        std::string expect_text = nfc ? nibble::nfc(text) : text;
        std::string back = tok.decode(got);
        if (back != expect_text && ++n_bad_decode <= 4)
            ADD_FAILURE() << name << ": decode(encode(s)) != s for " << escaped(text) << "\n  got "
                          << escaped(back);
        nibble::stream_decoder sd(tok, false);
        std::string streamed;
        for (int32_t id : got) streamed += sd.push(id);
        streamed += sd.flush();
        if (streamed != back && ++n_bad_stream <= 4)
            ADD_FAILURE() << name << ": streamed text differs from decode() for " << escaped(text);
    }
    std::printf(
        "[ %s ] %zu strings compared with transformers.js: %zu id mismatches, %zu special-id mismatches, "
        "%zu decode mismatches, %zu stream mismatches; encode %.1f MB/s\n",
        name.c_str(), n_cases, n_bad_ids, n_bad_special, n_bad_decode, n_bad_stream,
        n_bytes / 1e6 / std::max(seconds, 1e-9));
    EXPECT_GE(n_cases, 2000u);
    EXPECT_EQ(n_bad_ids, 0u);
    EXPECT_EQ(n_bad_special, 0u);
    EXPECT_EQ(n_bad_decode, 0u);
    EXPECT_EQ(n_bad_stream, 0u);
}

TEST(tokenizer_oracle, qwen3) {
    check_tokenizer("qwen3");
}
TEST(tokenizer_oracle, llama3_1) {
    check_tokenizer("llama3_1");
}
TEST(tokenizer_oracle, gptoss) {
    check_tokenizer("gptoss");
}
TEST(tokenizer_oracle, deepseek_v3) {
    check_tokenizer("deepseek_v3");
}

}  // namespace
