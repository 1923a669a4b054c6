// What a decode step reads: parameters and bytes by role, and bytes per token at batch 1 (weights of the
// active experts only, plus the KV cache at a given context). The basis of every roofline figure.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/weights.h"

namespace nibble {

struct role_bytes {
    std::string role;    // attention, mlp, experts, router, embeddings, lm_head, norms
    int64_t params = 0;  // all parameters of the role
    uint64_t bytes = 0;  // stored bytes (weights + scales + biases)
    int64_t active_params = 0;
    uint64_t bytes_per_token = 0;  // read per decode token at batch 1
    std::string formats;           // e.g. "NVFP4 W4A16", "BF16"
};

struct model_bytes {
    std::vector<role_bytes> roles;
    int64_t params = 0, active_params = 0;
    uint64_t weight_bytes = 0;            // all stored weight bytes
    uint64_t weight_bytes_per_token = 0;  // batch 1
    uint64_t quantized_bytes_per_token = 0;
    uint64_t kv_bytes_per_position_bf16 = 0;  // K and V, all layers
    uint64_t kv_bytes_per_position_fp8 = 0;
};

model_bytes model_bytes_of(const model_config& c, const model_weights& w);
// "NVFP4 W4A4", "FP8 channel, dynamic per-token", "BF16"...
std::string linear_format_label(const linear_weight& w);

}  // namespace nibble
