// nibble run / perplexity / quantize --calib through the CLI on the bundled models.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "loader/checkpoint.h"
#include "test_util.h"

using namespace nibble;
using json = nlohmann::json;

namespace {

std::string model(const std::string& name) {
    return std::string(NIBBLE_SOURCE_DIR) + "/models/" + name;
}

std::string quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

}  // namespace

TEST(run_cli, greedy_json_matches_the_golden_continuation) {
    json g = json::parse(read_text_file(model("qwen3-tiny") + "/golden.json"));
    const json& p = g["prompts"][0];
    auto r = test::run_nibble("run --model " + model("qwen3-tiny") + " --prompt " + quote(p["text"]) +
                              " --max-tokens 16 --temperature 0 --ignore-eos --json");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    json j = json::parse(r.out);
    EXPECT_EQ(j["prompt_ids"], p["ids"]);
    std::vector<int32_t> want = p["greedy_ids"].get<std::vector<int32_t>>();
    want.resize(16);
    EXPECT_EQ(j["generated_ids"].get<std::vector<int32_t>>(), want);
    EXPECT_EQ(j["finish_reason"], "length");
    EXPECT_GT(j["stats"]["decode_tok_per_s"].get<double>(), 0.0);
    EXPECT_GT(j["stats"]["weight_bytes_per_token"].get<double>(), 1e6);
    EXPECT_EQ(j["stats"]["logits_hash"].get<std::string>().size(), 16u);
}

TEST(run_cli, default_model_streams_text_and_reports_roofline_figures) {
    auto r = test::run_nibble("run --prompt 'import os' --max-tokens 8 --temperature 0");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(r.out.rfind("import os", 0), 0u) << r.out;
    EXPECT_NE(r.out.find("tok/s decode"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("GB/s"), std::string::npos) << r.out;
}

TEST(run_cli, clear_errors) {
    auto r = test::run_nibble("run --model " + model("qwen3-tiny") +
                              " --prompt 'def f(x): return x' --max-model-len 4");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.out.find("context"), std::string::npos) << r.out;
    r = test::run_nibble("run --model " + model("qwen3-tiny") + " --top-p 1.5");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.out.find("top_p"), std::string::npos) << r.out;
    r = test::run_nibble("run --model /nonexistent");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.out.find("/nonexistent"), std::string::npos) << r.out;
}

TEST(perplexity_cli, matches_the_golden_perplexity) {
    for (const char* name : {"qwen3-tiny", "qwen3-moe-tiny-nvfp4"}) {
        json g = json::parse(read_text_file(model(name) + "/golden.json"));
        auto r = test::run_nibble("perplexity --model " + model(name) + " --file " + model("heldout.txt") +
                                  " --window 128 --limit 4096 --json");
        ASSERT_EQ(r.exit_code, 0) << r.out;
        json j = json::parse(r.out);
        EXPECT_EQ(j["predicted"], g["perplexity"]["predicted_tokens"]);
        EXPECT_NEAR(j["perplexity"].get<double>() / g["perplexity"]["ppl"].get<double>(), 1.0, 0.005) << name;
    }
}

TEST(quantize_cli, calibrated_w4a4_loads_and_runs) {
    test::temp_dir d;
    auto r = test::run_nibble("quantize " + model("qwen3-moe-tiny") + " " + (d / "q") +
                              " --scheme nvfp4 --format modelopt --calib " + model("heldout.txt") +
                              " --calib-tokens 1024");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    r = test::run_nibble("run --model " + (d / "q") +
                         " --prompt 'import sys' --max-tokens 8 --temperature 0 --json");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(json::parse(r.out)["generated_ids"].size(), 8u);
    r = test::run_nibble("quantize " + model("qwen3-tiny") + " " + (d / "f") +
                         " --scheme fp8-dynamic --calib x.txt");
    EXPECT_NE(r.out.find("--calib is only used by --scheme nvfp4"), std::string::npos) << r.out;
}
