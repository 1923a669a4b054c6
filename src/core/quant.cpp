#include "core/quant.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/formats.h"

namespace nibble {

namespace {

constexpr float k_fp4_fp8_max = e2m1_max * e4m3_max;  // 2688

uint8_t pack2(uint8_t even, uint8_t odd) {
    return uint8_t((even & 0xF) | (odd << 4));
}

void check_block_multiple(int64_t k, int block, const char* what) {
    if (k % block != 0) fail("{}: K = {} is not a multiple of the block size {}", what, k, block);
}

// Quantizes 16 values with effective scale e into 8 packed bytes (CT order: x / e, clamp, RNE).
void nvfp4_encode_block_div(const float* x, float e, uint8_t* out) {
    for (int j = 0; j < nvfp4_block; j += 2) {
        float a = std::fmin(std::fmax(x[j] / e, -e2m1_max), e2m1_max);
        float b = std::fmin(std::fmax(x[j + 1] / e, -e2m1_max), e2m1_max);
        // fmin/fmax drop the sign of a NaN quotient but keep -0, which is what CT's clamp does.
        if (std::isnan(x[j] / e)) a = 0;
        if (std::isnan(x[j + 1] / e)) b = 0;
        out[j / 2] = pack2(e2m1_from_float(a), e2m1_from_float(b));
    }
}

}  // namespace

float abs_max(const float* x, int64_t n) {
    float m = 0;
    for (int64_t i = 0; i < n; ++i) m = std::fmax(m, std::fabs(x[i]));
    return m;
}

float nvfp4_global_scale(float amax, nvfp4_convention c) {
    if (c == nvfp4_convention_ct) {
        // generate_gparam: 448*6 / amax, amax clamped away from 0, non-finite results replaced by 1.
        float g = k_fp4_fp8_max / std::fmax(amax, FLT_MIN);
        return std::isfinite(g) && !std::isnan(amax) ? g : 1.0f;
    }
    if (!(amax > 0) || !std::isfinite(amax)) return 1.0f;
    return amax / k_fp4_fp8_max;
}

uint8_t nvfp4_block_scale(float amax_blk, float global, nvfp4_convention c) {
    if (c == nvfp4_convention_ct) {
        uint8_t s = e4m3_from_float_sat(global * (amax_blk / e2m1_max));
        return (s & 0x7F) == 0 ? 0x20 : s;  // exact zero -> 0.125 (CT _get_dtype_eps)
    }
    float s = amax_blk / (e2m1_max * global);
    if (s == 0) return 0x38;  // ModelOpt writes 1.0 for an all-zero block
    return e4m3_from_float_sat(s);
}

float nvfp4_effective_scale(uint8_t scale_byte, float global, nvfp4_convention c) {
    float s = e4m3_to_float(scale_byte);
    return c == nvfp4_convention_ct ? s / global : s * global;
}

float nvfp4_global_multiplier(float global, nvfp4_convention c) {
    return c == nvfp4_convention_ct ? 1.0f / global : global;
}

void nvfp4_quantize(const float* w, int64_t n, int64_t k, float global, nvfp4_convention c, uint8_t* packed,
                    uint8_t* scales) {
    check_block_multiple(k, nvfp4_block, "NVFP4 quantization");
    const int64_t nb = k / nvfp4_block;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t b = 0; b < nb; ++b) {
            const float* x = w + i * k + b * nvfp4_block;
            uint8_t s = nvfp4_block_scale(abs_max(x, nvfp4_block), global, c);
            scales[i * nb + b] = s;
            nvfp4_encode_block_div(x, nvfp4_effective_scale(s, global, c),
                                   packed + (i * k + b * nvfp4_block) / 2);
        }
    }
}

float nvfp4_quantize_auto(const float* w, int64_t n, int64_t k, nvfp4_convention c, uint8_t* packed,
                          uint8_t* scales) {
    float amax = 0;
#pragma omp parallel for reduction(max : amax)
    for (int64_t i = 0; i < n; ++i) amax = std::fmax(amax, abs_max(w + i * k, k));
    float g = nvfp4_global_scale(amax, c);
    nvfp4_quantize(w, n, k, g, c, packed, scales);
    return g;
}

void nvfp4_dequantize(const uint8_t* packed, const uint8_t* scales, int64_t n, int64_t k, float global,
                      nvfp4_convention c, float* out) {
    check_block_multiple(k, nvfp4_block, "NVFP4 dequantization");
    const int64_t nb = k / nvfp4_block;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t b = 0; b < nb; ++b) {
            float e = nvfp4_effective_scale(scales[i * nb + b], global, c);
            for (int j = 0; j < nvfp4_block; ++j) {
                int64_t idx = i * k + b * nvfp4_block + j;
                uint8_t byte = packed[idx / 2];
                out[idx] = e2m1_to_float(idx & 1 ? byte >> 4 : byte) * e;
            }
        }
    }
}

void nvfp4_quantize_activation(const float* x, int64_t k, float input_global, uint8_t* packed,
                               uint8_t* scales) {
    check_block_multiple(k, nvfp4_block, "NVFP4 activation quantization");
    for (int64_t b = 0; b < k / nvfp4_block; ++b) {
        const float* xb = x + b * nvfp4_block;
        uint8_t s = nvfp4_block_scale(abs_max(xb, nvfp4_block), input_global, nvfp4_convention_ct);
        scales[b] = s;
        nvfp4_encode_block_div(xb, nvfp4_effective_scale(s, input_global, nvfp4_convention_ct),
                               packed + b * nvfp4_block / 2);
    }
}

