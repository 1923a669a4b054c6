// The tensor-core linear (cuda_backend::linear_tensor_core, rows > 16) against cpu_backend::linear: every
// weight format and activation scheme, FP8 per tensor / channel / 128x128 block, odd shapes (partial
// 128-row weight blocks, k not a multiple of 128), and the same with a small scratch limit so that the
// work is cut into row chunks and groups of weight blocks. SKIPPED without a GPU.
//
// Bound (as linear_every_format in test_cuda_backend.cpp): per output |gpu - cpu| <= 1e-5 · Σ_j |x_j·w_j| +
// 1e-6, over the activations the layer multiplies (fake-quantized) and the decoded weights. Sources: the
// weights are exact in BF16 (dequant.h) and their scales are applied in float32 (a few 2^-24 roundings);
// split activations (weight-only, FP8 per-group, FP8 block scales) carry |x - hi - lo| <= 2^-17 |x| =
// 7.6e-6 |x|; exact activations (W4A4, FP8 per token / static) none; the rest is float32 summation order
// (tensor-core FP32 accumulation vs the CPU's 8-way dot). The worst ratio per case is printed.
//
// FP8 W8A8 (per token or static, per-tensor or per-channel weight scales, k % 16 == 0) runs on the FP8
// tensor cores through cuBLASLt (fp8_gemm.h) instead, bound 2^-10 · Σ|x·w| + 1e-6: the operands are the
// exact E4M3 codes and their products are exact, but Hopper's FP8 MMA adds them in a narrower accumulator
// than FP32 (13 mantissa bits, truncating, as measured by others: SageAttention2, DeepSeek-V3's "about 14
// bits", Khattak & Mikaitis' H100 model); with FAST_ACCUM off cuBLASLt moves the partial sums into FP32
// every few MMAs, so each partial carries a few 2^-13 relative errors of a value at most Σ|x·w| over its
// range. Which path ran is read from cuda_backend::fp8_gemm_linears(); shapes with n % 16 == 0 must take
// the FP8 one (others may, as cuBLASLt allows; the line printed says which).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/formats.h"
#include "core/quant.h"
#include "cpu/cpu_backend.h"
#include "cuda/cuda_backend.h"
#include "cuda_test_util.h"

using namespace nibble;

