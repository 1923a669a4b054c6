// End to end: synth a small BF16 model, quantize it in every scheme and format, load it back and check
// that every module dequantizes to exactly what the reference quantizers give; hostile modules are
// rejected naming the tensor; inspect reports the figures of a Qwen3-8B-shaped checkpoint.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/formats.h"
#include "core/quant.h"
#include "loader/model_loader.h"
#include "test_util.h"

using namespace nibble;
using json = nlohmann::json;

namespace {

json tiny_config(bool moe) {
    json j = {{"architectures", {moe ? "Qwen3MoeForCausalLM" : "Qwen3ForCausalLM"}},
              {"model_type", moe ? "qwen3_moe" : "qwen3"},
              {"hidden_size", 64},
              {"intermediate_size", 96},
              {"num_hidden_layers", 2},
              {"num_attention_heads", 4},
              {"num_key_value_heads", 2},
              {"head_dim", 32},
              {"vocab_size", 200},
              {"rms_norm_eps", 1e-6},
              {"rope_theta", 1000000.0},
              {"tie_word_embeddings", false},
              {"torch_dtype", "bfloat16"}};
    if (moe) {
        j["num_experts"] = 4;
        j["num_experts_per_tok"] = 2;
        j["moe_intermediate_size"] = 32;
        j["norm_topk_prob"] = true;
    }
    return j;
}

std::vector<float> floats_of(const tensor_view& t) {
    std::vector<float> v(size_t(t.numel()));
    for (size_t i = 0; i < v.size(); ++i) v[i] = load_float(t.type, t.data, i);
    return v;
}

// Expected dequantized values of a module from its source weights, with the global amax of its group.
std::vector<float> reference_dequant(const linear_weight& q, const std::vector<float>& src, float group_amax,
                                     dtype fp8_scale_dtype) {
    const int64_t n = q.n, k = q.k;
    std::vector<float> out(size_t(n * k));
    if (q.format == weight_format_nvfp4) {
        float g = nvfp4_global_scale(group_amax, q.convention);
        EXPECT_EQ(q.global_scale, g) << q.name;
        std::vector<uint8_t> packed(size_t(n * k / 2)), scales(size_t(n * k / 16));
        nvfp4_quantize(src.data(), n, k, g, q.convention, packed.data(), scales.data());
        // The packed bytes and scales equal the spec's algorithm, byte for byte.
        EXPECT_EQ(0, std::memcmp(packed.data(), q.weight.data, packed.size())) << q.name;
        EXPECT_EQ(0, std::memcmp(scales.data(), q.block_scale.data, scales.size())) << q.name;
        nvfp4_dequantize(packed.data(), scales.data(), n, k, g, q.convention, out.data());
    } else if (q.format == weight_format_mxfp4) {
        std::vector<uint8_t> packed(size_t(n * k / 2)), scales(size_t(n * k / 32));
        mxfp4_quantize(src.data(), n, k, packed.data(), scales.data());
        EXPECT_EQ(0, std::memcmp(packed.data(), q.weight.data, packed.size())) << q.name;
        mxfp4_dequantize(packed.data(), scales.data(), n, k, out.data());
    } else if (q.format == weight_format_fp8) {
        std::vector<uint8_t> q8(size_t(n * k));
        std::vector<float> s(size_t(fp8_scale_count(q.fp8_gran, n, k)));
        fp8_quantize(src.data(), n, k, q.fp8_gran, fp8_scale_dtype, q8.data(), s.data());
        fp8_dequantize(q8.data(), s.data(), n, k, q.fp8_gran, out.data());
    } else {
        out = src;
    }
    return out;
}

// Dequantizes a loaded module with the reference decoders.
std::vector<float> dequant_loaded(const linear_weight& q) {
    const int64_t n = q.n, k = q.k;
    std::vector<float> out(size_t(n * k));
    switch (q.format) {
        case weight_format_nvfp4:
            nvfp4_dequantize(q.weight.data, q.block_scale.data, n, k, q.global_scale, q.convention,
                             out.data());
            break;
        case weight_format_mxfp4:
            mxfp4_dequantize(q.weight.data, q.block_scale.data, n, k, out.data());
            break;
        case weight_format_fp8:
            fp8_dequantize(q.weight.data, q.fp8_scales.data(), n, k, q.fp8_gran, out.data());
            break;
        case weight_format_dense:
            out = floats_of(q.weight);
            break;
    }
    return out;
}

struct source_model {
    test::temp_dir dir;
    std::string path;
    explicit source_model(bool moe) : path(dir / "src") {
        test::write_file(dir / "config.json", tiny_config(moe).dump());
        test::write_file(dir / "tokenizer_config.json", "{\"chat_template\": \"x\"}");
        auto r = test::run_nibble("synth --config " + (dir / "config.json") +
                                  " --scheme bf16 --seed 3 --tokenizer " + dir.path + " " + path);
        EXPECT_EQ(r.exit_code, 0) << r.out;
    }
};

void check_round_trip(bool moe, const std::string& scheme, const std::string& format, weight_format want) {
    source_model src(moe);
    loaded_model s = load_model(src.path);
    std::string out = src.dir / ("q-" + scheme + "-" + format);
    auto r =
        test::run_nibble("quantize " + src.path + " " + out + " --scheme " + scheme + " --format " + format);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_TRUE(file_exists(out + "/tokenizer_config.json"));  // side files are copied
    loaded_model q = load_model(out);
    EXPECT_EQ(q.quant.method, format == "modelopt" ? quant_method_modelopt : quant_method_compressed_tensors);
    if (format == "modelopt") EXPECT_TRUE(file_exists(out + "/hf_quant_config.json"));

    auto group_amax = [&](const layer_weights& l, const linear_weight& w) {
        auto amax = [](const linear_weight& x) {
            auto v = floats_of(x.weight);
            return abs_max(v.data(), int64_t(v.size()));
        };
        if (w.role <= linear_role_attn_v) return std::max({amax(l.q), amax(l.k), amax(l.v)});
        if (w.role == linear_role_mlp_gate || w.role == linear_role_mlp_up)
            return std::max(amax(l.gate), amax(l.up));
        return amax(w);
    };
    int n_quantized = 0;
    for (size_t li = 0; li < s.weights.layers.size(); ++li) {
        const layer_weights &sl = s.weights.layers[li], &ql = q.weights.layers[li];
        std::vector<std::pair<const linear_weight*, const linear_weight*>> mods = {
            {&sl.q, &ql.q}, {&sl.k, &ql.k}, {&sl.v, &ql.v}, {&sl.o, &ql.o}};
        if (moe) {
            mods.push_back({&sl.router, &ql.router});
            for (size_t e = 0; e < sl.expert_gate.size(); ++e) {
                mods.push_back({&sl.expert_gate[e], &ql.expert_gate[e]});
                mods.push_back({&sl.expert_up[e], &ql.expert_up[e]});
                mods.push_back({&sl.expert_down[e], &ql.expert_down[e]});
            }
        } else {
            mods.insert(mods.end(), {{&sl.gate, &ql.gate}, {&sl.up, &ql.up}, {&sl.down, &ql.down}});
        }
        for (auto [sw, qw] : mods) {
            if (qw->role == linear_role_router) {
                EXPECT_EQ(qw->format, weight_format_dense) << "routers stay unquantized";
                continue;
            }
            ASSERT_EQ(qw->format, want) << qw->name;
            ++n_quantized;
            float ga = group_amax(sl, *sw);
            if (qw->role == linear_role_expert_gate || qw->role == linear_role_expert_up) {
                size_t e = size_t(
                    &*sw - (qw->role == linear_role_expert_gate ? &sl.expert_gate[0] : &sl.expert_up[0]));
                auto a = floats_of(sl.expert_gate[e].weight), b = floats_of(sl.expert_up[e].weight);
                ga = std::max(abs_max(a.data(), int64_t(a.size())), abs_max(b.data(), int64_t(b.size())));
            }
            // CT keeps FP8 scales in the model dtype (BF16), ModelOpt in F32.
            dtype sd = format == "modelopt" ? dtype_f32 : dtype_bf16;
            std::vector<float> expect = reference_dequant(*qw, floats_of(sw->weight), ga, sd);
            std::vector<float> got = dequant_loaded(*qw);
            ASSERT_EQ(expect.size(), got.size());
            for (size_t i = 0; i < got.size(); ++i)
                ASSERT_EQ(got[i], expect[i]) << qw->name << " element " << i;
        }
    }
    EXPECT_GT(n_quantized, 0);
    EXPECT_EQ(q.weights.lm_head.format, weight_format_dense);  // lm_head is ignored
    EXPECT_EQ(0, std::memcmp(q.weights.embed.data, s.weights.embed.data, s.weights.embed.n_bytes));
}

}  // namespace