void nvfp4_fake_quantize_activation(float* x, int64_t k, float input_global) {
    check_block_multiple(k, nvfp4_block, "NVFP4 activation quantization");
    for (int64_t b = 0; b < k / nvfp4_block; ++b) {
        uint8_t packed[nvfp4_block / 2], s;
        nvfp4_quantize_activation(x + b * nvfp4_block, nvfp4_block, input_global, packed, &s);
        float e = nvfp4_effective_scale(s, input_global, nvfp4_convention_ct);
        for (int j = 0; j < nvfp4_block; ++j)
            x[b * nvfp4_block + j] = e2m1_to_float(j & 1 ? packed[j / 2] >> 4 : packed[j / 2]) * e;
    }
}

uint8_t mxfp4_block_scale(float amax_blk) {
    if (!(amax_blk > 0) || !std::isfinite(amax_blk)) return 127;
    int ex;
    std::frexp(amax_blk, &ex);  // amax = m * 2^ex, m in [0.5, 1): floor(log2 amax) = ex - 1
    int e = ex - 1 - 2;         // minus emax of E2M1 (6 = 1.5 * 2^2)
    if (e < -127) e = -127;
    if (e > 127) e = 127;
    return uint8_t(e + 127);
}

void mxfp4_quantize(const float* w, int64_t n, int64_t k, uint8_t* packed, uint8_t* scales) {
    check_block_multiple(k, mxfp4_block, "MXFP4 quantization");
    const int64_t nb = k / mxfp4_block;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t b = 0; b < nb; ++b) {
            const float* x = w + i * k + b * mxfp4_block;
            uint8_t s = mxfp4_block_scale(abs_max(x, mxfp4_block));
            scales[i * nb + b] = s;
            int e = int(s) - 127;
            for (int j = 0; j < mxfp4_block; j += 2) {
                float a = std::fmin(std::fmax(std::ldexp(x[j], -e), -e2m1_max), e2m1_max);
                float c = std::fmin(std::fmax(std::ldexp(x[j + 1], -e), -e2m1_max), e2m1_max);
                packed[(i * k + b * mxfp4_block + j) / 2] = pack2(e2m1_from_float(a), e2m1_from_float(c));
            }
        }
    }
}

void mxfp4_dequantize(const uint8_t* packed, const uint8_t* scales, int64_t n, int64_t k, float* out) {
    check_block_multiple(k, mxfp4_block, "MXFP4 dequantization");
    const int64_t nb = k / mxfp4_block;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = 0; j < k; ++j) {
            uint8_t byte = packed[(i * k + j) / 2];
            out[i * k + j] =
                e2m1_to_float(j & 1 ? byte >> 4 : byte) * e8m0_to_float(scales[i * nb + j / mxfp4_block]);
        }
    }
}

int64_t fp8_scale_count(fp8_granularity g, int64_t n, int64_t k) {
    switch (g) {
        case fp8_granularity_tensor:
            return 1;
        case fp8_granularity_channel:
            return n;
        case fp8_granularity_block:
            return ((n + fp8_block - 1) / fp8_block) * ((k + fp8_block - 1) / fp8_block);
    }
    return 0;
}

namespace {

// Index of the scale that covers element (i, j).
inline int64_t fp8_scale_index(fp8_granularity g, int64_t i, int64_t j, int64_t k) {
    switch (g) {
        case fp8_granularity_tensor:
            return 0;
        case fp8_granularity_channel:
            return i;
        case fp8_granularity_block:
            return (i / fp8_block) * ((k + fp8_block - 1) / fp8_block) + j / fp8_block;
    }
    return 0;
}

}  // namespace

void fp8_quantize(const float* w, int64_t n, int64_t k, fp8_granularity g, dtype scale_dtype, uint8_t* q,
                  float* scales) {
    const int64_t ns = fp8_scale_count(g, n, k);
    std::vector<float> amax(size_t(ns), 0.0f);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < k; ++j) {
            float& m = amax[size_t(fp8_scale_index(g, i, j, k))];
            m = std::fmax(m, std::fabs(w[i * k + j]));
        }
    for (int64_t s = 0; s < ns; ++s) {
        float v = amax[size_t(s)] / e4m3_max;
        scales[s] = round_through(scale_dtype, v > 0 ? v : FLT_EPSILON);
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < k; ++j)
            q[i * k + j] = e4m3_from_float_sat(w[i * k + j] / scales[fp8_scale_index(g, i, j, k)]);
}

void fp8_dequantize(const uint8_t* q, const float* scales, int64_t n, int64_t k, fp8_granularity g,
                    float* out) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < k; ++j)
            out[i * k + j] = e4m3_to_float(q[i * k + j]) * scales[fp8_scale_index(g, i, j, k)];
}

void fp8_quantize_activation(const float* x, int64_t k, int64_t group, uint8_t* q, float* scales) {
    for (int64_t g0 = 0, gi = 0; g0 < k; g0 += group, ++gi) {
        int64_t len = std::min(group, k - g0);
        float a = abs_max(x + g0, len);
        float s = a > 0 ? a / e4m3_max : 1.0f;
        scales[gi] = s;
        for (int64_t j = 0; j < len; ++j) q[g0 + j] = e4m3_from_float_sat(x[g0 + j] / s);
    }
}

}  // namespace nibble