namespace {

using test::randn;

tensor_view view_of(const uint8_t* data, size_t n_bytes, dtype ty, std::vector<int64_t> shape) {
    tensor_view t;
    t.type = ty;
    t.shape = std::move(shape);
    t.data = data;
    t.n_bytes = n_bytes;
    return t;
}

struct scheme {
    const char* name;
    weight_format format;
    act_format act;
    fp8_granularity gran = fp8_granularity_tensor;
    nvfp4_convention conv = nvfp4_convention_ct;
    dtype dense = dtype_bf16;
    bool bias = false;
};

// A linear layer with its host storage (kept alive as long as a backend that uploaded it).
struct test_linear {
    linear_weight w;
    std::vector<uint8_t> packed, scales, bias_bytes;
    std::vector<float> dense;
};

test_linear make_linear(const scheme& sc, int64_t n, int64_t k, uint32_t seed) {
    test_linear t;
    t.w.name = sc.name;
    t.w.format = sc.format;
    t.w.act = sc.act;
    t.w.n = n;
    t.w.k = k;
    std::vector<float> w = randn(size_t(n * k), seed, 0.1f);
    switch (sc.format) {
        case weight_format_dense:
            if (sc.dense == dtype_f32) {
                t.dense = w;
                t.w.weight = view_of(reinterpret_cast<const uint8_t*>(t.dense.data()), t.dense.size() * 4,
                                     dtype_f32, {n, k});
            } else {
                t.packed.resize(size_t(n * k) * 2);
                for (size_t i = 0; i < w.size(); ++i) {
                    const uint16_t h = sc.dense == dtype_bf16 ? bf16_from_float(w[i]) : f16_from_float(w[i]);
                    std::memcpy(&t.packed[2 * i], &h, 2);
                }
                t.w.weight = view_of(t.packed.data(), t.packed.size(), sc.dense, {n, k});
            }
            break;
        case weight_format_nvfp4:
            t.packed.resize(size_t(n * k / 2));
            t.scales.resize(size_t(n * k / 16));
            t.w.convention = sc.conv;
            t.w.global_scale = nvfp4_quantize_auto(w.data(), n, k, sc.conv, t.packed.data(), t.scales.data());
            t.w.weight = view_of(t.packed.data(), t.packed.size(), dtype_u8, {n, k / 2});
            t.w.block_scale = view_of(t.scales.data(), t.scales.size(), dtype_f8_e4m3, {n, k / 16});
            break;
        case weight_format_mxfp4:
            t.packed.resize(size_t(n * k / 2));
            t.scales.resize(size_t(n * k / 32));
            mxfp4_quantize(w.data(), n, k, t.packed.data(), t.scales.data());
            t.w.weight = view_of(t.packed.data(), t.packed.size(), dtype_u8, {n, k / 2});
            t.w.block_scale = view_of(t.scales.data(), t.scales.size(), dtype_u8, {n, k / 32});
            break;
        case weight_format_fp8:
            t.packed.resize(size_t(n * k));
            t.w.fp8_gran = sc.gran;
            t.w.fp8_scales.resize(size_t(fp8_scale_count(sc.gran, n, k)));
            fp8_quantize(w.data(), n, k, sc.gran, dtype_f32, t.packed.data(), t.w.fp8_scales.data());
            t.w.weight = view_of(t.packed.data(), t.packed.size(), dtype_f8_e4m3, {n, k});
            break;
    }
    if (sc.bias) {
        t.bias_bytes.resize(size_t(n) * 2);
        const std::vector<float> bv = randn(size_t(n), seed + 7);
        for (int64_t i = 0; i < n; ++i) {
            const uint16_t h = bf16_from_float(bv[size_t(i)]);
            std::memcpy(&t.bias_bytes[size_t(2 * i)], &h, 2);
        }
        t.w.bias = view_of(t.bias_bytes.data(), t.bias_bytes.size(), dtype_bf16, {n});
    }
    return t;
}

// The bound's relative term: 1e-5, or 5e-4 where the weight-only NVFP4 / FP8 (tensor or channel scales)
// GEMM takes FP16 activations (the default for rows > 16): |x - fp16 path| <= 2^-11 |x| = 4.9e-4 |x| per
// product, plus the 1e-5 above; 2^-10 where the FP8 GEMM ran (Hopper's FP8 accumulator keeps ~13 bits
// between its FP32 promotions).
constexpr double k_fp8_gemm_bound = 0x1p-10;
double relative_bound(const linear_weight& w, int64_t rows, bool f16 = true) {
    const bool f16_weight = w.format == weight_format_nvfp4 ||
                            (w.format == weight_format_fp8 && w.fp8_gran != fp8_granularity_block);
    return f16 && f16_weight && w.act == act_format_none && rows > 16 ? 5e-4 : 1e-5;
}

// One linear over `rows` random rows (row i times row_mul[i] where given) on both backends; checks the
// stated bound (the FP16 or split path as `f16`, the FP8 GEMM's when that path ran) and prints the worst
// ratio. Returns whether the FP8 GEMM ran.
bool check(cuda_backend& gpu, test_linear& t, int64_t rows, uint32_t seed, bool f16 = true,
           const std::vector<float>& row_mul = {}) {
    cpu_backend cpu;
    const int64_t n = t.w.n, k = t.w.k;
    std::vector<float> x = randn(size_t(rows * k), seed);
    for (size_t i = 0; i < row_mul.size() && int64_t(i) < rows; ++i)
        for (int64_t j = 0; j < k; ++j) x[i * size_t(k) + size_t(j)] *= row_mul[i];
    gpu.set_f16_prefill(f16);
    if (t.w.act == act_format_nvfp4) {
        float amax = 0;
        for (float v : x) amax = std::max(amax, std::fabs(v));
        t.w.input_global_scale = nvfp4_global_scale(amax, nvfp4_convention_ct);
    }
    if (t.w.act == act_format_fp8_static) t.w.fp8_input_scale = 4.0f / 448.0f;
    std::vector<float> want(size_t(rows * n));
    cpu.linear(x.data(), rows, t.w, want.data());
    float* xd = gpu.alloc(x.size());
    gpu.upload(x.data(), x.size(), xd);
    float* yd = gpu.alloc(want.size());
    const uint64_t fp8_before = gpu.fp8_gemm_linears();
    gpu.linear(xd, rows, t.w, yd);
    const bool fp8 = gpu.fp8_gemm_linears() > fp8_before;
    const double rel = fp8 ? k_fp8_gemm_bound : relative_bound(t.w, rows, f16);
    std::vector<float> got(want.size());
    gpu.to_host(yd, got.size(), got.data());

    std::vector<float> xq(x.size());
    cpu_quantize_activations(t.w, x.data(), rows, xq.data());
    int64_t bad = 0;
    double worst = 0;
#pragma omp parallel for schedule(dynamic, 4) reduction(+ : bad) reduction(max : worst)
    for (int64_t r = 0; r < n; ++r) {
        std::vector<float> row(static_cast<size_t>(k));
        cpu_decode_row(t.w, r, row.data());
        for (int64_t i = 0; i < rows; ++i) {
            double s = 0;
            for (int64_t j = 0; j < k; ++j) s += std::fabs(double(xq[size_t(i * k + j)]) * row[size_t(j)]);
            const double d = std::fabs(double(got[size_t(i * n + r)]) - want[size_t(i * n + r)]);
            worst = std::max(worst, d / (s + 1e-30));
            if (!(d <= rel * s + 1e-6)) ++bad;
        }
    }
    EXPECT_EQ(bad, 0) << t.w.name << " " << n << "x" << k << " rows " << rows << (fp8 ? " (FP8 GEMM)" : "")
                      << ": worst relative error " << worst;
    std::printf("prefill linear %-30s %4lldx%-5lld rows %3lld%s: worst |d| / sum|x w| = %.2g (bound %.0e)\n",
                t.w.name.c_str(), (long long)n, (long long)k, (long long)rows, fp8 ? " fp8 gemm" : "", worst,
                rel);
    return fp8;
}

// Whether linear_tensor_core should take the FP8 GEMM for t (cuda_backend::linear_fp8's case).
bool fp8_gemm_case(const test_linear& t) {
    return t.w.format == weight_format_fp8 && t.w.fp8_gran != fp8_granularity_block && t.w.k % 16 == 0 &&
           (t.w.act == act_format_fp8_token || t.w.act == act_format_fp8_static);
}

const scheme k_schemes[] = {
    {"bf16 + bias", weight_format_dense, act_format_none, fp8_granularity_tensor, nvfp4_convention_ct,
     dtype_bf16, true},
    {"f16 (fp32 sgemm)", weight_format_dense, act_format_none, fp8_granularity_tensor, nvfp4_convention_ct,
     dtype_f16},
    {"nvfp4a16 ct", weight_format_nvfp4, act_format_none},
    {"nvfp4a16 modelopt + bias", weight_format_nvfp4, act_format_none, fp8_granularity_tensor,
     nvfp4_convention_modelopt, dtype_bf16, true},
    {"nvfp4 w4a4 ct", weight_format_nvfp4, act_format_nvfp4},
    {"nvfp4 w4a4 modelopt + bias", weight_format_nvfp4, act_format_nvfp4, fp8_granularity_tensor,
     nvfp4_convention_modelopt, dtype_bf16, true},
    {"mxfp4a16", weight_format_mxfp4, act_format_none},
    {"fp8 tensor, weight-only", weight_format_fp8, act_format_none, fp8_granularity_tensor},
    {"fp8 tensor, static", weight_format_fp8, act_format_fp8_static, fp8_granularity_tensor},
    {"fp8 tensor, per token", weight_format_fp8, act_format_fp8_token, fp8_granularity_tensor},
    {"fp8 channel, per token + bias", weight_format_fp8, act_format_fp8_token, fp8_granularity_channel,
     nvfp4_convention_ct, dtype_bf16, true},
    {"fp8 channel, weight-only", weight_format_fp8, act_format_none, fp8_granularity_channel},
    {"fp8 channel, static", weight_format_fp8, act_format_fp8_static, fp8_granularity_channel},
    {"fp8 channel, per group", weight_format_fp8, act_format_fp8_group, fp8_granularity_channel},
    {"fp8 block, per group", weight_format_fp8, act_format_fp8_group, fp8_granularity_block},
    {"fp8 block, weight-only + bias", weight_format_fp8, act_format_none, fp8_granularity_block,
     nvfp4_convention_ct, dtype_bf16, true},
    {"fp8 block, per token", weight_format_fp8, act_format_fp8_token, fp8_granularity_block},
};

struct shape {
    int64_t n, k;
    std::vector<int64_t> rows;
};

}  // namespace