TEST(quantize, ct_nvfp4a16_dense) {
    check_round_trip(false, "nvfp4a16", "compressed-tensors", weight_format_nvfp4);
}
TEST(quantize, modelopt_nvfp4a16_dense) {
    check_round_trip(false, "nvfp4a16", "modelopt", weight_format_nvfp4);
}
TEST(quantize, ct_nvfp4a16_moe) {
    check_round_trip(true, "nvfp4a16", "compressed-tensors", weight_format_nvfp4);
}
TEST(quantize, ct_fp8_dynamic) {
    check_round_trip(false, "fp8-dynamic", "compressed-tensors", weight_format_fp8);
}
TEST(quantize, ct_fp8_block_moe) {
    check_round_trip(true, "fp8-block", "compressed-tensors", weight_format_fp8);
}
TEST(quantize, modelopt_fp8_dynamic) {
    check_round_trip(false, "fp8-dynamic", "modelopt", weight_format_fp8);
}
TEST(quantize, ct_mxfp4a16) {
    check_round_trip(false, "mxfp4a16", "compressed-tensors", weight_format_mxfp4);
}

TEST(quantize, clear_refusals) {
    source_model src(false);
    std::string out = src.dir / "out";
    auto r = test::run_nibble("quantize " + src.path + " " + src.path + " --scheme nvfp4a16");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.out.find("already exists"), std::string::npos) << r.out;
    r = test::run_nibble("quantize " + src.path + " " + out + " --scheme int4");
    EXPECT_NE(r.out.find("unknown scheme"), std::string::npos) << r.out;
    r = test::run_nibble("quantize " + src.path + " " + out + " --scheme mxfp4a16 --format modelopt");
    EXPECT_NE(r.out.find("ModelOpt has no weight-only MXFP4"), std::string::npos) << r.out;
    r = test::run_nibble("quantize " + src.path + " " + out + " --scheme nvfp4");
    EXPECT_NE(r.out.find("--calib"), std::string::npos) << r.out;
    EXPECT_FALSE(file_exists(out));  // nothing is left behind
    // K not a multiple of the block: hidden 40 is not a multiple of 16 for the MLP down_proj... use 24.
    test::temp_dir d;
    json c = tiny_config(false);
    c["intermediate_size"] = 40;
    test::write_file(d / "config.json", c.dump());
    ASSERT_EQ(
        test::run_nibble("synth --config " + (d / "config.json") + " --scheme bf16 " + (d / "m")).exit_code,
        0);
    r = test::run_nibble("quantize " + (d / "m") + " " + (d / "q") + " --scheme nvfp4a16");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.out.find("down_proj\": K = 40 is not a multiple of the NVFP4 block (16)"), std::string::npos)
        << r.out;
    // Already-quantized input.
    ASSERT_EQ(test::run_nibble("quantize " + src.path + " " + out + " --scheme fp8-dynamic").exit_code, 0);
    r = test::run_nibble("quantize " + out + " " + (src.dir / "twice") + " --scheme nvfp4a16");
    EXPECT_NE(r.out.find("already quantized"), std::string::npos) << r.out;
    // Unsupported architecture.
    c["model_type"] = "gpt_neox";
    c["architectures"] = {"GPTNeoXForCausalLM"};
    test::write_file(d / "m/config.json", c.dump());
    r = test::run_nibble("quantize " + (d / "m") + " " + (d / "q2") + " --scheme nvfp4a16");
    EXPECT_NE(r.out.find("unsupported architecture"), std::string::npos) << r.out;
}

