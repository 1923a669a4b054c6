#include "core/config.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace nibble {

namespace {

using json = nlohmann::json;

struct reader {
    const json& j;
    const std::string& source;

    const json* find(const char* key) const {
        auto it = j.find(key);
        return it == j.end() || it->is_null() ? nullptr : &*it;
    }
    int64_t get_int(const char* key, int64_t fallback, bool required = false) const {
        const json* v = find(key);
        if (!v) {
            if (required) fail("{}: required field \"{}\" is missing", source, key);
            return fallback;
        }
        if (!v->is_number_integer())
            fail("{}: field \"{}\" must be an integer, found {}", source, key, v->dump());
        return v->get<int64_t>();
    }
    double get_num(const json& obj, const char* key, double fallback, const char* where) const {
        auto it = obj.find(key);
        if (it == obj.end() || it->is_null()) return fallback;
        if (!it->is_number())
            fail("{}: field \"{}{}\" must be a number, found {}", source, where, key, it->dump());
        return it->get<double>();
    }
    double get_num(const char* key, double fallback) const { return get_num(j, key, fallback, ""); }
    bool get_bool(const char* key, bool fallback) const {
        const json* v = find(key);
        if (!v) return fallback;
        if (!v->is_boolean())
            fail("{}: field \"{}\" must be true or false, found {}", source, key, v->dump());
        return v->get<bool>();
    }
};

model_arch arch_from(const json& j, const std::string& source) {
    std::string mt = j.value("model_type", "");
    std::string a;
    if (auto it = j.find("architectures");
        it != j.end() && it->is_array() && !it->empty() && (*it)[0].is_string())
        a = (*it)[0].get<std::string>();
    if (mt == "qwen3_moe" || a == "Qwen3MoeForCausalLM") return model_arch_qwen3_moe;
    if (mt == "qwen3" || a == "Qwen3ForCausalLM") return model_arch_qwen3;
    if (mt == "qwen2" || a == "Qwen2ForCausalLM") return model_arch_qwen2;
    if (mt == "llama" || a == "LlamaForCausalLM") return model_arch_llama;
    fail(
        "{}: unsupported architecture (model_type \"{}\", architectures [\"{}\"]); supported: llama, qwen2, "
        "qwen3, qwen3_moe",
        source, mt, a);
}

void read_rope(model_config& c, const json& j, const reader& r) {
    // transformers 5 puts everything into rope_parameters; older files use rope_theta + rope_scaling.
    const json* params = r.find("rope_parameters");
    const json* scaling = params ? params : r.find("rope_scaling");
    c.rope_theta = float(r.get_num("rope_theta", 10000.0));
    if (params) c.rope_theta = float(r.get_num(*params, "rope_theta", c.rope_theta, "rope_parameters."));
    if (!scaling) return;
    if (!scaling->is_object())
        fail("{}: rope scaling must be an object, found {}", r.source, scaling->dump());
    std::string type = scaling->value("rope_type", scaling->value("type", "default"));
    const char* where = params ? "rope_parameters." : "rope_scaling.";
    if (type == "default") return;
    if (type != "llama3")
        fail("{}: unsupported {}rope_type \"{}\" (supported: default, llama3)", r.source, where, type);
    c.rope = rope_kind_llama3;
    c.rope_factor = float(r.get_num(*scaling, "factor", 8.0, where));
    c.rope_low_freq_factor = float(r.get_num(*scaling, "low_freq_factor", 1.0, where));
    c.rope_high_freq_factor = float(r.get_num(*scaling, "high_freq_factor", 4.0, where));
    c.rope_original_max_position =
        int64_t(r.get_num(*scaling, "original_max_position_embeddings", 8192.0, where));
}

std::vector<int64_t> int_or_list(const json* v, const std::string& source, const char* key) {
    std::vector<int64_t> out;
    if (!v) return out;
    if (v->is_number_integer()) return {v->get<int64_t>()};
    if (!v->is_array())
        fail("{}: field \"{}\" must be an integer or a list, found {}", source, key, v->dump());
    for (const json& e : *v) {
        if (!e.is_number_integer())
            fail("{}: field \"{}\" must hold integers, found {}", source, key, e.dump());
        out.push_back(e.get<int64_t>());
    }
    return out;
}

}  // namespace

const char* model_arch_name(model_arch a) {
    switch (a) {
        case model_arch_llama:
            return "llama";
        case model_arch_qwen2:
            return "qwen2";
        case model_arch_qwen3:
            return "qwen3";
        case model_arch_qwen3_moe:
            return "qwen3_moe";
    }
    return "?";
}

