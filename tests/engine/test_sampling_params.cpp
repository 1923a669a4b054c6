// sampling_params: layering over generation_config.json and vLLM's validation ranges.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "engine/sampling_params.h"

using namespace nibble;

TEST(SamplingParams, ResolveNeutralDefaults) {
    sampling_params p = sampling_params_resolve({}, {}, -1);
    EXPECT_EQ(*p.temperature, 1.0);
    EXPECT_EQ(*p.top_p, 1.0);
    EXPECT_EQ(*p.top_k, 0);
    EXPECT_EQ(*p.min_p, 0.0);
    EXPECT_EQ(*p.repetition_penalty, 1.0);
    EXPECT_FALSE(p.max_tokens);
    EXPECT_EQ(p.eos_token_id, -1);
    EXPECT_TRUE(p.extra_eos_token_ids.empty());
}

TEST(SamplingParams, ResolveGenerationConfigUnderRequest) {
    // Qwen3-style generation_config.json.
    generation_config gen = generation_config_parse(
        R"({"temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0, "repetition_penalty": 1.05,
            "eos_token_id": [151645, 151643], "max_new_tokens": 100, "do_sample": true})");
    sampling_params req;
    req.temperature = 0.0;  // request wins, even when it is the neutral value
    req.top_k = -1;
    req.max_tokens = 500;
    sampling_params p = sampling_params_resolve(req, gen, 151643);
    EXPECT_EQ(*p.temperature, 0.0);
    EXPECT_EQ(*p.top_p, 0.95);
    EXPECT_EQ(*p.top_k, -1);
    EXPECT_EQ(*p.min_p, 0.0);
    EXPECT_EQ(*p.repetition_penalty, 1.05);
    EXPECT_EQ(*p.max_tokens, 100);  // the smaller of request and max_new_tokens, as vLLM
    EXPECT_EQ(p.eos_token_id, 151643);
    EXPECT_EQ(p.extra_eos_token_ids, std::vector<int32_t>{151645});

    req.max_tokens.reset();
    EXPECT_EQ(*sampling_params_resolve(req, gen, 151643).max_tokens, 100);
    req.max_tokens = 7;
    EXPECT_EQ(*sampling_params_resolve(req, gen, 151643).max_tokens, 7);
    // Without a tokenizer eos every generation_config eos id is "extra".
    EXPECT_EQ(sampling_params_resolve(req, gen, -1).extra_eos_token_ids,
              (std::vector<int32_t>{151645, 151643}));
}

TEST(SamplingParams, ResolveClampsLogitBias) {
    sampling_params req;
    req.logit_bias = {{1, 500.0f}, {2, -1000.0f}, {3, 5.0f}};
    sampling_params p = sampling_params_resolve(req, {}, -1);
    EXPECT_EQ(p.logit_bias[0].second, 100.0f);
    EXPECT_EQ(p.logit_bias[1].second, -100.0f);
    EXPECT_EQ(p.logit_bias[2].second, 5.0f);
}

namespace {

// Expects sampling_params_validate to throw invalid_param for `param` with `fragment` in the message.
void expect_invalid(const std::function<void(sampling_params&)>& edit, const std::string& param,
                    const std::string& fragment, int32_t n_vocab = 0) {
    sampling_params p;
    edit(p);
    try {
        sampling_params_validate(p, n_vocab);
        ADD_FAILURE() << "no error for " << param;
    } catch (const invalid_param& e) {
        EXPECT_EQ(e.param, param);
        EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(param), std::string::npos) << e.what();
    }
}

}  // namespace

TEST(SamplingParams, ValidateAcceptsVllmRanges) {
    sampling_params p;
    p.temperature = 0.0;
    p.top_p = 1.0;
    p.top_k = -1;
    p.min_p = 1.0;
    p.repetition_penalty = 0.5;
    p.presence_penalty = -2.0;
    p.frequency_penalty = 2.0;
    p.max_tokens = 1;
    p.min_tokens = 1;
    p.stop = {"x"};
    p.stop_token_ids = {9};
    p.logit_bias = {{9, -100.0f}};
    EXPECT_NO_THROW(sampling_params_validate(p, 10));
    p.top_k = 0;
    EXPECT_NO_THROW(sampling_params_validate(p));
    p.top_k = 5;
    EXPECT_NO_THROW(sampling_params_validate(p));
    EXPECT_NO_THROW(sampling_params_validate(sampling_params{}));
}

TEST(SamplingParams, ValidateNamesTheField) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    expect_invalid([](sampling_params& p) { p.temperature = -0.1; }, "temperature", "non-negative");
    expect_invalid([&](sampling_params& p) { p.temperature = nan; }, "temperature", "non-negative");
    expect_invalid([](sampling_params& p) { p.temperature = INFINITY; }, "temperature", "finite");
    expect_invalid([](sampling_params& p) { p.top_p = 0.0; }, "top_p", "(0, 1]");
    expect_invalid([](sampling_params& p) { p.top_p = 1.5; }, "top_p", "(0, 1]");
    expect_invalid([&](sampling_params& p) { p.top_p = nan; }, "top_p", "(0, 1]");
    expect_invalid([](sampling_params& p) { p.top_k = -2; }, "top_k", "got -2");
    expect_invalid([](sampling_params& p) { p.min_p = -0.01; }, "min_p", "[0, 1]");
    expect_invalid([](sampling_params& p) { p.min_p = 1.01; }, "min_p", "[0, 1]");
    expect_invalid([](sampling_params& p) { p.repetition_penalty = 0.0; }, "repetition_penalty",
                   "greater than zero");
    expect_invalid([](sampling_params& p) { p.presence_penalty = 2.5; }, "presence_penalty", "[-2, 2]");
    expect_invalid([](sampling_params& p) { p.frequency_penalty = -2.5; }, "frequency_penalty", "[-2, 2]");
    expect_invalid([&](sampling_params& p) { p.frequency_penalty = nan; }, "frequency_penalty", "[-2, 2]");
    expect_invalid([](sampling_params& p) { p.max_tokens = 0; }, "max_tokens", "at least 1");
    expect_invalid([](sampling_params& p) { p.min_tokens = -1; }, "min_tokens", "got -1");
    expect_invalid(
        [](sampling_params& p) {
            p.max_tokens = 4;
            p.min_tokens = 5;
        },
        "min_tokens", "max_tokens=4");
    expect_invalid([](sampling_params& p) { p.stop = {"a", ""}; }, "stop", "empty string");
    expect_invalid([](sampling_params& p) { p.stop_token_ids = {-3}; }, "stop_token_ids", "negative");
    expect_invalid([](sampling_params& p) { p.stop_token_ids = {10}; }, "stop_token_ids", "out of vocabulary",
                   10);
    expect_invalid(
        [](sampling_params& p) {
            p.logit_bias = {{10, 1.0f}};
        },
        "logit_bias", "out of vocabulary", 10);
    expect_invalid([](sampling_params& p) { p.logit_bias = {{1, NAN}}; }, "logit_bias", "finite");
}
