#include "engine/sampling_params.h"

#include <fmt/format.h>
#include <algorithm>
#include <cmath>

namespace nibble {

namespace {

template <class... A>
[[noreturn]] void fail_param(const char* param, fmt::format_string<A...> f, A&&... args) {
    throw invalid_param(param, fmt::format(f, std::forward<A>(args)...));
}

void check_token_id(const char* param, int32_t id, int32_t n_vocab) {
    if (id < 0) fail_param(param, "{}: token id {} is negative", param, id);
    if (n_vocab > 0 && id >= n_vocab)
        fail_param(param, "{}: token id {} is out of vocabulary (size {})", param, id, n_vocab);
}

template <class T>
std::optional<T> first_set(const std::optional<T>& a, const auto& b) {
    if (a) return a;
    if (b) return static_cast<T>(*b);
    return std::nullopt;
}

}  // namespace

sampling_params sampling_params_resolve(const sampling_params& request, const generation_config& gen,
                                        int32_t tokenizer_eos_id) {
    sampling_params p = request;
    p.temperature = first_set(request.temperature, gen.temperature).value_or(sampling_default_temperature);
    p.top_p = first_set(request.top_p, gen.top_p).value_or(sampling_default_top_p);
    p.top_k = first_set(request.top_k, gen.top_k).value_or(sampling_default_top_k);
    p.min_p = first_set(request.min_p, gen.min_p).value_or(sampling_default_min_p);
    p.repetition_penalty = first_set(request.repetition_penalty, gen.repetition_penalty)
                               .value_or(sampling_default_repetition_penalty);
    if (gen.max_new_tokens && *gen.max_new_tokens > 0)
        p.max_tokens =
            request.max_tokens ? std::min(*request.max_tokens, *gen.max_new_tokens) : *gen.max_new_tokens;
    p.eos_token_id = tokenizer_eos_id >= 0 ? tokenizer_eos_id : -1;
    p.extra_eos_token_ids.clear();
    for (int32_t id : gen.eos_token_ids) {
        if (id == p.eos_token_id) continue;
        if (std::find(p.extra_eos_token_ids.begin(), p.extra_eos_token_ids.end(), id) !=
            p.extra_eos_token_ids.end())
            continue;
        p.extra_eos_token_ids.push_back(id);
    }
    for (auto& [id, bias] : p.logit_bias)
        if (!std::isnan(bias)) bias = std::clamp(bias, -100.0f, 100.0f);
    return p;
}

void sampling_params_validate(const sampling_params& p, int32_t n_vocab) {
    if (p.temperature && !(*p.temperature >= 0.0))
        fail_param("temperature", "temperature must be non-negative, got {}", *p.temperature);
    if (p.temperature && std::isinf(*p.temperature))
        fail_param("temperature", "temperature must be finite, got {}", *p.temperature);
    if (p.top_p && !(*p.top_p > 0.0 && *p.top_p <= 1.0))
        fail_param("top_p", "top_p must be in (0, 1], got {}", *p.top_p);
    if (p.top_k && *p.top_k < -1)
        fail_param("top_k", "top_k must be 0 or -1 (disabled), or at least 1, got {}", *p.top_k);
    if (p.min_p && !(*p.min_p >= 0.0 && *p.min_p <= 1.0))
        fail_param("min_p", "min_p must be in [0, 1], got {}", *p.min_p);
    if (p.repetition_penalty && !(*p.repetition_penalty > 0.0 && std::isfinite(*p.repetition_penalty)))
        fail_param("repetition_penalty",
                   "repetition_penalty must be a finite number greater than zero, got {}",
                   *p.repetition_penalty);
    if (!(p.presence_penalty >= -2.0 && p.presence_penalty <= 2.0))
        fail_param("presence_penalty", "presence_penalty must be in [-2, 2], got {}", p.presence_penalty);
    if (!(p.frequency_penalty >= -2.0 && p.frequency_penalty <= 2.0))
        fail_param("frequency_penalty", "frequency_penalty must be in [-2, 2], got {}", p.frequency_penalty);
    if (p.max_tokens && *p.max_tokens < 1)
        fail_param("max_tokens", "max_tokens must be at least 1, got {}", *p.max_tokens);
    if (p.min_tokens < 0)
        fail_param("min_tokens", "min_tokens must be greater than or equal to 0, got {}", p.min_tokens);
    if (p.max_tokens && p.min_tokens > *p.max_tokens)
        fail_param("min_tokens", "min_tokens must be less than or equal to max_tokens={}, got {}",
                   *p.max_tokens, p.min_tokens);
    for (const auto& s : p.stop)
        if (s.empty()) fail_param("stop", "stop cannot contain an empty string");
    for (int32_t id : p.stop_token_ids) check_token_id("stop_token_ids", id, n_vocab);
    for (const auto& [id, bias] : p.logit_bias) {
        check_token_id("logit_bias", id, n_vocab);
        if (!std::isfinite(bias)) fail_param("logit_bias", "logit_bias: token {}: bias must be finite", id);
    }
}

}  // namespace nibble
