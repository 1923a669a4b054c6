#include "loader/model_loader.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/formats.h"

namespace nibble {

namespace {

void expect_shape(const tensor_view& t, const std::vector<int64_t>& shape) {
    if (t.shape != shape)
        fail("tensor \"{}\": expected shape {}, found {} ({})", t.name, shape_str(shape), shape_str(t.shape),
             dtype_name(t.type));
}

void expect_dtype(const tensor_view& t, dtype want) {
    if (t.type != want)
        fail("tensor \"{}\": expected dtype {}, found {} {}", t.name, dtype_name(want), dtype_name(t.type),
             shape_str(t.shape));
}

void expect_float_dtype(const tensor_view& t) {
    if (t.type != dtype_f32 && t.type != dtype_bf16 && t.type != dtype_f16)
        fail("tensor \"{}\": expected F32, BF16 or F16, found {}", t.name, dtype_name(t.type));
}

// A scalar scale stored as 0-dim, [1] or [1, 1], in F32/BF16/F16.
float read_scalar(const tensor_view& t) {
    expect_float_dtype(t);
    if (t.numel() != 1 || t.shape.size() > 2)
        fail("tensor \"{}\": expected a scalar ([], [1] or [1, 1]), found {}", t.name, shape_str(t.shape));
    float v = load_float(t.type, t.data, 0);
    if (!std::isfinite(v) || v <= 0)
        fail("tensor \"{}\": scale must be finite and positive, found {}", t.name, v);
    return v;
}

const tensor_view& need(const checkpoint& ck, const std::string& name, const std::string& why) {
    const tensor_view* t = ck.find(name);
    if (!t) fail("tensor \"{}\" not found in {} ({})", name, ck.dir(), why);
    return *t;
}

// NVFP4 block scales are unsigned E4M3 in practice: a sign bit or the NaN code is corrupt data.
void check_nvfp4_scales(const tensor_view& s) {
    const uint8_t* p = s.data;
    const int64_t n = int64_t(s.n_bytes);
    int64_t bad = -1;
#pragma omp parallel for reduction(max : bad)
    for (int64_t i = 0; i < n; ++i)
        if ((p[i] & 0x80) || p[i] == 0x7F) bad = std::max(bad, i);
    if (bad >= 0) {
        int64_t cols = s.shape.size() == 2 ? s.shape[1] : 1;
        fail(
            "tensor \"{}\": block scale at [{}, {}] is 0x{:02X} ({}); NVFP4 scales must be non-negative and "
            "not NaN",
            s.name, bad / cols, bad % cols, p[bad], p[bad] == 0x7F || p[bad] == 0xFF ? "NaN" : "negative");
    }
}

std::string format_of_tensors_msg(const std::string& p, weight_format found, const quant_config& q) {
    auto expected = q.scheme_for(p);
    return fmt::format(
        "module \"{}\" holds {} weights but {} expects {}", p, weight_format_name(found),
        q.source.empty() ? std::string("the checkpoint (no quantization config)") : q.source,
        expected ? weight_format_name(expected->weights) : "it unquantized (ignored or not targeted)");
}

void map_nvfp4(const checkpoint& ck, linear_weight& w, const tensor_view& packed, const std::string& p,
               nvfp4_convention conv, const std::optional<quant_scheme>& s) {
    w.format = weight_format_nvfp4;
    w.convention = conv;
    if (w.k % nvfp4_block) fail("module \"{}\": K = {} is not a multiple of 16 for NVFP4", p, w.k);
    expect_dtype(packed, dtype_u8);
    expect_shape(packed, {w.n, w.k / 2});
    w.weight = packed;
    w.block_scale = need(ck, p + ".weight_scale", "NVFP4 block scales");
    expect_dtype(w.block_scale, dtype_f8_e4m3);
    expect_shape(w.block_scale, {w.n, w.k / nvfp4_block});
    check_nvfp4_scales(w.block_scale);
    if (conv == nvfp4_convention_ct) {
        w.global_scale = read_scalar(need(ck, p + ".weight_global_scale", "NVFP4 global scale"));
    } else {
        w.global_scale = read_scalar(need(ck, p + ".weight_scale_2", "NVFP4 global scale"));
    }
    if (s && s->acts == act_format_nvfp4) {
        w.act = act_format_nvfp4;
        if (conv == nvfp4_convention_ct)
            w.input_global_scale =
                read_scalar(need(ck, p + ".input_global_scale", "W4A4 input global scale"));
        else
            w.input_global_scale = 1.0f / read_scalar(need(ck, p + ".input_scale", "W4A4 input scale"));
    }
}

void map_fp8(const checkpoint& ck, linear_weight& w, const tensor_view& q8, const std::string& p,
             const std::optional<quant_scheme>& s) {
    w.format = weight_format_fp8;
    expect_shape(q8, {w.n, w.k});
    w.weight = q8;
    const tensor_view* sc = ck.find(p + ".weight_scale");
    if (!sc) sc = ck.find(p + ".weight_scale_inv");  // block FP8 (DeepSeek-V3 style): also a multiplier
    if (!sc)
        fail("tensor \"{}.weight_scale\" (or weight_scale_inv) not found in {}: FP8 weight without scales", p,
             ck.dir());
    expect_float_dtype(*sc);
    const int64_t bn = (w.n + fp8_block - 1) / fp8_block, bk = (w.k + fp8_block - 1) / fp8_block;
    if (sc->numel() == 1 && sc->shape.size() <= 1)
        w.fp8_gran = fp8_granularity_tensor;
    else if (sc->shape == std::vector<int64_t>{w.n} || sc->shape == std::vector<int64_t>{w.n, 1})
        w.fp8_gran = fp8_granularity_channel;
    else if (sc->shape == std::vector<int64_t>{bn, bk})
        w.fp8_gran = fp8_granularity_block;
    else
        fail(
            "tensor \"{}\": FP8 scale shape {} fits none of [] / [1] (tensor), [{}] / [{}, 1] (channel), "
            "[{}, {}] "
            "(128x128 blocks)",
            sc->name, shape_str(sc->shape), w.n, w.n, bn, bk);
    if (s && s->fp8_gran != w.fp8_gran && !(s->fp8_gran == fp8_granularity_tensor && w.n == 1))
        fail("tensor \"{}\": scale shape {} does not match the {} granularity the config declares", sc->name,
             shape_str(sc->shape),
             s->fp8_gran == fp8_granularity_block     ? "block"
             : s->fp8_gran == fp8_granularity_channel ? "channel"
                                                      : "tensor");
    w.fp8_scales.resize(size_t(sc->numel()));
    for (size_t i = 0; i < w.fp8_scales.size(); ++i) {
        float v = load_float(sc->type, sc->data, i);
        if (!std::isfinite(v)) fail("tensor \"{}\": scale {} is not finite", sc->name, i);
        w.fp8_scales[i] = v;
    }
    w.act = s ? s->acts : act_format_none;
    if (w.act == act_format_fp8_static)
        w.fp8_input_scale = read_scalar(need(ck, p + ".input_scale", "static FP8 activation scale"));
}

}  // namespace

linear_weight linear_weight_map(const checkpoint& ck, const linear_desc& d, const quant_config& q) {
    linear_weight w;
    w.name = d.name;
    w.role = d.role;
    w.n = d.n;
    w.k = d.k;
    const std::string& p = d.name;
    std::optional<quant_scheme> s = q.scheme_for(p);
    weight_format found;
    if (const tensor_view* packed = ck.find(p + ".weight_packed")) {
        const tensor_view& sc = need(ck, p + ".weight_scale", "block scales of a packed FP4 weight");
        if (sc.type == dtype_u8) {
            found = weight_format_mxfp4;
            w.format = found;
            if (w.k % mxfp4_block) fail("module \"{}\": K = {} is not a multiple of 32 for MXFP4", p, w.k);
            expect_dtype(*packed, dtype_u8);
            expect_shape(*packed, {w.n, w.k / 2});
            expect_shape(sc, {w.n, w.k / mxfp4_block});
            w.weight = *packed;
            w.block_scale = sc;
        } else {
            found = weight_format_nvfp4;
            map_nvfp4(ck, w, *packed, p, nvfp4_convention_ct, s);
        }
    } else if (const tensor_view* wt = ck.find(p + ".weight")) {
        if (wt->type == dtype_u8) {
            if (!ck.find(p + ".weight_scale_2"))
                fail(
                    "tensor \"{}\" is U8 (packed FP4) but \"{}.weight_scale_2\" is missing: quantized weight "
                    "without its scales",
                    wt->name, p);
            found = weight_format_nvfp4;
            map_nvfp4(ck, w, *wt, p, nvfp4_convention_modelopt, s);
        } else if (wt->type == dtype_f8_e4m3) {
            found = weight_format_fp8;
            map_fp8(ck, w, *wt, p, s);
        } else if (wt->type == dtype_bf16 || wt->type == dtype_f16 || wt->type == dtype_f32) {
            found = weight_format_dense;
            expect_shape(*wt, {w.n, w.k});
            w.weight = *wt;
        } else {
            fail("tensor \"{}\": dtype {} is not a weight format nibble reads", wt->name,
                 dtype_name(wt->type));
        }
    } else {
        fail("module \"{}\": neither \"{}.weight\" nor \"{}.weight_packed\" is in {}", p, p, p, ck.dir());
    }
    // The tensors decide; the config must agree (formats.md 7.1).
    weight_format expected = s ? s->weights : weight_format_dense;
    if (found != expected) fail("{}", format_of_tensors_msg(p, found, q));
    if (s && found == weight_format_nvfp4 && s->convention != w.convention &&
        q.method == quant_method_modelopt)
        fail("module \"{}\": ModelOpt config but compressed-tensors tensor names", p);
    if (d.bias) {
        w.bias = need(ck, p + ".bias", "the config declares attention biases");
        expect_float_dtype(w.bias);
        expect_shape(w.bias, {w.n});
    }
    return w;
}

model_weights model_weights_map(const checkpoint& ck, const model_config& c, const quant_config& q) {
    model_layout layout = model_layout_of(c);
    model_weights m;
    m.layers.resize(size_t(c.n_layers));
    for (const plain_desc& d : layout.plains) {
        const tensor_view& t = need(ck, d.name, d.role == plain_role_embed ? "embeddings" : "norm weight");
        expect_float_dtype(t);
        expect_shape(t, d.shape);
        if (d.role == plain_role_embed) {
            m.embed = t;
            continue;
        }
        if (d.name == "model.norm.weight") {
            m.final_norm = t;
            continue;
        }
        // model.layers.L.<what>
        size_t a = std::string("model.layers.").size(), b = d.name.find('.', a);
        layer_weights& l = m.layers[size_t(std::stoll(d.name.substr(a, b - a)))];
        std::string what = d.name.substr(b + 1);
        if (what == "input_layernorm.weight")
            l.attn_norm = t;
        else if (what == "post_attention_layernorm.weight")
            l.ffn_norm = t;
        else if (what == "self_attn.q_norm.weight")
            l.q_norm = t;
        else if (what == "self_attn.k_norm.weight")
            l.k_norm = t;
    }
    for (const linear_desc& d : layout.linears) {
        linear_weight w = linear_weight_map(ck, d, q);
        if (d.role == linear_role_lm_head) {
            m.lm_head = std::move(w);
            continue;
        }
        layer_weights& l = m.layers[size_t(d.layer)];
        switch (d.role) {
            case linear_role_attn_q:
                l.q = std::move(w);
                break;
            case linear_role_attn_k:
                l.k = std::move(w);
                break;
            case linear_role_attn_v:
                l.v = std::move(w);
                break;
            case linear_role_attn_o:
                l.o = std::move(w);
                break;
            case linear_role_mlp_gate:
                l.gate = std::move(w);
                break;
            case linear_role_mlp_up:
                l.up = std::move(w);
                break;
            case linear_role_mlp_down:
                l.down = std::move(w);
                break;
            case linear_role_router:
                l.moe = true;
                l.router = std::move(w);
                l.expert_gate.resize(size_t(c.n_experts));
                l.expert_up.resize(size_t(c.n_experts));
                l.expert_down.resize(size_t(c.n_experts));
                break;
            case linear_role_expert_gate:
                l.expert_gate[size_t(d.expert)] = std::move(w);
                break;
            case linear_role_expert_up:
                l.expert_up[size_t(d.expert)] = std::move(w);
                break;
            case linear_role_expert_down:
                l.expert_down[size_t(d.expert)] = std::move(w);
                break;
            case linear_role_lm_head:
                break;
        }
    }
    if (c.tie_word_embeddings) {
        m.lm_head.name = "lm_head (tied to model.embed_tokens)";
        m.lm_head.role = linear_role_lm_head;
        m.lm_head.n = c.vocab_size;
        m.lm_head.k = c.hidden_size;
        m.lm_head.weight = m.embed;
    }
    return m;
}

loaded_model load_model(const std::string& dir) {
    loaded_model m;
    std::string path = dir + "/config.json";
    nlohmann::json j = nlohmann::json::parse(read_text_file(path), nullptr, false);
    if (j.is_discarded()) fail("{}: not valid JSON", path);
    m.config = model_config_parse(j, path);
    m.quant = quant_config_load(dir, j);
    m.ckpt = std::make_unique<checkpoint>(dir);
    m.weights = model_weights_map(*m.ckpt, m.config, m.quant);
    return m;
}

}  // namespace nibble
