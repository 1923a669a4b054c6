// Model weights as plain data: views into the mmap'd checkpoint, never dequantized copies.
//
// Linear weight layouts (W is [n, k]: n outputs, k inputs, row-major; formats.md):
//   dense  weight  BF16/F16/F32 [n, k]
//   nvfp4  weight  U8 [n, k/2]   E2M1 pairs, even k in the low nibble
//          block_scale F8_E4M3 [n, k/16] (row-major, not swizzled)
//          w = e2m1 × eff, eff = e4m3/global (CT) or e4m3×global (ModelOpt), formed in f32 first
//   mxfp4  weight  U8 [n, k/2]; block_scale U8 E8M0 [n, k/32]; w = e2m1 × 2^(byte-127)
//   fp8    weight  F8_E4M3 [n, k]; fp8_scales f32 [1] | [n] | [ceil(n/128) × ceil(k/128)]; w = e4m3 × scale
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/model_layout.h"
#include "core/quant.h"
#include "core/tensor.h"

namespace nibble {

enum weight_format : uint8_t {
    weight_format_dense,
    weight_format_nvfp4,
    weight_format_mxfp4,
    weight_format_fp8,
};

// How activations entering a linear layer are treated.
enum act_format : uint8_t {
    act_format_none,        // weight-only: activations stay BF16/F32
    act_format_nvfp4,       // W4A4: per-16 dynamic E4M3 scales from a static input global scale
    act_format_fp8_token,   // dynamic per-token FP8
    act_format_fp8_group,   // dynamic FP8 per token per 128-wide k group (block FP8)
    act_format_fp8_static,  // static per-tensor FP8 (input_scale)
};

const char* weight_format_name(weight_format f);
const char* act_format_name(act_format a);

struct linear_weight {
    std::string name;  // module prefix, for messages
    linear_role role = linear_role_attn_q;
    weight_format format = weight_format_dense;
    act_format act = act_format_none;
    int64_t n = 0, k = 0;
    tensor_view weight;
    tensor_view block_scale;  // nvfp4 / mxfp4
    tensor_view bias;         // [n], optional (empty())
    // NVFP4
    nvfp4_convention convention = nvfp4_convention_ct;
    float global_scale = 1.0f;  // as stored: CT weight_global_scale (divisor) / ModelOpt weight_scale_2
    float input_global_scale =
        0.0f;  // W4A4: multiplier into FP8 range (CT as stored; ModelOpt 1/input_scale)
    // FP8
    fp8_granularity fp8_gran = fp8_granularity_tensor;
    std::vector<float> fp8_scales;
    float fp8_input_scale = 0.0f;  // static activation scale (act_format_fp8_static)

    // Bytes streamed by one pass over the layer: weight + scales + bias.
    uint64_t bytes() const;
};

struct layer_weights {
    tensor_view attn_norm;       // [hidden]
    tensor_view ffn_norm;        // [hidden]
    tensor_view q_norm, k_norm;  // [head_dim], Qwen3 only
    linear_weight q, k, v, o;    // [heads·hd, hidden], [kv·hd, hidden] ×2, [hidden, heads·hd]
    bool moe = false;
    linear_weight gate, up, down;  // dense MLP: [inter, hidden] ×2, [hidden, inter]
    linear_weight router;          // MoE: [experts, hidden]
    std::vector<linear_weight> expert_gate, expert_up, expert_down;  // per expert, moe_intermediate
};

struct model_weights {
    tensor_view embed;       // [vocab, hidden]
    tensor_view final_norm;  // [hidden]
    linear_weight lm_head;   // [vocab, hidden]; a dense view of embed when tied
    std::vector<layer_weights> layers;
};

}  // namespace nibble
