// Quantization scheme detection (formats.md 8.5): reads config.json's quantization_config (or
// hf_quant_config.json for ModelOpt) and says, per module name, what the config expects. The weight
// loader then confirms each module against the tensors actually present.
//
// Supported: compressed-tensors nvfp4-pack-quantized (W4A4 and weight-only), mxfp4-pack-quantized,
// float-quantized FP8 (tensor, channel, block); ModelOpt NVFP4, W4A16_NVFP4, FP8,
// FP8_PER_CHANNEL_PER_TOKEN, FP8_PB_WO, MIXED_PRECISION of those; quant_method "fp8" with
// weight_block_size (DeepSeek-V3 / Qwen3-FP8); gpt-oss "mxfp4". Anything else fails, naming the field.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/weights.h"

namespace nibble {

enum quant_method : uint8_t {
    quant_method_none,
    quant_method_compressed_tensors,
    quant_method_modelopt,
    quant_method_fp8,    // quant_method "fp8" (block-scaled, weight_scale_inv)
    quant_method_mxfp4,  // gpt-oss
};

// What a module is expected to hold.
struct quant_scheme {
    weight_format weights = weight_format_dense;
    act_format acts = act_format_none;
    fp8_granularity fp8_gran = fp8_granularity_tensor;  // fp8 weights
    nvfp4_convention convention = nvfp4_convention_ct;
};

// How ignore-list entries are matched.
enum ignore_style : uint8_t {
    ignore_style_ct,         // "re:" prefix = Python re.match (anchored at start); otherwise exact name
    ignore_style_fnmatch,    // ModelOpt exclude_modules: fnmatch wildcards, also matching parent modules
    ignore_style_substring,  // HF modules_to_not_convert: wildcard patterns via fnmatch, else substring
};

struct quant_group {
    std::vector<std::string> targets;  // CT: "Linear", exact names or "re:" patterns
    quant_scheme scheme;
    std::string name;  // "group_0", for messages
};

struct quant_config {
    quant_method method = quant_method_none;
    std::string format;  // CT format / ModelOpt quant_algo / "fp8" / "mxfp4"
    std::vector<quant_group> groups;
    std::vector<std::string> ignore;
    ignore_style ignore_match = ignore_style_ct;
    std::vector<std::pair<std::string, quant_scheme>> per_layer;  // ModelOpt MIXED_PRECISION
    std::string kv_cache;                                         // "" or "fp8"
    std::string source;                                           // the file the config came from

    bool is_ignored(const std::string& module) const;
    // The scheme the config expects for a linear module; nullopt when it stays unquantized.
    std::optional<quant_scheme> scheme_for(const std::string& module) const;
    // A one-line summary ("compressed-tensors nvfp4-pack-quantized W4A4").
    std::string describe() const;
};

// `config` is the parsed config.json of `dir`. No quantization_config and no hf_quant_config.json
// gives quant_method_none.
quant_config quant_config_load(const std::string& dir, const nlohmann::json& config);
// Parses a quantization_config object (or the "quantization" section of hf_quant_config.json when
// `hf_quant` is true). `source` names the file in messages.
quant_config quant_config_parse(const nlohmann::json& q, const std::string& source, bool hf_quant = false);
// Python re.match semantics (anchored at the start, not the end).
bool regex_match_start(const std::string& pattern, const std::string& name);

}  // namespace nibble
