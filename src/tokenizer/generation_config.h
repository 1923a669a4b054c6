// generation_config.json: the model's stop ids and default sampling parameters. Fields absent from
// the file stay unset (std::nullopt) so callers can tell "model default" from "not given" and
// layer request parameters on top, as vLLM does with --generation-config auto.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace nibble {

struct generation_config {
    std::vector<int32_t> eos_token_ids;  // [n] from "eos_token_id" (an int or a list); empty if absent
    std::optional<int32_t> bos_token_id;
    std::optional<int32_t> pad_token_id;
    std::optional<bool> do_sample;
    std::optional<double> temperature;
    std::optional<double> top_p;
    std::optional<int32_t> top_k;
    std::optional<double> min_p;
    std::optional<double> repetition_penalty;
    std::optional<double> presence_penalty;
    std::optional<double> frequency_penalty;
    std::optional<int64_t> max_new_tokens;
    std::optional<int64_t> max_length;
};

// Parses the file's text; errors name the field ("generation_config.json: temperature: ...").
generation_config generation_config_parse(const std::string& json_text);

// Reads DIR/generation_config.json; a missing file gives an empty config (all unset).
generation_config generation_config_load(const std::string& dir);

}  // namespace nibble
