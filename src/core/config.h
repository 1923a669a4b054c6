// Model configuration: a flat struct read from a Hugging Face config.json. Architecture differences
// are flags and sizes, not types. Both the classic keys (rope_theta, rope_scaling, num_experts,
// torch_dtype) and the transformers-5 keys (rope_parameters, num_local_experts, dtype) are read.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/dtype.h"

namespace nibble {

enum model_arch : uint8_t {
    model_arch_llama,      // LlamaForCausalLM (Llama 3.x)
    model_arch_qwen2,      // Qwen2ForCausalLM: q/k/v biases
    model_arch_qwen3,      // Qwen3ForCausalLM: q_norm/k_norm
    model_arch_qwen3_moe,  // Qwen3MoeForCausalLM: q_norm/k_norm, routed experts
};

enum rope_kind : uint8_t {
    rope_kind_default,
    rope_kind_llama3,  // Llama 3.1 frequency scaling
};

struct model_config {
    model_arch arch = model_arch_llama;
    std::string model_type;  // as written in config.json
    dtype weight_dtype = dtype_bf16;

    int64_t vocab_size = 0;
    int64_t hidden_size = 0;
    int64_t intermediate_size = 0;  // dense MLP width
    int64_t n_layers = 0;
    int64_t n_heads = 0;
    int64_t n_kv_heads = 0;
    int64_t head_dim = 0;
    int64_t max_position_embeddings = 0;
    float rms_norm_eps = 1e-6f;
    bool tie_word_embeddings = false;
    bool attention_bias = false;  // q/k/v (and o when o_bias) biases
    bool qk_norm = false;         // per-head RMSNorm on q and k before RoPE (Qwen3)

    float rope_theta = 10000.0f;
    rope_kind rope = rope_kind_default;
    float rope_factor = 1.0f;  // llama3 scaling parameters
    float rope_low_freq_factor = 1.0f;
    float rope_high_freq_factor = 4.0f;
    int64_t rope_original_max_position = 8192;

    // Mixture of experts (n_experts == 0 for dense models).
    int64_t n_experts = 0;
    int64_t n_experts_per_token = 0;
    int64_t moe_intermediate_size = 0;
    bool norm_topk_prob = false;
    int64_t decoder_sparse_step = 1;
    std::vector<int64_t> mlp_only_layers;

    std::vector<int64_t> eos_token_ids;
    int64_t bos_token_id = -1;
};

// Parses config.json text; `source` names the file in messages. Fails on an unsupported architecture,
// a missing or mistyped required field, or inconsistent sizes (heads not divisible by kv heads...).
model_config model_config_parse(const nlohmann::json& j, const std::string& source);
// Reads DIR/config.json.
model_config model_config_load(const std::string& dir);
// Whether layer `layer` uses routed experts (Qwen3-MoE: decoder_sparse_step, mlp_only_layers).
bool model_config_layer_is_moe(const model_config& c, int64_t layer);
const char* model_arch_name(model_arch a);

}  // namespace nibble