// n 67 / 300 / 1000: one partial 128-row block, 2 full + a partial, 7 full + a partial; k 160: a partial
// 128-wide k block; rows 17 (just above the GEMV range), 64 and 300.
TEST(cuda_prefill_linear, every_format_and_scheme) {
    REQUIRE_GPU();
    uint32_t seed = 5000;
    for (const shape& sh :
         {shape{67, 160, {17, 64, 300}}, shape{300, 4096, {17, 64, 300}}, shape{1000, 4096, {17, 300}}})
        for (const scheme& sc : k_schemes) {
            test_linear t = make_linear(sc, sh.n, sh.k, seed++);
            cuda_backend gpu;
            for (int64_t rows : sh.rows) check(gpu, t, rows, seed++);
        }
}

// Small scratch limits. 64 KiB: GEMM outputs in row chunks of 128 (300 rows: 128 + 128 + 44) and, with
// block scales, one 128-row weight block per group (the partial last one on its own GEMM). 15 MiB, n = 1000
// with block scales: no row chunks, groups of 3 blocks (3 + 3 + 2, the last group's partial block apart).
TEST(cuda_prefill_linear, chunked_scratch) {
    REQUIRE_GPU();
    uint32_t seed = 7000;
    const scheme chunked[] = {k_schemes[0],  k_schemes[2],  k_schemes[6], k_schemes[11],
                              k_schemes[13], k_schemes[14], k_schemes[15]};
    for (size_t limit : {size_t(64) << 10, size_t(15) << 20})
        for (const shape& sh : {shape{67, 160, {300}}, shape{1000, 4096, {300}}})
            for (const scheme& sc : chunked) {
                test_linear t = make_linear(sc, sh.n, sh.k, seed++);
                cuda_backend gpu;
                gpu.set_linear_scratch_limit(limit);
                for (int64_t rows : sh.rows) check(gpu, t, rows, seed++);
            }
}