model_config model_config_parse(const json& j, const std::string& source) {
    if (!j.is_object()) fail("{}: expected a JSON object", source);
    reader r{j, source};
    model_config c;
    c.arch = arch_from(j, source);
    c.model_type = j.value("model_type", std::string(model_arch_name(c.arch)));
    c.vocab_size = r.get_int("vocab_size", 0, true);
    c.hidden_size = r.get_int("hidden_size", 0, true);
    c.n_layers = r.get_int("num_hidden_layers", 0, true);
    c.n_heads = r.get_int("num_attention_heads", 0, true);
    c.n_kv_heads = r.get_int("num_key_value_heads", c.n_heads);
    c.intermediate_size = r.get_int("intermediate_size", 0, c.arch != model_arch_qwen3_moe);
    c.max_position_embeddings = r.get_int("max_position_embeddings", 4096);
    c.rms_norm_eps = float(r.get_num("rms_norm_eps", 1e-6));
    c.tie_word_embeddings = r.get_bool("tie_word_embeddings", false);
    c.attention_bias = r.get_bool("attention_bias", c.arch == model_arch_qwen2);
    c.qk_norm = c.arch == model_arch_qwen3 || c.arch == model_arch_qwen3_moe;
    for (int64_t v : {c.vocab_size, c.hidden_size, c.n_layers, c.n_heads, c.n_kv_heads})
        if (v <= 0)
            fail("{}: sizes must be positive (vocab_size, hidden_size, num_hidden_layers, heads)", source);
    if (c.n_heads % c.n_kv_heads)
        fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", source, c.n_heads,
             c.n_kv_heads);
    c.head_dim = r.get_int("head_dim", 0);
    if (c.head_dim == 0) {
        if (c.hidden_size % c.n_heads)
            fail("{}: hidden_size {} is not a multiple of num_attention_heads {} and head_dim is not given",
                 source, c.hidden_size, c.n_heads);
        c.head_dim = c.hidden_size / c.n_heads;
    }
    if (c.head_dim % 2) fail("{}: head_dim {} must be even for RoPE", source, c.head_dim);
    if (r.get_bool("use_sliding_window", false))
        fail("{}: use_sliding_window = true is not supported", source);
    if (std::string act = j.value("hidden_act", "silu"); act != "silu")
        fail("{}: hidden_act \"{}\" is not supported (expected silu)", source, act);

    std::string dt;
    if (const json* v = r.find("dtype"))
        dt = v->is_string() ? v->get<std::string>() : "";
    else if (const json* v2 = r.find("torch_dtype"))
        dt = v2->is_string() ? v2->get<std::string>() : "";
    if (!dt.empty()) {
        auto t = dtype_from_torch_name(dt);
        if (!t) fail("{}: unknown dtype \"{}\"", source, dt);
        c.weight_dtype = *t;
    }
    read_rope(c, j, r);

    if (c.arch == model_arch_qwen3_moe) {
        c.n_experts = r.get_int("num_experts", 0);
        if (c.n_experts == 0) c.n_experts = r.get_int("num_local_experts", 0);
        if (c.n_experts <= 0) fail("{}: a qwen3_moe config needs num_experts (or num_local_experts)", source);
        c.n_experts_per_token = r.get_int("num_experts_per_tok", 0, true);
        c.moe_intermediate_size = r.get_int("moe_intermediate_size", 0, true);
        if (c.n_experts_per_token <= 0 || c.n_experts_per_token > c.n_experts)
            fail("{}: num_experts_per_tok {} must be in [1, {}]", source, c.n_experts_per_token, c.n_experts);
        c.norm_topk_prob = r.get_bool("norm_topk_prob", false);
        c.decoder_sparse_step = r.get_int("decoder_sparse_step", 1);
        if (c.decoder_sparse_step <= 0) fail("{}: decoder_sparse_step must be positive", source);
        c.mlp_only_layers = int_or_list(r.find("mlp_only_layers"), source, "mlp_only_layers");
        bool any_dense = c.decoder_sparse_step > 1 || !c.mlp_only_layers.empty();
        if (any_dense && c.intermediate_size <= 0)
            fail("{}: dense layers (mlp_only_layers / decoder_sparse_step) need intermediate_size", source);
    }
    c.eos_token_ids = int_or_list(r.find("eos_token_id"), source, "eos_token_id");
    c.bos_token_id = r.get_int("bos_token_id", -1);
    return c;
}

model_config model_config_load(const std::string& dir) {
    std::string path = dir + "/config.json";
    std::ifstream f(path);
    if (!f) fail("{}: cannot open (is {} a Hugging Face model folder?)", path, dir);
    std::stringstream ss;
    ss << f.rdbuf();
    json j = json::parse(ss.str(), nullptr, false);
    if (j.is_discarded()) fail("{}: not valid JSON", path);
    return model_config_parse(j, path);
}

bool model_config_layer_is_moe(const model_config& c, int64_t layer) {
    if (c.n_experts == 0) return false;
    if (std::find(c.mlp_only_layers.begin(), c.mlp_only_layers.end(), layer) != c.mlp_only_layers.end())
        return false;
    return (layer + 1) % c.decoder_sparse_step == 0;
}

}  // namespace nibble
