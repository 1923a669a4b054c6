// Loading a model: config.json + quantization config + checkpoint -> model_weights (views, no copies).
// Each linear module's format is decided from the tensors present (formats.md 7.1) and must agree
// with the quantization config; every mismatch fails naming the tensor, the expected and found
// dtype/shape, or the config file.
#pragma once

#include <memory>
#include <string>

#include "core/config.h"
#include "core/weights.h"
#include "loader/checkpoint.h"
#include "loader/quant_config.h"

namespace nibble {

struct loaded_model {
    model_config config;
    quant_config quant;
    std::unique_ptr<checkpoint> ckpt;  // owns the mmaps the weights point into
    model_weights weights;
};

// Opens DIR (config.json, quantization config, safetensors) and maps every weight.
loaded_model load_model(const std::string& dir);
// Maps the weights of an opened checkpoint.
model_weights model_weights_map(const checkpoint& ck, const model_config& c, const quant_config& q);
// Maps one linear module (exposed for tests).
linear_weight linear_weight_map(const checkpoint& ck, const linear_desc& d, const quant_config& q);

}  // namespace nibble
