#include "core/weights.h"

namespace nibble {

const char* weight_format_name(weight_format f) {
    switch (f) {
        case weight_format_dense:
            return "dense";
        case weight_format_nvfp4:
            return "nvfp4";
        case weight_format_mxfp4:
            return "mxfp4";
        case weight_format_fp8:
            return "fp8";
    }
    return "?";
}

const char* act_format_name(act_format a) {
    switch (a) {
        case act_format_none:
            return "none";
        case act_format_nvfp4:
            return "nvfp4";
        case act_format_fp8_token:
            return "fp8-token";
        case act_format_fp8_group:
            return "fp8-group128";
        case act_format_fp8_static:
            return "fp8-static";
    }
    return "?";
}

uint64_t linear_weight::bytes() const {
    return weight.n_bytes + block_scale.n_bytes + bias.n_bytes + fp8_scales.size() * sizeof(float);
}

}  // namespace nibble
