#include "core/model_layout.h"

namespace nibble {

const char* linear_role_name(linear_role r) {
    static const char* names[] = {"attn_q",    "attn_k",      "attn_v",   "attn_o",
                                  "mlp_gate",  "mlp_up",      "mlp_down", "expert_gate",
                                  "expert_up", "expert_down", "router",   "lm_head"};
    return names[r];
}

bool linear_role_kept_dense(linear_role r) {
    return r == linear_role_router || r == linear_role_lm_head;
}

model_layout model_layout_of(const model_config& c) {
    model_layout m;
    const int64_t h = c.hidden_size, q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
    m.plains.push_back({"model.embed_tokens.weight", plain_role_embed, {c.vocab_size, h}});
    for (int64_t l = 0; l < c.n_layers; ++l) {
        std::string p = "model.layers." + std::to_string(l) + ".";
        m.plains.push_back({p + "input_layernorm.weight", plain_role_norm, {h}});
        m.plains.push_back({p + "post_attention_layernorm.weight", plain_role_norm, {h}});
        if (c.qk_norm) {
            m.plains.push_back({p + "self_attn.q_norm.weight", plain_role_norm, {c.head_dim}});
            m.plains.push_back({p + "self_attn.k_norm.weight", plain_role_norm, {c.head_dim}});
        }
        m.linears.push_back({p + "self_attn.q_proj", linear_role_attn_q, l, -1, q, h, c.attention_bias});
        m.linears.push_back({p + "self_attn.k_proj", linear_role_attn_k, l, -1, kv, h, c.attention_bias});
        m.linears.push_back({p + "self_attn.v_proj", linear_role_attn_v, l, -1, kv, h, c.attention_bias});
        m.linears.push_back({p + "self_attn.o_proj", linear_role_attn_o, l, -1, h, q, false});
        if (model_config_layer_is_moe(c, l)) {
            const int64_t i = c.moe_intermediate_size;
            m.linears.push_back({p + "mlp.gate", linear_role_router, l, -1, c.n_experts, h, false});
            for (int64_t e = 0; e < c.n_experts; ++e) {
                std::string ep = p + "mlp.experts." + std::to_string(e) + ".";
                m.linears.push_back({ep + "gate_proj", linear_role_expert_gate, l, e, i, h, false});
                m.linears.push_back({ep + "up_proj", linear_role_expert_up, l, e, i, h, false});
                m.linears.push_back({ep + "down_proj", linear_role_expert_down, l, e, h, i, false});
            }
        } else {
            const int64_t i = c.intermediate_size;
            m.linears.push_back({p + "mlp.gate_proj", linear_role_mlp_gate, l, -1, i, h, false});
            m.linears.push_back({p + "mlp.up_proj", linear_role_mlp_up, l, -1, i, h, false});
            m.linears.push_back({p + "mlp.down_proj", linear_role_mlp_down, l, -1, h, i, false});
        }
    }
    m.plains.push_back({"model.norm.weight", plain_role_norm, {h}});
    if (!c.tie_word_embeddings)
        m.linears.push_back({"lm_head", linear_role_lm_head, -1, -1, c.vocab_size, h, false});
    return m;
}

}  // namespace nibble
