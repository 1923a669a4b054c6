// Scheme detection from quantization_config / hf_quant_config.json (formats.md 8.5) and ignore lists.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "loader/quant_config.h"
#include "test_util.h"

using namespace nibble;
using json = nlohmann::json;

namespace {

// A CT NVFP4 W4A4 config as llm-compressor writes it (older files: no scale_dtype, "minmax" observer).
json ct_nvfp4(bool w4a4) {
    json w = {{"num_bits", 4},        {"type", "float"},     {"strategy", "tensor_group"},
              {"group_size", 16},     {"symmetric", true},   {"dynamic", false},
              {"observer", "minmax"}, {"actorder", nullptr}, {"block_structure", nullptr}};
    json in = w;
    in["dynamic"] = "local";
    return {{"quant_method", "compressed-tensors"},
            {"format", "nvfp4-pack-quantized"},
            {"quantization_status", "compressed"},
            {"ignore", {"lm_head", "re:.*mlp.gate$"}},
            {"config_groups",
             {{"group_0",
               {{"targets", {"Linear"}},
                {"weights", w},
                {"input_activations", w4a4 ? in : json(nullptr)},
                {"output_activations", nullptr}}}}}};
}

std::string error_of(const json& q) {
    try {
        quant_config_parse(q, "config.json");
    } catch (const error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(quant_config, ct_nvfp4_w4a4_and_weight_only) {
    quant_config q = quant_config_parse(ct_nvfp4(true), "config.json");
    EXPECT_EQ(q.method, quant_method_compressed_tensors);
    auto s = q.scheme_for("model.layers.0.self_attn.q_proj");
    ASSERT_TRUE(s);
    EXPECT_EQ(s->weights, weight_format_nvfp4);
    EXPECT_EQ(s->acts, act_format_nvfp4);
    EXPECT_EQ(s->convention, nvfp4_convention_ct);
    EXPECT_FALSE(q.scheme_for("lm_head"));
    EXPECT_FALSE(q.scheme_for("model.layers.3.mlp.gate"));      // the MoE router
    EXPECT_TRUE(q.scheme_for("model.layers.3.mlp.gate_proj"));  // "$" anchors the regex end
    EXPECT_TRUE(q.scheme_for("model.layers.3.mlp.experts.7.gate_proj"));
    q = quant_config_parse(ct_nvfp4(false), "config.json");
    EXPECT_EQ(q.scheme_for("model.layers.0.mlp.down_proj")->acts, act_format_none);
    // strategy "group" with group 16 is NVFP4 too (formats.md 2.1).
    json g = ct_nvfp4(false);
    g["config_groups"]["group_0"]["weights"]["strategy"] = "group";
    EXPECT_EQ(quant_config_parse(g, "c").scheme_for("x")->weights, weight_format_nvfp4);
}

TEST(quant_config, ct_regex_is_anchored_at_start_only) {
    EXPECT_TRUE(regex_match_start(".*mlp.gate$", "model.layers.0.mlp.gate"));
    EXPECT_FALSE(regex_match_start("mlp.gate", "model.layers.0.mlp.gate"));  // re.match: must match at 0
    EXPECT_TRUE(regex_match_start("model\\.layers\\.0", "model.layers.0.mlp.gate"));  // no end anchor
    json q = ct_nvfp4(false);
    q["ignore"] = {"re:visual.*", "model.layers.1.self_attn.o_proj"};
    quant_config c = quant_config_parse(q, "c");
    EXPECT_TRUE(c.is_ignored("visual.blocks.0.attn"));
    EXPECT_TRUE(c.is_ignored("model.layers.1.self_attn.o_proj"));
    EXPECT_FALSE(c.is_ignored("model.layers.11.self_attn.o_proj"));
}

TEST(quant_config, ct_fp8_strategies) {
    auto fp8 = [](const char* strategy, json act) {
        json w = {{"num_bits", 8},
                  {"type", "float"},
                  {"strategy", strategy},
                  {"symmetric", true},
                  {"dynamic", false}};
        if (std::string(strategy) == "block") w["block_structure"] = {128, 128};
        return json{{"quant_method", "compressed-tensors"},
                    {"format", "float-quantized"},
                    {"ignore", {"lm_head"}},
                    {"config_groups",
                     {{"group_0", {{"targets", {"Linear"}}, {"weights", w}, {"input_activations", act}}}}}};
    };
    json token = {{"num_bits", 8}, {"type", "float"}, {"strategy", "token"}, {"dynamic", true}};
    json group = {
        {"num_bits", 8}, {"type", "float"}, {"strategy", "group"}, {"group_size", 128}, {"dynamic", true}};
    json stat = {{"num_bits", 8}, {"type", "float"}, {"strategy", "tensor"}, {"dynamic", false}};
    auto s = quant_config_parse(fp8("channel", token), "c").scheme_for("m");
    EXPECT_EQ(s->fp8_gran, fp8_granularity_channel);
    EXPECT_EQ(s->acts, act_format_fp8_token);
    s = quant_config_parse(fp8("block", group), "c").scheme_for("m");
    EXPECT_EQ(s->fp8_gran, fp8_granularity_block);
    EXPECT_EQ(s->acts, act_format_fp8_group);
    s = quant_config_parse(fp8("tensor", stat), "c").scheme_for("m");
    EXPECT_EQ(s->fp8_gran, fp8_granularity_tensor);
    EXPECT_EQ(s->acts, act_format_fp8_static);
    json bad = fp8("block", group);
    bad["config_groups"]["group_0"]["weights"]["block_structure"] = {64, 64};
    EXPECT_NE(error_of(bad).find("block_structure [128, 128]"), std::string::npos);
}

TEST(quant_config, modelopt_config_json_and_hf_quant_config) {
    json q = {{"quant_method", "modelopt"},
              {"quant_algo", "NVFP4"},
              {"ignore", {"lm_head", "model.layers.*.mlp.gate"}}};
    quant_config c = quant_config_parse(q, "config.json");
    auto s = c.scheme_for("model.layers.0.mlp.experts.3.up_proj");
    ASSERT_TRUE(s);
    EXPECT_EQ(s->convention, nvfp4_convention_modelopt);
    EXPECT_EQ(s->acts, act_format_nvfp4);
    EXPECT_FALSE(c.scheme_for("model.layers.12.mlp.gate"));
    EXPECT_FALSE(c.scheme_for("lm_head"));

    test::temp_dir d;
    test::write_file(d / "hf_quant_config.json",
                     R"({"producer": {"name": "modelopt", "version": "0.29"},
                         "quantization": {"quant_algo": "W4A16_NVFP4", "kv_cache_quant_algo": null,
                                          "group_size": 16, "exclude_modules": ["lm_head", "*self_attn*"]}})");
    c = quant_config_load(d.path, json::object());
    EXPECT_EQ(c.method, quant_method_modelopt);
    EXPECT_FALSE(c.scheme_for("model.layers.0.self_attn.q_proj"));
    EXPECT_EQ(c.scheme_for("model.layers.0.mlp.up_proj")->acts, act_format_none);
    // No quantization config at all: unquantized.
    test::temp_dir e;
    EXPECT_EQ(quant_config_load(e.path, json::object()).method, quant_method_none);

    json mixed = {{"quant_method", "modelopt"},
                  {"quant_algo", "MIXED_PRECISION"},
                  {"quantized_layers",
                   {{"model.layers.0.self_attn.q_proj", {{"quant_algo", "FP8"}}},
                    {"model.layers.0.mlp.up_proj", {{"quant_algo", "NVFP4"}, {"group_size", 16}}}}}};
    c = quant_config_parse(mixed, "c");
    EXPECT_EQ(c.scheme_for("model.layers.0.self_attn.q_proj")->weights, weight_format_fp8);
    EXPECT_EQ(c.scheme_for("model.layers.0.mlp.up_proj")->weights, weight_format_nvfp4);
    EXPECT_FALSE(c.scheme_for("model.layers.0.mlp.down_proj"));
}

TEST(quant_config, fp8_block_and_gpt_oss_mxfp4) {
    json q = {{"quant_method", "fp8"},
              {"fmt", "e4m3"},
              {"activation_scheme", "dynamic"},
              {"weight_block_size", {128, 128}}};
    auto s = quant_config_parse(q, "c").scheme_for("model.layers.0.mlp.up_proj");
    EXPECT_EQ(s->weights, weight_format_fp8);
    EXPECT_EQ(s->fp8_gran, fp8_granularity_block);
    EXPECT_EQ(s->acts, act_format_fp8_group);
    json m = {{"quant_method", "mxfp4"},
              {"modules_to_not_convert",
               {"model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"}}};
    quant_config c = quant_config_parse(m, "c");
    EXPECT_FALSE(c.scheme_for("model.layers.3.self_attn.q_proj"));
    EXPECT_FALSE(c.scheme_for("model.layers.3.mlp.router"));
    EXPECT_FALSE(c.scheme_for("lm_head"));
    EXPECT_EQ(c.scheme_for("model.layers.3.mlp.experts")->weights, weight_format_mxfp4);
}

TEST(quant_config, unknown_schemes_are_refused_by_name) {
    EXPECT_NE(error_of({{"quant_method", "gptq"}}).find("unknown quant_method \"gptq\""), std::string::npos);
    json intq = ct_nvfp4(false);
    intq["config_groups"]["group_0"]["weights"]["type"] = "int";
    EXPECT_NE(error_of(intq).find("type \"int\""), std::string::npos);
    json nogroups = {{"quant_method", "compressed-tensors"}, {"format", "nvfp4-pack-quantized"}};
    EXPECT_NE(error_of(nogroups).find("config_groups"), std::string::npos);
    EXPECT_NE(error_of({{"quant_method", "modelopt"}, {"quant_algo", "INT4_AWQ"}}).find("\"INT4_AWQ\""),
              std::string::npos);
    json mismatch = ct_nvfp4(false);
    mismatch["format"] = "float-quantized";
    EXPECT_NE(error_of(mismatch).find("does not match"), std::string::npos);
}