// ---- hostile modules: a checkpoint with one linear layer "m" [32, 64] ----

namespace {

struct tensor_bytes {
    std::string name;
    dtype type;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
};

std::string write_module(const test::temp_dir& d, const std::vector<tensor_bytes>& ts) {
    std::vector<safetensors_entry> es;
    for (const auto& t : ts) es.push_back({t.name, t.type, t.shape, 0, 0});
    std::string dir = d / "ck";
    std::filesystem::create_directories(dir);
    safetensors_writer w(dir + "/model.safetensors", es);
    for (const auto& t : ts) w.write(t.bytes.data(), t.bytes.size());
    w.finish();
    return dir;
}

std::vector<uint8_t> f32_bytes(float v) {
    std::vector<uint8_t> b(4);
    std::memcpy(b.data(), &v, 4);
    return b;
}

std::vector<tensor_bytes> ct_nvfp4_module() {
    return {{"m.weight_packed", dtype_u8, {32, 32}, std::vector<uint8_t>(32 * 32, 0x21)},
            {"m.weight_scale", dtype_f8_e4m3, {32, 4}, std::vector<uint8_t>(32 * 4, 0x38)},
            {"m.weight_global_scale", dtype_f32, {1}, f32_bytes(384.0f)}};
}

quant_config ct_config(bool w4a4) {
    json w = {{"num_bits", 4}, {"type", "float"}, {"strategy", "tensor_group"}, {"group_size", 16}};
    json in = w;
    in["dynamic"] = "local";
    return quant_config_parse(
        {{"quant_method", "compressed-tensors"},
         {"format", "nvfp4-pack-quantized"},
         {"config_groups",
          {{"group_0",
            {{"targets", {"Linear"}}, {"weights", w}, {"input_activations", w4a4 ? in : json(nullptr)}}}}}},
        "config.json");
}

std::string map_error(const std::vector<tensor_bytes>& ts, const quant_config& q) {
    test::temp_dir d;
    checkpoint ck(write_module(d, ts));
    try {
        linear_weight_map(ck, {"m", linear_role_mlp_up, 0, -1, 32, 64, false}, q);
    } catch (const error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(load_module, ct_nvfp4_ok) {
    test::temp_dir d;
    checkpoint ck(write_module(d, ct_nvfp4_module()));
    linear_weight w =
        linear_weight_map(ck, {"m", linear_role_mlp_up, 0, -1, 32, 64, false}, ct_config(false));
    EXPECT_EQ(w.format, weight_format_nvfp4);
    EXPECT_EQ(w.global_scale, 384.0f);
    EXPECT_EQ(w.act, act_format_none);
    EXPECT_EQ(w.weight.data, ck.get("m.weight_packed").data);  // a view, not a copy
}

TEST(load_module, hostile_inputs_name_the_tensor) {
    auto ts = ct_nvfp4_module();
    auto q = ct_config(false);
    // Quantized weight without its scales.
    auto missing = ts;
    missing.erase(missing.begin() + 1);
    EXPECT_NE(map_error(missing, q).find("\"m.weight_scale\" not found"), std::string::npos);
    missing = ts;
    missing.pop_back();
    EXPECT_NE(map_error(missing, q).find("\"m.weight_global_scale\" not found"), std::string::npos);
    // NaN and negative block scales.
    auto nan = ts;
    nan[1].bytes[4 * 7 + 2] = 0x7F;
    EXPECT_NE(map_error(nan, q).find("\"m.weight_scale\": block scale at [7, 2] is 0x7F (NaN)"),
              std::string::npos)
        << map_error(nan, q);
    auto neg = ts;
    neg[1].bytes[5] = 0xB8;
    EXPECT_NE(map_error(neg, q).find("negative"), std::string::npos);
    // Wrong shape and dtype.
    auto shape = ts;
    shape[1].shape = {4, 32};
    EXPECT_NE(map_error(shape, q).find("\"m.weight_scale\": expected shape [32, 4], found [4, 32]"),
              std::string::npos)
        << map_error(shape, q);
    auto dt = ts;
    dt[1].type = dtype_u8;  // looks like MXFP4 scales, with the wrong shape for it
    EXPECT_NE(map_error(dt, q).find("m.weight_scale"), std::string::npos);
    // Zero / non-finite global scale.
    auto zero = ts;
    zero[2].bytes = f32_bytes(0.0f);
    EXPECT_NE(map_error(zero, q).find("\"m.weight_global_scale\": scale must be finite and positive"),
              std::string::npos);
    // W4A4 config but no input global scale.
    EXPECT_NE(map_error(ts, ct_config(true)).find("\"m.input_global_scale\" not found"), std::string::npos);
    // Config and tensors disagree.
    EXPECT_NE(map_error(ts, quant_config{})
                  .find("holds nvfp4 weights but the checkpoint (no quantization config) "
                        "expects it unquantized"),
              std::string::npos)
        << map_error(ts, quant_config{});
    std::vector<tensor_bytes> dense = {
        {"m.weight", dtype_bf16, {32, 64}, std::vector<uint8_t>(32 * 64 * 2, 0)}};
    EXPECT_NE(map_error(dense, q).find("holds dense weights but config.json expects nvfp4"),
              std::string::npos)
        << map_error(dense, q);
    // FP8 weight without a scale; FP8 scale of no known shape.
    std::vector<tensor_bytes> fp8 = {
        {"m.weight", dtype_f8_e4m3, {32, 64}, std::vector<uint8_t>(32 * 64, 0x38)}};
    EXPECT_NE(map_error(fp8, quant_config{}).find("FP8 weight without scales"), std::string::npos);
    fp8.push_back({"m.weight_scale", dtype_bf16, {3}, std::vector<uint8_t>(6, 0x3F)});
    EXPECT_NE(map_error(fp8, quant_config{}).find("fits none of"), std::string::npos);
    // Nothing at all.
    EXPECT_NE(map_error({{"other", dtype_f32, {1}, f32_bytes(1)}}, q).find("neither \"m.weight\" nor"),
              std::string::npos);
}

TEST(load_module, scale_dtypes_and_shapes_accepted) {
    // Global scales in F32/BF16/F16, 0-dim / [1] / [1, 1]; FP8 scales [N, 1] in BF16.
    for (auto [t, shape] : std::vector<std::pair<dtype, std::vector<int64_t>>>{
             {dtype_f32, {}}, {dtype_bf16, {1}}, {dtype_f16, {1, 1}}}) {
        auto ts = ct_nvfp4_module();
        std::vector<uint8_t> b(dtype_size(t));
        store_float(t, b.data(), 0, 384.0f);
        ts[2] = {"m.weight_global_scale", t, shape, b};
        test::temp_dir d;
        checkpoint ck(write_module(d, ts));
        EXPECT_EQ(linear_weight_map(ck, {"m", linear_role_mlp_up, 0, -1, 32, 64, false}, ct_config(false))
                      .global_scale,
                  384.0f);
    }
    std::vector<uint8_t> sc(32 * 2);
    for (int i = 0; i < 32; ++i) store_float(dtype_bf16, sc.data(), size_t(i), 0.5f);
    std::vector<tensor_bytes> fp8 = {
        {"m.weight", dtype_f8_e4m3, {32, 64}, std::vector<uint8_t>(32 * 64, 0x38)},
        {"m.weight_scale", dtype_bf16, {32, 1}, sc}};
    test::temp_dir d;
    checkpoint ck(write_module(d, fp8));
    json wa = {{"num_bits", 8}, {"type", "float"}, {"strategy", "channel"}};
    quant_config q =
        quant_config_parse({{"quant_method", "compressed-tensors"},
                            {"format", "float-quantized"},
                            {"config_groups", {{"group_0", {{"targets", {"Linear"}}, {"weights", wa}}}}}},
                           "config.json");
    linear_weight w = linear_weight_map(ck, {"m", linear_role_mlp_up, 0, -1, 32, 64, false}, q);
    EXPECT_EQ(w.fp8_gran, fp8_granularity_channel);
    EXPECT_EQ(w.fp8_scales[31], 0.5f);
}

// ---- inspect on Qwen3-8B-shaped checkpoints (layout only: sparse files, no data) ----

namespace {

json inspect_json(const std::string& scheme) {
    test::temp_dir d;
    std::string cfg = std::string(NIBBLE_SOURCE_DIR) + "/models/configs/qwen3-8b.json";
    auto r = test::run_nibble("synth --config " + cfg + " --scheme " + scheme + " --no-data " + (d / "m"));
    EXPECT_EQ(r.exit_code, 0) << r.out;
    r = test::run_nibble("inspect " + (d / "m") + " --json");
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return json::parse(r.out);
}

}  // namespace

TEST(inspect, qwen3_8b_nvfp4_and_fp8_figures) {
    json n = inspect_json("nvfp4");
    double gb = n["weight_bytes_per_token"].get<double>() / 1e9;
    EXPECT_NEAR(gb, 5.15, 0.01);
    EXPECT_NEAR(n["predicted_decode_bound"][0]["tok_per_s_kv_bf16"].get<double>(), 53.0, 0.5);
    EXPECT_EQ(n["kv_bytes_per_position"]["bf16"].get<int64_t>(), 147456);
    EXPECT_GT(n["quantized_fraction"].get<double>(), 0.75);
    json f = inspect_json("fp8-dynamic");
    EXPECT_NEAR(f["weight_bytes_per_token"].get<double>() / 1e9, 8.19, 0.01);
    EXPECT_GE(f["weight_bytes_per_token"].get<double>() / n["weight_bytes_per_token"].get<double>(), 1.58);
}