// Weight-only NVFP4 / FP8 on both activation paths (FP16 by default, the BF16 hi + lo split), with rows
// whose scale is far from 1 (1e-30, 1e25: the FP16 path scales each row by a power of two first).
TEST(cuda_prefill_linear, f16_and_split_activations) {
    REQUIRE_GPU();
    uint32_t seed = 9000;
    const scheme weight_only[] = {k_schemes[2], k_schemes[3], k_schemes[7], k_schemes[11]};
    const std::vector<float> row_mul = {1e-30f, 1e25f, 1.0f, 3.0e-5f};
    for (const scheme& sc : weight_only) {
        test_linear t = make_linear(sc, 300, 1024, seed++);
        cuda_backend gpu;
        for (bool f16 : {true, false})
            for (int64_t rows : {17, 137}) check(gpu, t, rows, seed++, f16, row_mul);
    }
}

// The FP8 GEMM path (cuBLASLt) over shapes around its requirements: n odd, a multiple of 4 but not of 16,
// and of 16 (D written in place only for n % 4 == 0), k = 16 · odd (144 = 16 · 9, 528 = 16 · 33) and 4096,
// rows 17 (just above the GEMV range), 100 and 300. Shapes with n % 16 == 0 must run on it; the others
// print whether cuBLASLt took them (else the BF16 path ran, checked against its own bound).
TEST(cuda_prefill_linear, fp8_gemm_shapes) {
    REQUIRE_GPU();
    uint32_t seed = 9000;
    const scheme fp8[] = {k_schemes[8], k_schemes[9], k_schemes[10], k_schemes[12]};
    for (const shape& sh :
         {shape{67, 144, {17, 100, 300}}, shape{96, 528, {17, 100}}, shape{300, 528, {17, 300}},
          shape{301, 144, {17, 100}}, shape{1024, 4096, {100, 300}}})
        for (const scheme& sc : fp8) {
            test_linear t = make_linear(sc, sh.n, sh.k, seed++);
            ASSERT_TRUE(fp8_gemm_case(t)) << sc.name;
            cuda_backend gpu;
            gpu.set_fp8_gemm(true);  // whatever NIBBLE_FP8_GEMM says
            for (int64_t rows : sh.rows) {
                const bool ran = check(gpu, t, rows, seed++);
                if (sh.n % 16 == 0) {
                    EXPECT_TRUE(ran) << sc.name << " " << sh.n << "x" << sh.k << " rows " << rows
                                     << ": not on the FP8 GEMM";
                }
            }
        }
}

