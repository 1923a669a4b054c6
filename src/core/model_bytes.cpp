#include "core/model_bytes.h"

#include <set>

namespace nibble {

std::string linear_format_label(const linear_weight& w) {
    switch (w.format) {
        case weight_format_dense:
            return std::string(dtype_name(w.weight.type));
        case weight_format_nvfp4:
            return std::string("NVFP4 ") + (w.act == act_format_nvfp4 ? "W4A4" : "W4A16") +
                   (w.convention == nvfp4_convention_ct ? " (compressed-tensors)" : " (ModelOpt)");
        case weight_format_mxfp4:
            return "MXFP4 W4A16";
        case weight_format_fp8: {
            const char* g = w.fp8_gran == fp8_granularity_tensor    ? "per-tensor"
                            : w.fp8_gran == fp8_granularity_channel ? "per-channel"
                                                                    : "128x128 block";
            return std::string("FP8 ") + g +
                   (w.act == act_format_none ? ", weight-only"
                                             : std::string(", ") + act_format_name(w.act) + " activations");
        }
    }
    return "?";
}

namespace {

struct accumulator {
    role_bytes r;
    std::set<std::string> formats;
    uint64_t quantized_per_token = 0;

    void add(const linear_weight& w, double active_fraction) {
        r.params += w.n * w.k;
        r.bytes += w.bytes();
        r.active_params += int64_t(double(w.n * w.k) * active_fraction);
        uint64_t t = uint64_t(double(w.bytes()) * active_fraction);
        r.bytes_per_token += t;
        if (w.format != weight_format_dense) quantized_per_token += t;
        formats.insert(linear_format_label(w));
    }
    void add_plain(const tensor_view& t, uint64_t per_token) {
        if (t.empty()) return;
        r.params += t.numel();
        r.bytes += t.n_bytes;
        r.active_params += int64_t(per_token / dtype_size(t.type));
        r.bytes_per_token += per_token;
        formats.insert(std::string(dtype_name(t.type)));
    }
};

}  // namespace

model_bytes model_bytes_of(const model_config& c, const model_weights& w) {
    auto named = [](const char* role) {
        accumulator a;
        a.r.role = role;
        return a;
    };
    accumulator attn = named("attention"), mlp = named("mlp"), experts = named("experts"),
                router = named("router"), embed = named("embeddings"), head = named("lm_head"),
                norms = named("norms");
    for (const layer_weights& l : w.layers) {
        for (const linear_weight* x : {&l.q, &l.k, &l.v, &l.o}) attn.add(*x, 1.0);
        norms.add_plain(l.attn_norm, l.attn_norm.n_bytes);
        norms.add_plain(l.ffn_norm, l.ffn_norm.n_bytes);
        norms.add_plain(l.q_norm, l.q_norm.n_bytes);
        norms.add_plain(l.k_norm, l.k_norm.n_bytes);
        if (!l.moe) {
            for (const linear_weight* x : {&l.gate, &l.up, &l.down}) mlp.add(*x, 1.0);
            continue;
        }
        router.add(l.router, 1.0);
        double frac = double(c.n_experts_per_token) / double(c.n_experts);
        for (size_t e = 0; e < l.expert_gate.size(); ++e)
            for (const linear_weight* x : {&l.expert_gate[e], &l.expert_up[e], &l.expert_down[e]})
                experts.add(*x, frac);
    }
    norms.add_plain(w.final_norm, w.final_norm.n_bytes);
    // One embedding row is read per token.
    embed.add_plain(w.embed, uint64_t(c.hidden_size) * dtype_size(w.embed.type));
    if (c.tie_word_embeddings) {  // the same tensor, read whole as the lm_head
        head.r.params = 0;
        head.r.active_params = w.lm_head.n * w.lm_head.k;
        head.r.bytes_per_token = w.lm_head.bytes();
        head.formats.insert(std::string(dtype_name(w.embed.type)) + " (tied)");
    } else {
        head.add(w.lm_head, 1.0);
    }

    model_bytes m;
    for (accumulator* a : {&attn, &mlp, &experts, &router, &embed, &head, &norms}) {
        if (a->r.params == 0 && a->r.bytes_per_token == 0) continue;
        for (const std::string& f : a->formats) a->r.formats += (a->r.formats.empty() ? "" : ", ") + f;
        m.params += a->r.params;
        m.active_params += a->r.active_params;
        m.weight_bytes += a->r.bytes;
        m.weight_bytes_per_token += a->r.bytes_per_token;
        m.quantized_bytes_per_token += a->quantized_per_token;
        m.roles.push_back(a->r);
    }
    uint64_t kv_elems = 2ull * uint64_t(c.n_layers * c.n_kv_heads * c.head_dim);
    m.kv_bytes_per_position_bf16 = kv_elems * 2;
    m.kv_bytes_per_position_fp8 = kv_elems;
    return m;
}

}  // namespace nibble
