// Linear layers on the CPU for every weight format: each output row of W is decoded once into floats
// (exact dequantized values) and dotted with every activation row of the step.
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/formats.h"
#include "core/quant.h"
#include "cpu/cpu_backend.h"

namespace nibble {

namespace {

struct tables {
    float e4m3[256];
    float e2m1[16];
    tables() {
        for (int i = 0; i < 256; ++i) e4m3[i] = e4m3_to_float(uint8_t(i));
        for (int i = 0; i < 16; ++i) e2m1[i] = e2m1_to_float(uint8_t(i));
    }
};
const tables k_tab;

// The hot loop; cloned for AVX2+FMA machines, dispatched at load time (the binary stays portable).
__attribute__((target_clones("arch=haswell", "default"))) float dot(const float* a, const float* b,
                                                                    int64_t k) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    int64_t j = 0;
    for (; j + 8 <= k; j += 8) {
        s0 += a[j] * b[j];
        s1 += a[j + 1] * b[j + 1];
        s2 += a[j + 2] * b[j + 2];
        s3 += a[j + 3] * b[j + 3];
        s4 += a[j + 4] * b[j + 4];
        s5 += a[j + 5] * b[j + 5];
        s6 += a[j + 6] * b[j + 6];
        s7 += a[j + 7] * b[j + 7];
    }
    float s = ((s0 + s4) + (s1 + s5)) + ((s2 + s6) + (s3 + s7));
    for (; j < k; ++j) s += a[j] * b[j];
    return s;
}

}  // namespace

void cpu_decode_row(const linear_weight& w, int64_t r, float* out) {
    const int64_t k = w.k;
    switch (w.format) {
        case weight_format_dense: {
            if (w.weight.type == dtype_bf16) {
                const uint16_t* p = reinterpret_cast<const uint16_t*>(w.weight.data) + r * k;
                for (int64_t j = 0; j < k; ++j) out[j] = bf16_to_float(p[j]);
            } else {
                for (int64_t j = 0; j < k; ++j)
                    out[j] = load_float(w.weight.type, w.weight.data, size_t(r * k + j));
            }
            return;
        }
        case weight_format_nvfp4: {
            const uint8_t* p = w.weight.data + r * k / 2;
            const uint8_t* s = w.block_scale.data + r * k / nvfp4_block;
            for (int64_t b = 0; b < k / nvfp4_block; ++b) {
                float e = nvfp4_effective_scale(s[b], w.global_scale, w.convention);
                for (int j = 0; j < nvfp4_block / 2; ++j) {
                    uint8_t byte = p[b * 8 + j];
                    out[b * 16 + 2 * j] = k_tab.e2m1[byte & 15] * e;
                    out[b * 16 + 2 * j + 1] = k_tab.e2m1[byte >> 4] * e;
                }
            }
            return;
        }
        case weight_format_mxfp4: {
            const uint8_t* p = w.weight.data + r * k / 2;
            const uint8_t* s = w.block_scale.data + r * k / mxfp4_block;
            for (int64_t b = 0; b < k / mxfp4_block; ++b) {
                float e = e8m0_to_float(s[b]);
                for (int j = 0; j < mxfp4_block / 2; ++j) {
                    uint8_t byte = p[b * 16 + j];
                    out[b * 32 + 2 * j] = k_tab.e2m1[byte & 15] * e;
                    out[b * 32 + 2 * j + 1] = k_tab.e2m1[byte >> 4] * e;
                }
            }
            return;
        }
        case weight_format_fp8: {
            const uint8_t* p = w.weight.data + r * k;
            const int64_t bk = (k + fp8_block - 1) / fp8_block;
            for (int64_t j = 0; j < k; ++j) {
                float s = w.fp8_gran == fp8_granularity_tensor ? w.fp8_scales[0]
                          : w.fp8_gran == fp8_granularity_channel
                              ? w.fp8_scales[size_t(r)]
                              : w.fp8_scales[size_t((r / fp8_block) * bk + j / fp8_block)];
                out[j] = k_tab.e4m3[p[j]] * s;
            }
            return;
        }
    }
}

void cpu_quantize_activations(const linear_weight& w, const float* x, int64_t rows, float* out) {
    const int64_t k = w.k;
    std::copy(x, x + rows * k, out);
    switch (w.act) {
        case act_format_none:
            return;
        case act_format_nvfp4:
            for (int64_t r = 0; r < rows; ++r)
                nvfp4_fake_quantize_activation(out + r * k, k, w.input_global_scale);
            return;
        case act_format_fp8_token:
        case act_format_fp8_group: {
            const int64_t group = w.act == act_format_fp8_token ? k : fp8_block;
            std::vector<uint8_t> q(static_cast<size_t>(k));
            std::vector<float> s(size_t((k + group - 1) / group));
            for (int64_t r = 0; r < rows; ++r) {
                fp8_quantize_activation(out + r * k, k, group, q.data(), s.data());
                for (int64_t j = 0; j < k; ++j)
                    out[r * k + j] = k_tab.e4m3[q[size_t(j)]] * s[size_t(j / group)];
            }
            return;
        }
        case act_format_fp8_static:
            for (int64_t i = 0; i < rows * k; ++i)
                out[i] = k_tab.e4m3[e4m3_from_float_sat(out[i] / w.fp8_input_scale)] * w.fp8_input_scale;
            return;
    }
}

void cpu_backend::linear(const float* x, int64_t rows, const linear_weight& w, float* out) {
    const int64_t n = w.n, k = w.k;
    if (observer_) {
        float a = 0;
        for (int64_t i = 0; i < rows * k; ++i) a = std::fmax(a, std::fabs(x[i]));
        observer_(w, a);
    }
    std::vector<float> xq;
    const float* xa = x;
    if (w.act != act_format_none) {
        xq.resize(size_t(rows * k));
        cpu_quantize_activations(w, x, rows, xq.data());
        xa = xq.data();
    }
    const bool has_bias = !w.bias.empty();
    // Below ~1M multiply-adds a thread team costs more than it saves (and on a loaded machine its
    // spin-waits cost far more): measured on the bundled model, 256x512 layers run faster serially.
    const bool parallel = n * k * rows >= (int64_t(1) << 20);
#pragma omp parallel if (parallel)
    {
        std::vector<float> row(static_cast<size_t>(k));
#pragma omp for schedule(static)
        for (int64_t r = 0; r < n; ++r) {
            cpu_decode_row(w, r, row.data());
            float b = has_bias ? load_float(w.bias.type, w.bias.data, size_t(r)) : 0.0f;
            for (int64_t t = 0; t < rows; ++t) out[t * n + r] = dot(xa + t * k, row.data(), k) + b;
        }
    }
}

}  // namespace nibble