// Both paths of one backend on the same layers: the FP8 GEMM (set_fp8_gemm(true)) within its bound, the
// BF16 GEMMs (set_fp8_gemm(false), what NIBBLE_FP8_GEMM=0 selects) within 1e-5 and never the FP8 GEMM.
// Then a 64 KiB scratch limit with n = 1001 (rows padded to 1004 floats, so D goes to scratch in row
// chunks of 128: 300 = 128 + 128 + 44).
TEST(cuda_prefill_linear, fp8_gemm_switch) {
    REQUIRE_GPU();
    uint32_t seed = 11000;
    const scheme fp8[] = {k_schemes[8], k_schemes[9], k_schemes[10], k_schemes[12]};
    for (const scheme& sc : fp8) {
        test_linear t = make_linear(sc, 256, 1024, seed++);
        cuda_backend gpu;
        for (bool on : {true, false, true}) {
            gpu.set_fp8_gemm(on);
            const uint64_t before = gpu.fp8_gemm_linears();
            const bool ran = check(gpu, t, 100, seed++);
            EXPECT_EQ(ran, on) << sc.name << (on ? ": FP8 GEMM did not run" : ": FP8 GEMM ran while off");
            EXPECT_EQ(gpu.fp8_gemm_linears() - before, on ? 1u : 0u) << sc.name;
        }
    }
    for (const scheme& sc : fp8) {
        test_linear t = make_linear(sc, 1001, 528, seed++);
        cuda_backend gpu;
        gpu.set_fp8_gemm(true);
        gpu.set_linear_scratch_limit(size_t(64) << 10);
        for (int64_t rows : {17, 300}) check(gpu, t, rows, seed++);
    }
}

