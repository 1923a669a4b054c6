// Per-request sampling parameters with vLLM's fields, defaults and validation ranges
// (vllm/sampling_params.py), plus the layering of generation_config.json under the request.
//
// Fields that the model's generation_config.json may supply are optional: unset means "not given
// by the request". sampling_params_resolve() fills them (request > generation_config > vLLM's
// neutral default); the sampler also reads unset fields as the neutral default.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "tokenizer/generation_config.h"

namespace nibble {

// Neutral defaults (vLLM's, used when neither the request nor generation_config sets a field).
inline constexpr double sampling_default_temperature = 1.0;
inline constexpr double sampling_default_top_p = 1.0;
inline constexpr int32_t sampling_default_top_k = 0;  // off
inline constexpr double sampling_default_min_p = 0.0;
inline constexpr double sampling_default_repetition_penalty = 1.0;
// Below this temperature sampling is greedy; temperatures in (0, 0.01) are raised to 0.01 as vLLM
// does (_SAMPLING_EPS, _MAX_TEMP) to keep exp() finite.
inline constexpr double sampling_greedy_eps = 1e-5;
inline constexpr double sampling_min_temperature = 1e-2;

struct sampling_params {
    std::optional<double> temperature;                  // >= 0; 0 = greedy (argmax, lowest id on ties)
    std::optional<double> top_p;                        // (0, 1]; 1 = off
    std::optional<int32_t> top_k;                       // 0 or -1 = off; else >= 1
    std::optional<double> min_p;                        // [0, 1]; 0 = off
    std::optional<double> repetition_penalty;           // > 0; 1 = off; prompt AND generated tokens (HF/vLLM)
    double presence_penalty = 0.0;                      // [-2, 2]; generated tokens only (OpenAI)
    double frequency_penalty = 0.0;                     // [-2, 2]; generated tokens only (OpenAI)
    std::optional<int64_t> seed;                        // per-request RNG; unset: seeded from a process RNG
    std::optional<int64_t> max_tokens;                  // >= 1; unset: up to the context limit
    int64_t min_tokens = 0;                             // eos / stop ids are masked until this many tokens
    std::vector<int32_t> stop_token_ids;                // finish_reason "stop", stop_reason = the id
    std::vector<std::string> stop;                      // stop strings, never empty; not included in output
    bool ignore_eos = false;                            // eos ids no longer stop (still masked by min_tokens)
    std::vector<std::pair<int32_t, float>> logit_bias;  // (token id, bias added to its logit)

    // Set by sampling_params_resolve from the tokenizer and generation_config.json:
    int32_t eos_token_id = -1;                 // the tokenizer's eos: stops with stop_reason null
    std::vector<int32_t> extra_eos_token_ids;  // generation_config eos ids besides it: stop with
                                               // stop_reason = the id (vLLM adds them to stop_token_ids)
};

// A request parameter out of range. `param` is the request field's name (for the error envelope).
struct invalid_param : error {
    std::string param;
    invalid_param(std::string p, const std::string& message) : error(message), param(std::move(p)) {}
};

// Request values win; unset sampling fields take generation_config's temperature, top_p, top_k,
// min_p, repetition_penalty, then the neutral defaults. max_tokens becomes the smaller of the
// request's and generation_config's max_new_tokens (vLLM's get_max_tokens); the context limit is
// applied by the stop checker. `tokenizer_eos_id` (-1: none) becomes eos_token_id and the other
// generation_config eos ids extra_eos_token_ids. logit_bias values are clamped to [-100, 100] (as
// vLLM's protocol layer does). do_sample is ignored, as vLLM ignores it.
sampling_params sampling_params_resolve(const sampling_params& request, const generation_config& gen,
                                        int32_t tokenizer_eos_id);

// Throws invalid_param naming the field ("top_p must be in (0, 1], got 1.5") for vLLM's ranges:
// temperature >= 0, top_p in (0, 1], top_k >= -1, min_p in [0, 1], repetition_penalty > 0,
// presence/frequency_penalty in [-2, 2], max_tokens >= 1, 0 <= min_tokens <= max_tokens, no empty
// stop string, finite logit_bias values; NaN is rejected everywhere. With n_vocab > 0, ids
// in stop_token_ids and logit_bias must be < n_vocab.
void sampling_params_validate(const sampling_params& p, int32_t n_vocab = 0);

}  // namespace nibble
