#include "tokenizer/generation_config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace nibble {

namespace {

template <class T>
void read_number(const nlohmann::json& j, const char* key, std::optional<T>& dst) {
    if (!j.contains(key) || j[key].is_null()) return;
    const auto& v = j[key];
    if (!v.is_number()) fail("generation_config.json: {}: expected a number, got {}", key, v.dump());
    if constexpr (std::is_integral_v<T>) {
        if (!v.is_number_integer())
            fail("generation_config.json: {}: expected an integer, got {}", key, v.dump());
    }
    dst = v.get<T>();
}

}  // namespace

generation_config generation_config_parse(const std::string& json_text) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(json_text);
    } catch (const nlohmann::json::exception& e) {
        fail("generation_config.json: not valid JSON: {}", e.what());
    }
    if (!j.is_object()) fail("generation_config.json: expected a JSON object");
    generation_config g;
    if (j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
        const auto& e = j["eos_token_id"];
        if (e.is_number_integer()) {
            g.eos_token_ids.push_back(e.get<int32_t>());
        } else if (e.is_array()) {
            for (const auto& x : e) {
                if (!x.is_number_integer())
                    fail("generation_config.json: eos_token_id: list entry {} is not an integer", x.dump());
                g.eos_token_ids.push_back(x.get<int32_t>());
            }
        } else {
            fail("generation_config.json: eos_token_id: expected an integer or a list, got {}", e.dump());
        }
    }
    read_number(j, "bos_token_id", g.bos_token_id);
    read_number(j, "pad_token_id", g.pad_token_id);
    if (j.contains("do_sample") && j["do_sample"].is_boolean()) g.do_sample = j["do_sample"].get<bool>();
    read_number(j, "temperature", g.temperature);
    read_number(j, "top_p", g.top_p);
    read_number(j, "top_k", g.top_k);
    read_number(j, "min_p", g.min_p);
    read_number(j, "repetition_penalty", g.repetition_penalty);
    read_number(j, "presence_penalty", g.presence_penalty);
    read_number(j, "frequency_penalty", g.frequency_penalty);
    read_number(j, "max_new_tokens", g.max_new_tokens);
    read_number(j, "max_length", g.max_length);
    return g;
}

generation_config generation_config_load(const std::string& dir) {
    std::string path = dir + "/generation_config.json";
    std::ifstream f(path, std::ios::binary);
    if (!f) return {};
    std::ostringstream ss;
    ss << f.rdbuf();
    try {
        return generation_config_parse(ss.str());
    } catch (const error& e) {
        fail("{}: {}", path, e.what());
    }
}

}  // namespace nibble
