#include "loader/quant_config.h"

#include <fnmatch.h>

#include <regex>

#include "core/error.h"
#include "loader/checkpoint.h"

namespace nibble {

namespace {

using json = nlohmann::json;

std::string json_str(const json& j, const char* key, const std::string& fallback = "") {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

std::vector<std::string> string_list(const json& j, const char* key, const std::string& source) {
    std::vector<std::string> out;
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return out;
    if (!it->is_array()) fail("{}: quantization field \"{}\" must be a list of strings", source, key);
    for (const json& e : *it) {
        if (!e.is_string())
            fail("{}: quantization field \"{}\" must hold strings, found {}", source, key, e.dump());
        out.push_back(e.get<std::string>());
    }
    return out;
}

// CT quantization args -> weight format.
quant_scheme ct_weights(const json& w, const std::string& where) {
    if (!w.is_object()) fail("{}: \"weights\" must be an object", where);
    int bits = w.value("num_bits", 0);
    std::string type = json_str(w, "type");
    std::string strategy = json_str(w, "strategy");
    int group =
        w.contains("group_size") && w["group_size"].is_number_integer() ? w["group_size"].get<int>() : 0;
    quant_scheme s;
    if (type != "float")
        fail("{}: weights of type \"{}\" with {} bits are not supported (only float: NVFP4, MXFP4, FP8)",
             where, type, bits);
    if (bits == 4 && group == 16) {
        s.weights = weight_format_nvfp4;  // whatever the strategy string (formats.md 2.1)
    } else if (bits == 4 && group == 32) {
        s.weights = weight_format_mxfp4;
    } else if (bits == 8) {
        s.weights = weight_format_fp8;
        if (strategy == "tensor")
            s.fp8_gran = fp8_granularity_tensor;
        else if (strategy == "channel")
            s.fp8_gran = fp8_granularity_channel;
        else if (strategy == "block") {
            s.fp8_gran = fp8_granularity_block;
            auto bs = w.find("block_structure");
            if (bs == w.end() || !bs->is_array() || bs->size() != 2 || (*bs)[0] != 128 || (*bs)[1] != 128)
                fail("{}: FP8 block strategy needs block_structure [128, 128], found {}", where,
                     bs == w.end() ? "nothing" : bs->dump());
        } else
            fail("{}: FP8 weight strategy \"{}\" is not supported (tensor, channel, block)", where, strategy);
    } else {
        fail("{}: float weights with num_bits {} and group_size {} are not supported", where, bits, group);
    }
    return s;
}

act_format ct_acts(const json* a, const quant_scheme& s, const std::string& where) {
    if (!a || a->is_null()) return act_format_none;
    if (!a->is_object()) fail("{}: \"input_activations\" must be an object or null", where);
    int bits = a->value("num_bits", 0);
    std::string type = json_str(*a, "type");
    std::string strategy = json_str(*a, "strategy");
    const json& dyn = (*a)["dynamic"];
    if (bits == 4 && type == "float") {
        if (s.weights != weight_format_nvfp4) fail("{}: FP4 activations need NVFP4 weights", where);
        if (!(dyn.is_string() && dyn.get<std::string>() == "local"))
            fail("{}: NVFP4 activations must be dynamic \"local\" (static global scale), found {}", where,
                 dyn.dump());
        return act_format_nvfp4;
    }
    if (bits == 8 && type == "float") {
        bool dynamic = dyn.is_boolean() && dyn.get<bool>();
        if (dynamic && strategy == "token") return act_format_fp8_token;
        if (dynamic && strategy == "group") return act_format_fp8_group;
        if (!dynamic && strategy == "tensor") return act_format_fp8_static;
        fail("{}: FP8 activation strategy \"{}\" (dynamic {}) is not supported", where, strategy, dyn.dump());
    }
    fail("{}: input activations of type \"{}\" with {} bits are not supported", where, type, bits);
}

quant_scheme modelopt_algo(const std::string& algo, const std::string& where) {
    quant_scheme s;
    s.convention = nvfp4_convention_modelopt;
    if (algo == "NVFP4") {
        s.weights = weight_format_nvfp4;
        s.acts = act_format_nvfp4;
    } else if (algo == "W4A16_NVFP4") {
        s.weights = weight_format_nvfp4;
    } else if (algo == "FP8") {
        s.weights = weight_format_fp8;
        s.fp8_gran = fp8_granularity_tensor;
        s.acts = act_format_fp8_static;
    } else if (algo == "FP8_PER_CHANNEL_PER_TOKEN") {
        s.weights = weight_format_fp8;
        s.fp8_gran = fp8_granularity_channel;
        s.acts = act_format_fp8_token;
    } else if (algo == "FP8_PB_WO") {
        s.weights = weight_format_fp8;
        s.fp8_gran = fp8_granularity_block;
    } else {
        fail(
            "{}: ModelOpt quant_algo \"{}\" is not supported (NVFP4, W4A16_NVFP4, FP8, "
            "FP8_PER_CHANNEL_PER_TOKEN, "
            "FP8_PB_WO, MIXED_PRECISION)",
            where, algo);
    }
    return s;
}

quant_group every_linear(const char* name, const quant_scheme& s) {
    quant_group g;
    g.name = name;
    g.targets = {"Linear"};
    g.scheme = s;
    return g;
}

bool fnmatch_module(const std::string& pattern, const std::string& name) {
    if (fnmatch(pattern.c_str(), name.c_str(), 0) == 0) return true;
    // A pattern naming a parent module also excludes its children ("model.layers.*.self_attn").
    for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', dot + 1))
        if (fnmatch(pattern.c_str(), name.substr(0, dot).c_str(), 0) == 0) return true;
    return false;
}

}  // namespace

bool regex_match_start(const std::string& pattern, const std::string& name) {
    try {
        std::regex re(pattern, std::regex::ECMAScript);
        return std::regex_search(name, re, std::regex_constants::match_continuous);
    } catch (const std::regex_error& e) {
        fail("ignore pattern \"re:{}\" is not a valid regex: {}", pattern, e.what());
    }
}

bool quant_config::is_ignored(const std::string& module) const {
    for (const std::string& p : ignore) {
        switch (ignore_match) {
            case ignore_style_ct:
                if (p.starts_with("re:") ? regex_match_start(p.substr(3), module) : p == module) return true;
                break;
            case ignore_style_fnmatch:
                if (fnmatch_module(p, module)) return true;
                break;
            case ignore_style_substring:
                if (p.find_first_of("*?[") != std::string::npos ? fnmatch_module(p, module)
                                                                : module.find(p) != std::string::npos)
                    return true;
                break;
        }
    }
    return false;
}

std::optional<quant_scheme> quant_config::scheme_for(const std::string& module) const {
    if (method == quant_method_none || is_ignored(module)) return std::nullopt;
    if (!per_layer.empty()) {
        for (const auto& [name, s] : per_layer)
            if (name == module) return s;
        return std::nullopt;
    }
    for (const quant_group& g : groups) {
        for (const std::string& t : g.targets) {
            bool hit = t == "Linear" || t == module ||
                       (t.starts_with("re:") && regex_match_start(t.substr(3), module));
            if (hit) return g.scheme;
        }
    }
    return std::nullopt;
}

std::string quant_config::describe() const {
    switch (method) {
        case quant_method_none:
            return "unquantized";
        case quant_method_compressed_tensors: {
            std::string d = "compressed-tensors " + format;
            if (!groups.empty()) {
                const quant_scheme& s = groups[0].scheme;
                d += std::string(" (") + weight_format_name(s.weights) + " weights, " +
                     act_format_name(s.acts) + " activations)";
            }
            return d;
        }
        case quant_method_modelopt:
            return "modelopt " + format;
        case quant_method_fp8:
            return "fp8 (block 128x128, dynamic activations)";
        case quant_method_mxfp4:
            return "mxfp4 (gpt-oss)";
    }
    return "?";
}

quant_config quant_config_parse(const json& q, const std::string& source, bool hf_quant) {
    if (!q.is_object()) fail("{}: quantization config must be an object", source);
    quant_config c;
    c.source = source;
    std::string method = hf_quant ? "modelopt" : json_str(q, "quant_method");
    if (method == "compressed-tensors") {
        c.method = quant_method_compressed_tensors;
        c.format = json_str(q, "format");
        c.ignore = string_list(q, "ignore", source);
        c.ignore_match = ignore_style_ct;
        auto groups = q.find("config_groups");
        if (groups == q.end() || !groups->is_object() || groups->empty())
            fail("{}: compressed-tensors config has no config_groups", source);
        for (auto it = groups->begin(); it != groups->end(); ++it) {
            std::string where = source + ": config_groups." + it.key();
            quant_group g;
            g.name = it.key();
            g.targets = string_list(*it, "targets", where);
            if (g.targets.empty()) fail("{}: \"targets\" is empty", where);
            auto w = it->find("weights");
            if (w == it->end() || w->is_null()) fail("{}: \"weights\" is missing", where);
            g.scheme = ct_weights(*w, where + ".weights");
            auto a = it->find("input_activations");
            g.scheme.acts = ct_acts(a == it->end() ? nullptr : &*a, g.scheme, where + ".input_activations");
            std::string fmt = json_str(*it, "format", c.format);
            bool ok = (g.scheme.weights == weight_format_nvfp4 && fmt == "nvfp4-pack-quantized") ||
                      (g.scheme.weights == weight_format_mxfp4 && fmt == "mxfp4-pack-quantized") ||
                      (g.scheme.weights == weight_format_fp8 && fmt == "float-quantized");
            if (!ok && fmt != "mixed-precision")
                fail("{}: format \"{}\" does not match {} weights", where, fmt,
                     weight_format_name(g.scheme.weights));
            c.groups.push_back(std::move(g));
        }
        if (auto kv = q.find("kv_cache_scheme"); kv != q.end() && kv->is_object()) c.kv_cache = "fp8";
    } else if (method == "modelopt") {
        c.method = quant_method_modelopt;
        c.ignore_match = ignore_style_fnmatch;
        const json& body = hf_quant ? q.at("quantization") : q;
        c.format = json_str(body, "quant_algo");
        c.ignore = string_list(body, hf_quant ? "exclude_modules" : "ignore", source);
        if (c.ignore.empty() && !hf_quant) c.ignore = string_list(body, "exclude_modules", source);
        if (json_str(body, "kv_cache_quant_algo") == "FP8" || body.contains("kv_cache_scheme"))
            c.kv_cache = "fp8";
        if (c.format == "MIXED_PRECISION") {
            auto layers = body.find("quantized_layers");
            if (layers == body.end() || !layers->is_object())
                fail("{}: MIXED_PRECISION needs a \"quantized_layers\" map", source);
            for (auto it = layers->begin(); it != layers->end(); ++it)
                c.per_layer.push_back({it.key(), modelopt_algo(json_str(*it, "quant_algo"),
                                                               source + ": quantized_layers." + it.key())});
        } else {
            c.groups.push_back(every_linear("modelopt", modelopt_algo(c.format, source)));
        }
    } else if (method == "fp8" || method == "mxfp4") {
        // HF-integration formats: one scheme for every linear but modules_to_not_convert.
        c.method = method == "fp8" ? quant_method_fp8 : quant_method_mxfp4;
        c.format = method;
        c.ignore = string_list(q, "modules_to_not_convert", source);
        c.ignore_match = ignore_style_substring;
        if (method == "mxfp4") {
            quant_scheme mx;
            mx.weights = weight_format_mxfp4;
            c.groups.push_back(every_linear("mxfp4", mx));
            return c;
        }
        quant_group g = every_linear("fp8", {});
        g.scheme.weights = weight_format_fp8;
        auto bs = q.find("weight_block_size");
        if (bs != q.end() && !bs->is_null()) {
            if (!bs->is_array() || bs->size() != 2 || (*bs)[0] != 128 || (*bs)[1] != 128)
                fail("{}: weight_block_size must be [128, 128], found {}", source, bs->dump());
            g.scheme.fp8_gran = fp8_granularity_block;
        } else {
            g.scheme.fp8_gran = fp8_granularity_tensor;
        }
        std::string act = json_str(q, "activation_scheme", "dynamic");
        if (act == "dynamic")
            g.scheme.acts =
                g.scheme.fp8_gran == fp8_granularity_block ? act_format_fp8_group : act_format_fp8_token;
        else if (act == "static")
            g.scheme.acts = act_format_fp8_static;
        else
            fail("{}: activation_scheme \"{}\" is not supported (dynamic, static)", source, act);
        c.groups.push_back(g);
    } else {
        fail("{}: unknown quant_method \"{}\" (supported: compressed-tensors, modelopt, fp8, mxfp4)", source,
             method);
    }
    return c;
}

quant_config quant_config_load(const std::string& dir, const json& config) {
    auto it = config.find("quantization_config");
    if (it != config.end() && !it->is_null()) return quant_config_parse(*it, dir + "/config.json");
    std::string hf = dir + "/hf_quant_config.json";
    if (file_exists(hf)) {
        json j = json::parse(read_text_file(hf), nullptr, false);
        if (j.is_discarded() || !j.is_object()) fail("{}: not a valid JSON object", hf);
        if (!j.contains("quantization") || !j["quantization"].is_object())
            fail("{}: missing the \"quantization\" object", hf);
        return quant_config_parse(j, hf, true);
    }
    return {};
}

}  // namespace nibble
