// Golden parity: every bundled model (models/*/golden.json, written by tools/golden.py with transformers in
// float32, on dequantized weights with activation fake-quantization for W4A4 / FP8) against the CPU engine:
// tokenization, last-position logits within a stated bound, 32-token greedy continuations (a divergence is
// accepted only at a near-tie of the reference), and windowed perplexity within 0.5 %.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/runner.h"
#include "loader/checkpoint.h"

using namespace nibble;
using json = nlohmann::json;

namespace {

std::vector<std::string> golden_models() {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(std::string(NIBBLE_SOURCE_DIR) + "/models", ec))
        if (std::filesystem::exists(e.path() / "golden.json")) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

// Logit bounds, from measurements (2026-11-22): with BF16 or weight-only quantized weights the engine
// stays within 6e-5 of transformers (float32, different summation order). With activation quantization
// (W4A4, FP8) a value that float32 noise puts on the other side of a rounding boundary takes the other
// code: most prompts still match to 6e-5, a few move as a whole (seen: max 0.6, mean 0.14 over the vocab).
struct logit_bound {
    double max_abs, mean_abs;
};
logit_bound bound_for(const json& g) {
    std::string em = g.value("quant_emulation", "none");
    if (em == "nvfp4-w4a4" || em == "fp8-dynamic") return {1.0, 0.25};
    return {5e-4, 5e-5};  // and greedy must match all 32 tokens unless the reference margin is < 1e-3
}

int32_t argmax(const std::vector<float>& v) {
    return int32_t(std::max_element(v.begin(), v.end()) - v.begin());
}

class golden : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(golden, matches_transformers) {
    const std::string dir = std::string(NIBBLE_SOURCE_DIR) + "/models/" + GetParam();
    json g = json::parse(read_text_file(dir + "/golden.json"));
    runner_options opt;
    opt.max_ctx = 512;
    opt.max_step = 256;
    model_runner r(dir, opt);
    const logit_bound bound = bound_for(g);
    for (const json& p : g["prompts"]) {
        const std::string name = p["name"];
        std::vector<int32_t> ids = p["ids"].get<std::vector<int32_t>>();
        EXPECT_EQ(r.tok().encode(p["text"].get<std::string>(), false), ids) << name << ": tokenization";
        std::vector<float> lg = r.prefill(0, ids, 0);
        std::vector<float> ref = p["last_logits"].get<std::vector<float>>();
        ASSERT_EQ(lg.size(), ref.size());
        double max_err = 0, sum_err = 0;
        for (size_t i = 0; i < lg.size(); ++i) {
            max_err = std::max(max_err, std::fabs(double(lg[i]) - ref[i]));
            sum_err += std::fabs(double(lg[i]) - ref[i]);
        }
        std::printf("%s %s: max |dlogit| %.3g, mean %.3g\n", GetParam().c_str(), name.c_str(), max_err,
                    sum_err / double(lg.size()));
        EXPECT_LE(max_err, bound.max_abs) << name << ": last-position logits, max |difference|";
        EXPECT_LE(sum_err / double(lg.size()), bound.mean_abs)
            << name << ": last-position logits, mean |difference|";
        RecordProperty(name + "_max_logit_err", std::to_string(max_err));

        // Greedy continuation.
        std::vector<int32_t> want = p["greedy_ids"].get<std::vector<int32_t>>();
        std::vector<double> margins = p["greedy_top2_margins"].get<std::vector<double>>();
        std::vector<int32_t> seq = ids;
        int32_t tok = argmax(lg);
        for (size_t i = 0; i < want.size(); ++i) {
            if (tok != want[i]) {
                // Acceptable only at a near-tie of the reference: a top-2 margin within the logit noise of
                // this variant (float32 order: 1e-3; an activation rounding flip: up to the mean bound).
                EXPECT_LT(margins[i], std::max(bound.mean_abs, 1e-3))
                    << name << ": greedy token " << i << " is " << tok << ", reference " << want[i]
                    << " with a top-2 margin of " << margins[i];
                std::printf("%s %s: greedy diverges at token %zu (reference margin %.3g)\n",
                            GetParam().c_str(), name.c_str(), i, margins[i]);
                break;  // the sequences differ from here on
            }
            seq.push_back(tok);
            if (i + 1 == want.size()) break;
            int32_t slot = 0, pos = int32_t(seq.size() - 1);
            std::vector<float> l =
                r.decode(std::span<const int32_t>(&slot, 1), std::span<const int32_t>(&tok, 1),
                         std::span<const int32_t>(&pos, 1));
            tok = argmax(l);
        }
    }

    // Windowed perplexity, as tools/golden.py and `nibble perplexity` define it.
    const json& pj = g["perplexity"];
    const int64_t window = g["params"]["ppl_window"], max_tokens = g["params"]["ppl_max_tokens"];
    std::vector<int32_t> toks = r.tok().encode(
        read_text_file(std::string(NIBBLE_SOURCE_DIR) + "/models/" + pj["file"].get<std::string>()), false);
    if (int64_t(toks.size()) > max_tokens) toks.resize(size_t(max_tokens));
    const int64_t V = r.config().vocab_size;
    double nll = 0;
    int64_t n = 0;
    for (size_t i = 0; i + 1 < toks.size(); i += size_t(window)) {
        size_t len = std::min(toks.size() - i, size_t(window + 1));
        std::vector<float> lg = r.score(0, std::span<const int32_t>(toks.data() + i, len - 1));
        for (size_t j = 0; j + 1 < len; ++j) {
            const float* row = lg.data() + j * size_t(V);
            double m = *std::max_element(row, row + V), s = 0;
            for (int64_t v = 0; v < V; ++v) s += std::exp(double(row[v]) - m);
            nll += -(double(row[toks[i + j + 1]]) - m - std::log(s));
            ++n;
        }
    }
    EXPECT_EQ(n, pj["predicted_tokens"].get<int64_t>());
    double ppl = std::exp(nll / double(n)), want = pj["ppl"].get<double>();
    EXPECT_NEAR(ppl / want, 1.0, 0.005) << "perplexity " << ppl << " vs transformers " << want;
    std::printf("%s: perplexity %.4f (transformers %.4f)\n", GetParam().c_str(), ppl, want);
}

INSTANTIATE_TEST_SUITE_P(bundled, golden, ::testing::ValuesIn(golden_models()), [](const auto& info) {
    std::string s = info.param;
    for (char& c : s)
        if (!isalnum(uint8_t(c))) c = '_';
    return s;
});
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(golden);
