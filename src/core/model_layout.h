// The tensors a model of a given config has, by Hugging Face name, with their shapes: the single place
// that knows the naming scheme. Used by the weight loader, the quantizer, `synth` and `inspect`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"

namespace nibble {

enum linear_role : uint8_t {
    linear_role_attn_q,
    linear_role_attn_k,
    linear_role_attn_v,
    linear_role_attn_o,
    linear_role_mlp_gate,
    linear_role_mlp_up,
    linear_role_mlp_down,
    linear_role_expert_gate,
    linear_role_expert_up,
    linear_role_expert_down,
    linear_role_router,
    linear_role_lm_head,
};

enum plain_role : uint8_t {
    plain_role_embed,  // [vocab, hidden]
    plain_role_norm,   // [hidden] or [head_dim]
};

// A linear layer y = x W^T (+ b) with W [n, k]; `name` is the module prefix ("model.layers.0.mlp.up_proj").
struct linear_desc {
    std::string name;
    linear_role role;
    int64_t layer = -1;   // -1 for lm_head
    int64_t expert = -1;  // routed expert index, -1 otherwise
    int64_t n = 0, k = 0;
    bool bias = false;
};

// A tensor that is never quantized (embeddings, norms); `name` is the full tensor name.
struct plain_desc {
    std::string name;
    plain_role role;
    std::vector<int64_t> shape;
};

struct model_layout {
    std::vector<linear_desc> linears;  // in model order; lm_head last (absent when tied)
    std::vector<plain_desc> plains;
};

model_layout model_layout_of(const model_config& c);
const char* linear_role_name(linear_role r);
// Whether the quantizers leave this role unquantized by default (lm_head and MoE routers).
bool linear_role_kept_dense(linear_role r);

}  // namespace nibble
