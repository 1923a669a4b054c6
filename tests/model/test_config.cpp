// config.json parsing: the public configs in models/configs, transformers-5 keys, and clear refusals.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/error.h"
#include "loader/checkpoint.h"

using namespace nibble;
using json = nlohmann::json;

namespace {

json public_config(const std::string& name) {
    return json::parse(read_text_file(std::string(NIBBLE_SOURCE_DIR) + "/models/configs/" + name));
}

std::string error_of(const json& j) {
    try {
        model_config_parse(j, "config.json");
    } catch (const error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(config, qwen3_8b) {
    model_config c = model_config_parse(public_config("qwen3-8b.json"), "qwen3-8b");
    EXPECT_EQ(c.arch, model_arch_qwen3);
    EXPECT_EQ(c.hidden_size, 4096);
    EXPECT_EQ(c.n_layers, 36);
    EXPECT_EQ(c.n_heads, 32);
    EXPECT_EQ(c.n_kv_heads, 8);
    EXPECT_EQ(c.head_dim, 128);
    EXPECT_EQ(c.intermediate_size, 12288);
    EXPECT_EQ(c.vocab_size, 151936);
    EXPECT_TRUE(c.qk_norm);
    EXPECT_FALSE(c.tie_word_embeddings);
    EXPECT_EQ(c.rope_theta, 1e6f);
    EXPECT_EQ(c.rope, rope_kind_default);
    EXPECT_EQ(c.weight_dtype, dtype_bf16);
    EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{151645});
}

TEST(config, qwen3_0_6b_head_dim_differs_from_hidden_over_heads) {
    model_config c = model_config_parse(public_config("qwen3-0.6b.json"), "qwen3-0.6b");
    EXPECT_EQ(c.head_dim, 128);
    EXPECT_NE(c.hidden_size / c.n_heads, c.head_dim);
    EXPECT_TRUE(c.tie_word_embeddings);
}

TEST(config, llama_3_1_rope_scaling) {
    model_config c = model_config_parse(public_config("llama-3.1-8b.json"), "llama");
    EXPECT_EQ(c.arch, model_arch_llama);
    EXPECT_FALSE(c.qk_norm);
    EXPECT_EQ(c.head_dim, 128);
    EXPECT_EQ(c.rope, rope_kind_llama3);
    EXPECT_EQ(c.rope_theta, 500000.0f);
    EXPECT_EQ(c.rope_factor, 8.0f);
    EXPECT_EQ(c.rope_low_freq_factor, 1.0f);
    EXPECT_EQ(c.rope_high_freq_factor, 4.0f);
    EXPECT_EQ(c.rope_original_max_position, 8192);
    EXPECT_EQ(c.rms_norm_eps, 1e-5f);
}

TEST(config, qwen3_moe) {
    model_config c = model_config_parse(public_config("qwen3-30b-a3b.json"), "moe");
    EXPECT_EQ(c.arch, model_arch_qwen3_moe);
    EXPECT_EQ(c.n_experts, 128);
    EXPECT_EQ(c.n_experts_per_token, 8);
    EXPECT_EQ(c.moe_intermediate_size, 768);
    EXPECT_TRUE(c.norm_topk_prob);
    EXPECT_EQ(c.n_kv_heads, 4);
    for (int l = 0; l < 48; ++l) EXPECT_TRUE(model_config_layer_is_moe(c, l));
    json j = public_config("qwen3-30b-a3b.json");
    j["mlp_only_layers"] = {0, 5};
    j["decoder_sparse_step"] = 2;
    c = model_config_parse(j, "moe");
    EXPECT_FALSE(model_config_layer_is_moe(c, 0));  // listed
    EXPECT_TRUE(model_config_layer_is_moe(c, 1));   // (1 + 1) % 2 == 0
    EXPECT_FALSE(model_config_layer_is_moe(c, 2));
    EXPECT_FALSE(model_config_layer_is_moe(c, 5));
}

TEST(config, transformers5_keys) {
    json j = public_config("llama-3.1-8b.json");
    json rope = j["rope_scaling"];
    rope["rope_theta"] = 500000.0;
    j.erase("rope_scaling");
    j.erase("rope_theta");
    j["rope_parameters"] = rope;
    j.erase("torch_dtype");
    j["dtype"] = "float16";
    model_config c = model_config_parse(j, "t5");
    EXPECT_EQ(c.rope, rope_kind_llama3);
    EXPECT_EQ(c.rope_theta, 500000.0f);
    EXPECT_EQ(c.rope_factor, 8.0f);
    EXPECT_EQ(c.weight_dtype, dtype_f16);

    json m = public_config("qwen3-30b-a3b.json");
    m.erase("num_experts");
    m["num_local_experts"] = 64;
    m.erase("rope_theta");
    m["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1000000.0}};
    c = model_config_parse(m, "t5");
    EXPECT_EQ(c.n_experts, 64);
    EXPECT_EQ(c.rope_theta, 1e6f);
    EXPECT_EQ(c.rope, rope_kind_default);

    json q2 = public_config("qwen3-8b.json");
    q2["model_type"] = "qwen2";
    q2["architectures"] = {"Qwen2ForCausalLM"};
    q2.erase("attention_bias");
    c = model_config_parse(q2, "qwen2");
    EXPECT_EQ(c.arch, model_arch_qwen2);
    EXPECT_TRUE(c.attention_bias);  // Qwen2 has q/k/v biases
    EXPECT_FALSE(c.qk_norm);
}

TEST(config, clear_errors) {
    json j = public_config("qwen3-8b.json");
    json bad = j;
    bad["model_type"] = "gpt2";
    bad["architectures"] = {"GPT2LMHeadModel"};
    EXPECT_NE(error_of(bad).find("unsupported architecture"), std::string::npos);
    bad = j;
    bad.erase("hidden_size");
    EXPECT_NE(error_of(bad).find("\"hidden_size\" is missing"), std::string::npos);
    bad = j;
    bad["num_hidden_layers"] = "36";
    EXPECT_NE(error_of(bad).find("\"num_hidden_layers\" must be an integer"), std::string::npos);
    bad = j;
    bad["num_key_value_heads"] = 7;
    EXPECT_NE(error_of(bad).find("not a multiple of num_key_value_heads"), std::string::npos);
    bad = j;
    bad["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
    EXPECT_NE(error_of(bad).find("rope_type \"yarn\""), std::string::npos);
    bad = j;
    bad["use_sliding_window"] = true;
    EXPECT_NE(error_of(bad).find("use_sliding_window"), std::string::npos);
    bad = public_config("qwen3-30b-a3b.json");
    bad["num_experts_per_tok"] = 200;
    EXPECT_NE(error_of(bad).find("num_experts_per_tok"), std::string::npos);
    EXPECT_NE(error_of(json::array()).find("expected a JSON object"), std::string::npos);
}