// The FP8 GEMM's operands: cuda_row_quantize_e4m3 on per-token fake-quantized activations gives the CPU's
// E4M3 codes byte for byte (core/quant.cpp: c = e4m3_sat(x / s0), s0 = amax / 448) and a row scale with
// e4m3(c) · s = x' to 2^-22 relative; rows of unit, tiny (1e-30) and huge (1e30) scale and an all-zero
// row. cuda_scale_to_e4m3 on static ones (times 1 / input_scale) gives the codes byte for byte.
TEST(cuda_prefill_linear, fp8_gemm_operands_are_the_codes) {
    REQUIRE_GPU();
    const int64_t rows = 6, k = 528;
    std::vector<float> x = randn(size_t(rows * k), 77, 3.0f);
    for (int64_t j = 0; j < k; ++j) {
        x[size_t(1 * k + j)] *= 1e-30f;
        x[size_t(2 * k + j)] *= 1e30f;
        x[size_t(3 * k + j)] = 0.0f;
    }
    linear_weight w;
    w.k = k;
    w.act = act_format_fp8_token;
    std::vector<float> xq(x.size());
    cpu_quantize_activations(w, x.data(), rows, xq.data());
    std::vector<uint8_t> want(x.size());
    for (int64_t r = 0; r < rows; ++r) {
        float a = 0;
        for (int64_t j = 0; j < k; ++j) a = std::max(a, std::fabs(x[size_t(r * k + j)]));
        const float s = a > 0 ? a / 448.0f : 1.0f;
        for (int64_t j = 0; j < k; ++j)
            want[size_t(r * k + j)] = e4m3_from_float_sat(x[size_t(r * k + j)] / s);
    }
    cuda_backend gpu;
    test::device_copy<float> xd(xq);
    test::device_buffer<uint8_t> codes(x.size());
    test::device_buffer<float> scales{size_t(rows)};
    NIBBLE_CUDA_CHECK(cuda_row_quantize_e4m3(xd.p, rows, k, codes.p, scales.p, gpu.stream()));
    NIBBLE_CUDA_CHECK(cudaStreamSynchronize(gpu.stream()));
    std::vector<uint8_t> got(x.size());
    std::vector<float> got_s(static_cast<size_t>(rows));
    NIBBLE_CUDA_CHECK(cudaMemcpy(got.data(), codes.p, got.size(), cudaMemcpyDeviceToHost));
    NIBBLE_CUDA_CHECK(
        cudaMemcpy(got_s.data(), scales.p, got_s.size() * sizeof(float), cudaMemcpyDeviceToHost));
    EXPECT_EQ(got, want) << "per-token codes";
    int64_t bad = 0;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < k; ++j) {
            const double v = double(e4m3_to_float(got[size_t(r * k + j)])) * got_s[size_t(r)];
            const double ref = xq[size_t(r * k + j)];
            if (!(std::fabs(v - ref) <= 0x1p-22 * std::fabs(ref))) ++bad;
        }
    EXPECT_EQ(bad, 0) << "e4m3(code) · row scale vs the fake-quantized activations";

    w.act = act_format_fp8_static;
    w.fp8_input_scale = 5.0f / 448.0f;
    const std::vector<float> xs = randn(size_t(rows * k), 78, 3.0f);
    cpu_quantize_activations(w, xs.data(), rows, xq.data());
    for (size_t i = 0; i < xs.size(); ++i) want[i] = e4m3_from_float_sat(xs[i] / w.fp8_input_scale);
    test::device_copy<float> xsd(xq);
    NIBBLE_CUDA_CHECK(
        cuda_scale_to_e4m3(xsd.p, rows * k, float(1.0 / double(w.fp8_input_scale)), codes.p, gpu.stream()));
    NIBBLE_CUDA_CHECK(cudaStreamSynchronize(gpu.stream()));
    NIBBLE_CUDA_CHECK(cudaMemcpy(got.data(), codes.p, got.size(), cudaMemcpyDeviceToHost));
    EXPECT_EQ(got, want) << "static codes";
}
