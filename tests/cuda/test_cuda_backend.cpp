// cuda_backend against cpu_backend (the reference): every op on fresh random inputs with odd sizes, then
// every bundled model end to end. SKIPPED without a GPU.
//
// Bounds (stated, per op):
//   add, gather_rows, activation fake quantization (W4A4, FP8 token / group / static): bit-exact.
//   rms_norm, silu_mul: 2e-6 relative + 1e-6 absolute (float32 order of the row sum, expf vs std::exp).
//   rope_and_cache: 1e-5 absolute (unit-scale heads; cosf/sinf vs std::cos/std::sin), for KV caches in
//     f32, bf16 and fp8 (the stored bytes: bit-exact, test_attention.cpp).
//   attention: 1e-5 absolute (values of unit scale; split-KV online softmax in exp2 vs two-pass exp) over
//     the same stored K/V (f32, bf16, fp8), hd 64 and 128, 1 to 300 tokens, mixed steps; a token at
//     position 0 returns its stored V bit for bit.
//   linear, every format: |gpu - cpu| <= 1e-5 · Σ_j |x_j·w_j| + 1e-6 per output (float32 summation order:
//     cuBLAS / the NVFP4 GEMV vs the CPU's 8-way dot; the weights decode bit-exactly); FP8 W8A8 layers that
//     ran on the FP8 tensor cores (cuBLASLt, more than 16 rows) 2^-10 · Σ|x·w| + 1e-6 (their narrower
//     accumulator: test_prefill_linear.cpp).
//   moe: 1e-4 absolute (outputs of unit scale).
//   end to end (bundled models): last-position logits max |Δ| <= 2e-3 (weight-only / BF16; 3e-2 and mean
//     5e-3 with a BF16 KV cache on both sides) or the golden test's activation-quantization bounds (max 1.0,
//     mean 0.25: a value that float32 noise moves across a rounding boundary takes the other code); 32
//     greedy tokens equal, or a divergence only where the CPU's top-2 margin is below 1e-3 (3e-2 with BF16
//     KV; with activation quantization 1.0, the logit bound: with routed experts a flipped activation
//     code can also flip an expert choice, seen: a divergence at a margin of 0.49, FP8-dynamic MoE).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/formats.h"
#include "core/quant.h"
#include "cpu/cpu_backend.h"
#include "cuda/backend_ops.h"
#include "cuda/cuda_backend.h"
#include "cuda/linear_mma.h"
#include "cuda/linear_stream.h"
#include "cuda_test_util.h"
#include "engine/runner.h"
#include "loader/checkpoint.h"

using namespace nibble;

namespace {

using test::randn;

tensor_view view_of(const std::vector<float>& v, std::vector<int64_t> shape) {
    tensor_view t;
    t.type = dtype_f32;
    t.shape = std::move(shape);
    t.data = reinterpret_cast<const uint8_t*>(v.data());
    t.n_bytes = v.size() * sizeof(float);
    return t;
}

tensor_view view_of(const std::vector<uint8_t>& v, dtype ty, std::vector<int64_t> shape) {
    tensor_view t;
    t.type = ty;
    t.shape = std::move(shape);
    t.data = v.data();
    t.n_bytes = v.size();
    return t;
}

// Device copy of host floats in backend memory.
float* dev(cuda_backend& b, const std::vector<float>& h) {
    float* p = b.alloc(h.size());
    b.upload(h.data(), h.size(), p);
    return p;
}

std::vector<float> host(cuda_backend& b, const float* p, size_t n) {
    std::vector<float> h(n);
    b.to_host(p, n, h.data());
    return h;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
    return m;
}

// A linear layer with its host storage.
struct test_linear {
    linear_weight w;
    std::vector<uint8_t> packed, scales, bias_bytes;
    std::vector<float> dense;
};

test_linear make_linear(weight_format f, act_format act, int64_t n, int64_t k, uint32_t seed,
                        nvfp4_convention conv = nvfp4_convention_ct,
                        fp8_granularity gran = fp8_granularity_tensor, dtype dense_type = dtype_f32,
                        bool bias = false) {
    test_linear t;
    t.w.name = "test";
    t.w.format = f;
    t.w.act = act;
    t.w.n = n;
    t.w.k = k;
    std::vector<float> w = randn(size_t(n * k), seed, 0.1f);
    switch (f) {
        case weight_format_dense:
            if (dense_type == dtype_f32) {
                t.dense = w;
                t.w.weight = view_of(t.dense, {n, k});
            } else {
                t.packed.resize(size_t(n * k) * 2);
                for (size_t i = 0; i < w.size(); ++i) {
                    uint16_t h = dense_type == dtype_bf16 ? bf16_from_float(w[i]) : f16_from_float(w[i]);
                    std::memcpy(&t.packed[2 * i], &h, 2);
                }
                t.w.weight = view_of(t.packed, dense_type, {n, k});
            }
            break;
        case weight_format_nvfp4:
            t.packed.resize(size_t(n * k / 2));
            t.scales.resize(size_t(n * k / 16));
            t.w.convention = conv;
            t.w.global_scale = nvfp4_quantize_auto(w.data(), n, k, conv, t.packed.data(), t.scales.data());
            t.w.weight = view_of(t.packed, dtype_u8, {n, k / 2});
            t.w.block_scale = view_of(t.scales, dtype_f8_e4m3, {n, k / 16});
            break;
        case weight_format_mxfp4:
            t.packed.resize(size_t(n * k / 2));
            t.scales.resize(size_t(n * k / 32));
            mxfp4_quantize(w.data(), n, k, t.packed.data(), t.scales.data());
            t.w.weight = view_of(t.packed, dtype_u8, {n, k / 2});
            t.w.block_scale = view_of(t.scales, dtype_u8, {n, k / 32});
            break;
        case weight_format_fp8:
            t.packed.resize(size_t(n * k));
            t.w.fp8_gran = gran;
            t.w.fp8_scales.resize(size_t(fp8_scale_count(gran, n, k)));
            fp8_quantize(w.data(), n, k, gran, dtype_f32, t.packed.data(), t.w.fp8_scales.data());
            t.w.weight = view_of(t.packed, dtype_f8_e4m3, {n, k});
            break;
    }
    if (bias) {
        t.bias_bytes.resize(size_t(n) * 2);
        std::vector<float> bv = randn(size_t(n), seed + 7);
        for (int64_t i = 0; i < n; ++i) {
            uint16_t h = bf16_from_float(bv[size_t(i)]);
            std::memcpy(&t.bias_bytes[size_t(2 * i)], &h, 2);
        }
        t.w.bias = view_of(t.bias_bytes, dtype_bf16, {n});
    }
    return t;
}

// Whether a decode batch of `rows` over w takes the tensor-core GEMV (linear_mma.h: m 3-16).
bool mma_rows(const linear_weight& w, int64_t rows) {
    const bool fits = (w.format == weight_format_nvfp4 && w.k % 128 == 0) ||
                      (w.format == weight_format_fp8 && w.fp8_gran != fp8_granularity_block && w.k % 64 == 0);
    return rows >= 3 && rows <= 16 && fits;
}
// ... over a weight-only w, on FP16 activations (2^-11 relative; fake-quantized activations go in as
// hi + lo, ~2^-21).
bool mma_path(const linear_weight& w, int64_t rows) {
    return mma_rows(w, rows) && w.act == act_format_none;
}

// A linear layer's scheme, for the tests of fused launches.
struct linear_scheme {
    weight_format f;
    act_format act;
    fp8_granularity gran;
    dtype dense;
    const char* name;
};

// Σ_j |a_j · w_j| per output [i, r] of t over the input rows a [rows, t.w.k], as the layer quantizes them.
std::vector<double> sum_abs_xw(const test_linear& t, const std::vector<float>& a, int64_t rows) {
    const int64_t k = t.w.k;
    std::vector<float> aq(a.size()), row(static_cast<size_t>(k));
    cpu_quantize_activations(t.w, a.data(), rows, aq.data());
    std::vector<double> out(size_t(rows * t.w.n));
    for (int64_t r = 0; r < t.w.n; ++r) {
        cpu_decode_row(t.w, r, row.data());
        for (int64_t i = 0; i < rows; ++i) {
            double acc = 0;
            for (int64_t j = 0; j < k; ++j) acc += std::fabs(double(aq[size_t(i * k + j)]) * row[size_t(j)]);
            out[size_t(i * t.w.n + r)] = acc;
        }
    }
    return out;
}

// Runs one linear on both backends over `rows` random rows and checks the stated bound.
void check_linear(const test_linear& t, int64_t rows, uint32_t seed, const char* what) {
    cpu_backend cpu;
    cuda_backend gpu;
    const int64_t n = t.w.n, k = t.w.k;
    std::vector<float> x = randn(size_t(rows * k), seed);
    if (t.w.act == act_format_nvfp4) {
        float amax = 0;
        for (float v : x) amax = std::max(amax, std::fabs(v));
        const_cast<test_linear&>(t).w.input_global_scale = nvfp4_global_scale(amax, nvfp4_convention_ct);
    }
    if (t.w.act == act_format_fp8_static) const_cast<test_linear&>(t).w.fp8_input_scale = 4.0f / 448.0f;
    std::vector<float> want(size_t(rows * n));
    cpu.linear(x.data(), rows, t.w, want.data());
    float* xd = dev(gpu, x);
    float* yd = gpu.alloc(size_t(rows * n));
    gpu.linear(xd, rows, t.w, yd);
    std::vector<float> got = host(gpu, yd, size_t(rows * n));
    // Fake-quantized activations: again with the quantization fused into the weight-streaming kernel (or
    // not, whichever the default was); both must meet the bound.
    std::vector<float> got_fused;
    if (t.w.act != act_format_none) {
        gpu.set_fused_act(!gpu.fused_act());
        gpu.linear(xd, rows, t.w, yd);
        got_fused = host(gpu, yd, size_t(rows * n));
        gpu.set_fused_act(!gpu.fused_act());
    }
    // Bound: Σ|x_j w_j| per output, on the activations the layer actually multiplies; times 1e-5, or 5e-4
    // where rows > 16 of a weight-only NVFP4 / FP8 (tensor, channel) layer take FP16 activations (2^-11),
    // or 2^-10 where the FP8 GEMM ran (Hopper's FP8 accumulator).
    const bool f16 = (rows > 16 && t.w.act == act_format_none &&
                      (t.w.format == weight_format_nvfp4 ||
                       (t.w.format == weight_format_fp8 && t.w.fp8_gran != fp8_granularity_block))) ||
                     mma_path(t.w, rows);
    // Weight-only NVFP4 at m <= 2 on the weight-streaming kernel in its FP16-activation mode (the default,
    // cuda_linear_stream_fp16_x): 5e-3 Σ|x w| (x's 2^-11 and 8 FP16 roundings of the block's partial
    // sums, ~9 · 2^-11).
    const bool half_able = t.w.format == weight_format_nvfp4 && t.w.act == act_format_none && rows <= 2 &&
                           cuda_linear_stream_supports(cuda_stream_nvfp4, k);
    const double rel_half = 5e-3;
    const double rel = gpu.fp8_gemm_linears() > 0                 ? 0x1p-10
                       : half_able && cuda_linear_stream_fp16_x() ? rel_half
                       : f16                                      ? 5e-4
                                                                  : 1e-5;
    std::vector<float> xq(x.size()), row(static_cast<size_t>(k));
    cpu_quantize_activations(t.w, x.data(), rows, xq.data());
    std::vector<double> sum_xw(want.size());  // Σ|x_j w_j| of output [i, r]
    for (int64_t r = 0; r < n; ++r) {
        cpu_decode_row(t.w, r, row.data());
        for (int64_t i = 0; i < rows; ++i) {
            double s = 0;
            for (int64_t j = 0; j < k; ++j) s += std::fabs(double(xq[size_t(i * k + j)]) * row[size_t(j)]);
            sum_xw[size_t(i * n + r)] = s;
        }
    }
    // |out - want| <= bound · Σ|x w| + 1e-6 for every output of one GPU run.
    auto check = [&](const std::vector<float>& out, double bound, const char* mode) {
        int bad = 0;
        double worst = 0;
        for (size_t o = 0; o < out.size(); ++o) {
            const double d = std::fabs(double(out[o]) - want[o]);
            worst = std::max(worst, d / (sum_xw[o] + 1e-30));
            if (d > bound * sum_xw[o] + 1e-6) ++bad;
        }
        EXPECT_EQ(bad, 0) << what << " rows " << rows << mode << ": worst relative error " << worst;
        std::printf("linear %-28s rows %3lld%s: worst |d| / sum|x w| = %.2g\n", what, (long long)rows, mode,
                    worst);
    };
    check(got, rel, "");
    if (!got_fused.empty())
        check(got_fused, rel, gpu.fused_act() ? " (quantize launch)" : " (fused quantize)");
    // The tensor-core GEMV with the other number of blocks per SM (cuda_linear_mma_blocks_per_sm): the same
    // bound.
    if (mma_rows(t.w, rows)) {
        const int was = cuda_linear_mma_blocks_per_sm();
        cuda_linear_mma_set_blocks_per_sm(was == 3 ? 2 : 3);
        gpu.linear(xd, rows, t.w, yd);
        cuda_linear_mma_set_blocks_per_sm(was);
        check(host(gpu, yd, size_t(rows * n)), rel, was == 3 ? " (mma, 2 blocks/SM)" : " (mma, 3 blocks/SM)");
    }
    // The FP16-activation mode the other way round (FP32 activations: 1e-5).
    if (half_able) {
        const bool was = cuda_linear_stream_fp16_x();
        cuda_linear_stream_set_fp16_x(!was);
        gpu.linear(xd, rows, t.w, yd);
        cuda_linear_stream_set_fp16_x(was);
        check(host(gpu, yd, size_t(rows * n)), was ? 1e-5 : rel_half,
              was ? " (FP32 x)" : " (FP16 x, HFMA2 blocks)");
    }
}

// One decode step of slots 0 .. batch - 1 (token 100 + 7 · step + slot), each at its next position
// (next[slot], advanced), as the step tests below issue them.
struct decode_batch {
    std::vector<int32_t> slots, ids, pos;
};
decode_batch next_decode_batch(int step, int32_t batch, std::vector<int32_t>& next) {
    decode_batch d;
    for (int32_t s = 0; s < batch; ++s) {
        d.slots.push_back(s);
        d.ids.push_back(100 + 7 * step + s);
        d.pos.push_back(next[size_t(s)]++);
    }
    return d;
}

}  // namespace

TEST(cuda_backend, elementwise_ops) {
    REQUIRE_GPU();
    cpu_backend cpu;
    cuda_backend gpu;
    const int64_t rows = 7, cols = 301;
    std::vector<float> x = randn(size_t(rows * cols), 1), y = randn(size_t(rows * cols), 2);
    std::vector<uint8_t> wb(size_t(cols) * 2);
    std::vector<float> wf = randn(size_t(cols), 3);
    for (int64_t j = 0; j < cols; ++j) {
        uint16_t h = bf16_from_float(wf[size_t(j)]);
        std::memcpy(&wb[size_t(2 * j)], &h, 2);
    }
    tensor_view w = view_of(wb, dtype_bf16, {cols});
    float* xd = dev(gpu, x);
    float* yd = dev(gpu, y);
    float* od = gpu.alloc(x.size());
    std::vector<float> want(x.size());

    cpu.rms_norm(x.data(), w, rows, cols, 1e-6f, want.data());
    gpu.rms_norm(xd, w, rows, cols, 1e-6f, od);
    std::vector<float> got = host(gpu, od, x.size());
    for (size_t i = 0; i < x.size(); ++i)
        ASSERT_NEAR(got[i], want[i], 2e-6 * std::fabs(want[i]) + 1e-6) << "rms_norm " << i;

    cpu.silu_mul(x.data(), y.data(), int64_t(x.size()), want.data());
    gpu.silu_mul(xd, yd, int64_t(x.size()), od);
    got = host(gpu, od, x.size());
    for (size_t i = 0; i < x.size(); ++i)
        ASSERT_NEAR(got[i], want[i], 2e-6 * std::fabs(want[i]) + 1e-6) << "silu_mul " << i;

    std::vector<float> xs = x;
    cpu.add(xs.data(), y.data(), int64_t(x.size()));
    gpu.add(xd, yd, int64_t(x.size()));
    EXPECT_EQ(host(gpu, xd, x.size()), xs) << "add";

    std::vector<int32_t> idx = {3, 0, 6, 6, 1};
    std::vector<float> gw(idx.size() * size_t(cols));
    cpu.gather_rows(xs.data(), cols, idx, gw.data());
    gpu.gather_rows(xd, cols, idx, od);
    EXPECT_EQ(host(gpu, od, gw.size()), gw) << "gather_rows";
}

TEST(cuda_backend, embed) {
    REQUIRE_GPU();
    cpu_backend cpu;
    cuda_backend gpu;
    const int64_t vocab = 50, h = 37;
    std::vector<float> tf = randn(size_t(vocab * h), 4);
    std::vector<uint8_t> tb(tf.size() * 2);
    for (size_t i = 0; i < tf.size(); ++i) {
        uint16_t v = bf16_from_float(tf[i]);
        std::memcpy(&tb[2 * i], &v, 2);
    }
    std::vector<int32_t> ids = {0, 49, 7, 7, 13}, slots(5, 0), pos = {0, 1, 2, 3, 4};
    step_tokens s{ids, slots, pos};
    for (tensor_view t : {view_of(tf, {vocab, h}), view_of(tb, dtype_bf16, {vocab, h})}) {
        std::vector<float> want(ids.size() * size_t(h));
        cpu.embed(t, s, want.data());
        float* od = gpu.alloc(want.size());
        gpu.embed(t, s, od);
        EXPECT_EQ(host(gpu, od, want.size()), want);
    }
}

TEST(cuda_backend, rope_cache_attention) {
    REQUIRE_GPU();
    for (kv_cache_dtype dt : {kv_cache_f32, kv_cache_bf16, kv_cache_fp8})
        for (int64_t hd : {64, 128}) {
            model_config c;
            c.n_layers = 2;
            c.n_heads = 6;
            c.n_kv_heads = 2;
            c.head_dim = hd;
            c.hidden_size = 6 * hd;
            c.rope_theta = 1e6f;
            c.rms_norm_eps = 1e-6f;
            cpu_backend cpu;
            cuda_backend gpu;
            const int32_t max_ctx = 600;
            // A paged pool with spare blocks and the same shuffled block tables on both backends (so that
            // every position is found through its table; the GPU uploads them with the first op).
            const int32_t bs = 16, bps = kv_blocks_for(max_ctx, bs), n_blocks = 2 * bps + 7;
            cpu.kv_init(c, kv_cache_shape{2, max_ctx, bs, n_blocks}, dt);
            gpu.kv_init(c, kv_cache_shape{2, max_ctx, bs, n_blocks}, dt);
            std::vector<int32_t> perm(size_t(n_blocks), 0);
            for (size_t i = 0; i < perm.size(); ++i) perm[i] = int32_t(i);
            std::shuffle(perm.begin(), perm.end(), std::mt19937(int(hd)));
            for (int32_t slot = 0; slot < 2; ++slot) {
                const std::span<const int32_t> table(perm.data() + slot * bps, size_t(bps));
                cpu.set_block_table(slot, table);
                gpu.set_block_table(slot, table);
            }
            EXPECT_EQ(gpu.kv_dtype(), dt);
            std::vector<float> qn = randn(size_t(hd), 5, 0.3f), kn = randn(size_t(hd), 6, 0.3f);
            for (float& v : qn) v += 1.0f;
            for (float& v : kn) v += 1.0f;
            layer_weights l;
            l.q_norm = view_of(qn, {hd});
            l.k_norm = view_of(kn, {hd});
            // A 270-token prefill of slot 0, 5 tokens of slot 1, then a decode step of both slots; a mixed
            // step (30 prefill tokens of slot 1 and a decode of slot 0); a lone decode; a 300-token prefill
            // chunk of slot 0 at 273 and a decode after it (past 512 keys: several key ranges). On layer 1
            // with Qwen3 q/k norms and on layer 0 without.
            struct step {
                std::vector<int32_t> slots, pos;
            };
            std::vector<step> steps(7);
            for (int32_t i = 0; i < 270; ++i) steps[0].slots.push_back(0), steps[0].pos.push_back(i);
            for (int32_t i = 0; i < 5; ++i) steps[1].slots.push_back(1), steps[1].pos.push_back(i);
            steps[2].slots = {0, 1};
            steps[2].pos = {270, 5};
            for (int32_t i = 0; i < 30; ++i) steps[3].slots.push_back(1), steps[3].pos.push_back(6 + i);
            steps[3].slots.push_back(0), steps[3].pos.push_back(271);
            steps[4].slots = {0};
            steps[4].pos = {272};
            for (int32_t i = 0; i < 300; ++i) steps[5].slots.push_back(0), steps[5].pos.push_back(273 + i);
            steps[6].slots = {0};
            steps[6].pos = {573};
            uint32_t seed = 100;
            for (int32_t layer : {1, 0}) {
                const layer_weights lw = layer == 1 ? l : layer_weights{};
                for (const step& st : steps) {
                    const size_t T = st.slots.size(), qd = size_t(6 * hd), kd = size_t(2 * hd);
                    std::vector<int32_t> ids(T, 0);
                    step_tokens s{ids, st.slots, st.pos};
                    std::vector<float> q = randn(T * qd, seed++), k = randn(T * kd, seed++),
                                       v = randn(T * kd, seed++);
                    float* qd_ = dev(gpu, q);
                    float* kd_ = dev(gpu, k);
                    float* vd_ = dev(gpu, v);
                    cpu.rope_and_cache(c, layer, lw, s, q.data(), k.data(), v.data());
                    gpu.rope_and_cache(c, layer, lw, s, qd_, kd_, vd_);
                    const std::vector<float> gpu_k = host(gpu, kd_, k.size());
                    EXPECT_LE(max_abs_diff(host(gpu, qd_, q.size()), q), 1e-5) << "rope q, layer " << layer;
                    EXPECT_LE(max_abs_diff(gpu_k, k), 1e-5) << "rope k, layer " << layer;
                    // A rounded cache turns the rotations' float32 noise into whole BF16 / FP8 steps where a
                    // value sits at a rounding boundary: there the CPU's cache takes the GPU's rotated k
                    // (both round it the same way, which the attention comparison then checks).
                    if (dt != kv_cache_f32) cpu.kv_store(layer, s, gpu_k.data(), v.data());
                    std::vector<float> want(T * qd);
                    cpu.attention(c, layer, s, q.data(), want.data());
                    float* od = gpu.alloc(want.size());
                    // Attention from the CPU's q, so that only attention's own error is measured.
                    gpu.upload(q.data(), q.size(), qd_);
                    gpu.attention(c, layer, s, qd_, od);
                    const std::vector<float> got = host(gpu, od, want.size());
                    const double d = max_abs_diff(got, want);
                    // Steps of 64+ tokens over a BF16 / FP8 cache take the tensor-core prefill attention
                    // (q and p as BF16 hi + lo: its op test's 1e-4, prefill_tensor_cores_match_cpu).
                    const bool tc = T >= 64 && dt != kv_cache_f32 && cuda_attention_prefill_enabled();
                    EXPECT_LE(d, tc ? 1e-4 : 1e-5)
                        << kv_cache_dtype_name(dt) << " hd " << hd << ": attention, layer " << layer << ", "
                        << T << " tokens";
                    if (st.pos[0] == 0) {  // one key: the stored V, bit for bit
                        EXPECT_TRUE(std::equal(got.begin(), got.begin() + ptrdiff_t(qd), want.begin()))
                            << kv_cache_dtype_name(dt) << " hd " << hd << ": attention over one key, layer "
                            << layer;
                    }
                }
            }
        }
}

TEST(cuda_backend, activation_fake_quantization_is_bit_exact) {
    REQUIRE_GPU();
    cuda_backend gpu;
    const int64_t rows = 5, k = 400;  // 400 = 3 full 128-groups + a partial one
    std::vector<float> x = randn(size_t(rows * k), 9, 3.0f);
    for (int64_t j = 0; j < 16; ++j) x[size_t(j)] = 0.0f;  // an all-zero block / group start
    float* xd = dev(gpu, x);
    float* od = gpu.alloc(x.size());
    std::vector<float> want(x.size());
    linear_weight w;
    w.k = k;
    for (act_format a :
         {act_format_nvfp4, act_format_fp8_token, act_format_fp8_group, act_format_fp8_static}) {
        w.act = a;
        w.input_global_scale = 2688.0f / 9.0f;
        w.fp8_input_scale = 5.0f / 448.0f;
        cpu_quantize_activations(w, x.data(), rows, want.data());
        if (a == act_format_nvfp4)
            NIBBLE_CUDA_CHECK(cuda_nvfp4_fake_quantize(xd, rows, k, w.input_global_scale, od, gpu.stream()));
        else if (a == act_format_fp8_static)
            NIBBLE_CUDA_CHECK(
                cuda_fp8_static_fake_quantize(xd, rows * k, w.fp8_input_scale, od, gpu.stream()));
        else
            NIBBLE_CUDA_CHECK(
                cuda_fp8_fake_quantize(xd, rows, k, a == act_format_fp8_token ? k : 128, od, gpu.stream()));
        EXPECT_EQ(host(gpu, od, x.size()), want) << act_format_name(a);
    }
}

TEST(cuda_backend, linear_every_format) {
    REQUIRE_GPU();
    uint32_t seed = 200;
    // k = 160: the NVFP4 GEMV's 16-byte path (k % 64 != 0); 4096: the weight-streaming kernel for every
    // format; 12288 with 16 rows: x staged in several k-chunks. Rows 17 and 40: the GEMM paths.
    struct shape {
        int64_t n, k;
        std::vector<int64_t> rows;
    };
    for (const shape& sh :
         {shape{67, 160, {1, 5, 16, 17, 40}}, shape{300, 4096, {1, 3, 8}}, shape{45, 12288, {2, 16}},
          shape{256, 256, {1, 6, 8, 9}}, shape{128, 512, {6, 12}}})
        for (int64_t rows : sh.rows) {
            const int64_t n = sh.n, k = sh.k;
            check_linear(make_linear(weight_format_dense, act_format_none, n, k, seed++), rows, seed++,
                         "dense f32");
            check_linear(make_linear(weight_format_dense, act_format_none, n, k, seed++, nvfp4_convention_ct,
                                     fp8_granularity_tensor, dtype_bf16, true),
                         rows, seed++, "dense bf16 + bias");
            check_linear(make_linear(weight_format_dense, act_format_none, n, k, seed++, nvfp4_convention_ct,
                                     fp8_granularity_tensor, dtype_f16),
                         rows, seed++, "dense f16");
            check_linear(make_linear(weight_format_nvfp4, act_format_none, n, k, seed++), rows, seed++,
                         "nvfp4a16 ct");
            check_linear(make_linear(weight_format_nvfp4, act_format_none, n, k, seed++,
                                     nvfp4_convention_modelopt, fp8_granularity_tensor, dtype_f32, true),
                         rows, seed++, "nvfp4a16 modelopt + bias");
            check_linear(make_linear(weight_format_nvfp4, act_format_nvfp4, n, k, seed++), rows, seed++,
                         "nvfp4 w4a4");
            check_linear(make_linear(weight_format_mxfp4, act_format_none, n, k, seed++), rows, seed++,
                         "mxfp4");
            check_linear(make_linear(weight_format_fp8, act_format_fp8_token, n, k, seed++,
                                     nvfp4_convention_ct, fp8_granularity_channel),
                         rows, seed++, "fp8 channel, per token");
            check_linear(make_linear(weight_format_fp8, act_format_fp8_group, 200, k, seed++,
                                     nvfp4_convention_ct, fp8_granularity_block),
                         rows, seed++, "fp8 block, per group");
            check_linear(make_linear(weight_format_fp8, act_format_fp8_static, n, k, seed++), rows, seed++,
                         "fp8 tensor, static");
            check_linear(make_linear(weight_format_fp8, act_format_none, n, k, seed++, nvfp4_convention_ct,
                                     fp8_granularity_block),
                         rows, seed++, "fp8 block, weight-only");
        }
}

// One launch for q/k/v and for gate/up + SiLU (cuda_linear_stream_parts / _swiglu; rows > 16: the separate
// tensor-core GEMMs) against the CPU's separate ops. Bounds: per output 1e-5 · Σ|x w| + 1e-6 (as linear);
// SwiGLU: 1e-5 · (Σ|x w_g| · |u| · 1.1 + |silu(g)| · Σ|x w_u|) + 1e-6 (|silu'| <= 1.1).
TEST(cuda_backend, fused_qkv_and_swiglu) {
    REQUIRE_GPU();
    uint32_t seed = 900;
    const linear_scheme schemes[] = {
        {weight_format_nvfp4, act_format_none, fp8_granularity_tensor, dtype_f32, "nvfp4a16"},
        {weight_format_nvfp4, act_format_nvfp4, fp8_granularity_tensor, dtype_f32, "nvfp4 w4a4"},
        {weight_format_fp8, act_format_fp8_token, fp8_granularity_channel, dtype_f32, "fp8 channel"},
        {weight_format_fp8, act_format_none, fp8_granularity_block, dtype_f32, "fp8 block"},
        {weight_format_dense, act_format_none, fp8_granularity_tensor, dtype_bf16, "bf16"}};
    const int64_t k = 512;
    for (const linear_scheme& sc : schemes)
        for (int64_t rows : {1, 3, 16, 17, 150})
            // Fake-quantized activations: with the quantization as a separate launch, then fused into the
            // weight-streaming kernel (cuda_backend::set_fused_act).
            for (int fused = 0; fused < (sc.act != act_format_none ? 2 : 1); ++fused) {
                // Rows > 16 over NVFP4 weight-only: the tensor-core GEMM on FP16 activations (2^-11 relative,
                // cuda_row_scale_f16); every other case here keeps 1e-5.
                // Rows 3-16 over weight-only NVFP4 / FP8 (not block-scaled): the tensor-core GEMV, FP16
                // activations too.
                const bool mma = rows >= 3 && rows <= 16 && sc.act == act_format_none &&
                                 (sc.f == weight_format_nvfp4 ||
                                  (sc.f == weight_format_fp8 && sc.gran != fp8_granularity_block));
                // Rows <= 2 over weight-only NVFP4: the FP16-activation mode of the weight-streaming
                // kernel (cuda_linear_stream_fp16_x, 5e-3).
                const bool half = rows <= 2 && sc.f == weight_format_nvfp4 && sc.act == act_format_none &&
                                  cuda_linear_stream_fp16_x();
                const double rel0 =
                    half                                                                             ? 5e-3
                    : (rows > 16 && sc.f == weight_format_nvfp4 && sc.act == act_format_none) || mma ? 5e-4
                                                                                                     : 1e-5;
                auto mk = [&](int64_t n) {
                    return make_linear(sc.f, sc.act, n, k, seed++, nvfp4_convention_ct, sc.gran, sc.dense);
                };
                test_linear q = mk(72), kk = mk(24), v = mk(24), g = mk(136), u = mk(136);
                std::vector<float> x = randn(size_t(rows * k), seed++);
                float amax = 0;
                for (float e : x) amax = std::max(amax, std::fabs(e));
                for (test_linear* t : {&q, &kk, &v, &g, &u})
                    t->w.input_global_scale = nvfp4_global_scale(amax, nvfp4_convention_ct);
                cpu_backend cpu;
                cuda_backend gpu;
                gpu.set_fused_act(fused == 1);
                float* xd = dev(gpu, x);
                auto sums = [&](const test_linear& t) { return sum_abs_xw(t, x, rows); };
                const test_linear* qkv[3] = {&q, &kk, &v};
                std::vector<std::vector<float>> want(3);
                float* outs[3];
                for (int i = 0; i < 3; ++i) {
                    want[size_t(i)].resize(size_t(rows * qkv[i]->w.n));
                    outs[i] = gpu.alloc(want[size_t(i)].size());
                }
                cpu.linear_qkv(x.data(), rows, q.w, kk.w, v.w, want[0].data(), want[1].data(),
                               want[2].data());
                // FP8 W8A8 rows > 16 run on the FP8 GEMM (2^-10: Hopper's FP8 accumulator,
                // test_prefill_linear).
                uint64_t fp8_before = gpu.fp8_gemm_linears();
                gpu.linear_qkv(xd, rows, q.w, kk.w, v.w, outs[0], outs[1], outs[2]);
                double rel = gpu.fp8_gemm_linears() > fp8_before ? 0x1p-10 : rel0;
                for (int i = 0; i < 3; ++i) {
                    std::vector<float> got = host(gpu, outs[i], want[size_t(i)].size());
                    std::vector<double> s = sums(*qkv[i]);
                    int bad = 0;
                    for (size_t j = 0; j < got.size(); ++j)
                        if (std::fabs(double(got[j]) - want[size_t(i)][j]) > rel * s[j] + 1e-6) ++bad;
                    EXPECT_EQ(bad, 0)
                        << sc.name << " qkv part " << i << " rows " << rows << " fused " << fused;
                }
                const size_t ng = size_t(rows * 136);
                std::vector<float> wg(ng), wu(ng), gl(ng), ul(ng);
                cpu.linear_swiglu(x.data(), rows, g.w, u.w, wg.data(), wu.data());
                cpu.linear(x.data(), rows, g.w, gl.data());
                cpu.linear(x.data(), rows, u.w, ul.data());
                float* od = gpu.alloc(ng);
                float* us = gpu.alloc(ng);
                fp8_before = gpu.fp8_gemm_linears();
                gpu.linear_swiglu(xd, rows, g.w, u.w, od, us);
                rel = gpu.fp8_gemm_linears() > fp8_before ? 0x1p-10 : rel0;
                std::vector<float> got = host(gpu, od, ng);
                std::vector<double> sg = sums(g), su = sums(u);
                int bad = 0;
                for (size_t j = 0; j < ng; ++j) {
                    const double silu = gl[j] / (1.0 + std::exp(-double(gl[j])));
                    const double bound =
                        rel * (sg[j] * std::fabs(ul[j]) * 1.1 + std::fabs(silu) * su[j]) + 1e-6;
                    if (std::fabs(double(got[j]) - wg[j]) > bound) ++bad;
                }
                EXPECT_EQ(bad, 0) << sc.name << " swiglu rows " << rows << " fused " << fused;
            }
}

// RMSNorm fused into the q/k/v and gate/up linears and the residual add into the o / down linears
// (backend.h: norm_linear_qkv, norm_linear_swiglu, linear_add; cuda_backend fuses them into the
// weight-streaming kernel at rows <= 2, else composes the separate ops), against the CPU's composition of
// the separate ops. Bounds as in fused_qkv_and_swiglu over h = rms_norm(x) · w (the fused norm sums x² in
// another order: float32 rounding, far inside them); the residual add itself is the same float add.
TEST(cuda_backend, norms_and_residual_adds_fused_into_linears) {
    REQUIRE_GPU();
    uint32_t seed = 1300;
    const linear_scheme schemes[] = {
        {weight_format_nvfp4, act_format_none, fp8_granularity_tensor, dtype_f32, "nvfp4a16"},
        {weight_format_nvfp4, act_format_nvfp4, fp8_granularity_tensor, dtype_f32, "nvfp4 w4a4"},
        {weight_format_fp8, act_format_fp8_token, fp8_granularity_channel, dtype_f32,
         "fp8 channel, per token"},
        {weight_format_fp8, act_format_fp8_static, fp8_granularity_tensor, dtype_f32, "fp8 tensor, static"},
        {weight_format_fp8, act_format_none, fp8_granularity_block, dtype_f32, "fp8 block"},
        {weight_format_dense, act_format_none, fp8_granularity_tensor, dtype_bf16, "bf16"}};
    const int64_t H = 512, I = 256;
    const float eps = 1e-6f;
    for (const linear_scheme& sc : schemes)
        for (int64_t rows : {1, 2, 3})
            for (int fused_act = 0; fused_act < (sc.act != act_format_none ? 2 : 1); ++fused_act) {
                cpu_backend cpu;
                cuda_backend gpu;
                gpu.set_fused_act(fused_act == 1);
                EXPECT_EQ(gpu.fuses_norms(rows), rows <= 2);
                const bool mma = rows >= 3 && sc.act == act_format_none &&
                                 (sc.f == weight_format_nvfp4 ||
                                  (sc.f == weight_format_fp8 && sc.gran != fp8_granularity_block));
                const bool half = rows <= 2 && sc.f == weight_format_nvfp4 && sc.act == act_format_none &&
                                  cuda_linear_stream_fp16_x();
                const double rel = half ? 5e-3 : mma ? 5e-4 : 1e-5;
                auto mk = [&](int64_t n, int64_t k) {
                    return make_linear(sc.f, sc.act, n, k, seed++, nvfp4_convention_ct, sc.gran, sc.dense);
                };
                test_linear q = mk(72, H), kk = mk(24, H), v = mk(24, H), g = mk(I, H), u = mk(I, H),
                            down = mk(H, I);
                std::vector<float> x = randn(size_t(rows * H), seed++),
                                   gamma = randn(size_t(H), seed++, 0.3f),
                                   in = randn(size_t(rows * I), seed++);
                for (float& e : gamma) e += 1.0f;
                const tensor_view nw = view_of(gamma, {H});
                std::vector<float> h(x.size());
                cpu.rms_norm(x.data(), nw, rows, H, eps, h.data());
                float amax = 0, amax_in = 0;
                for (float e : h) amax = std::max(amax, std::fabs(e));
                for (float e : in) amax_in = std::max(amax_in, std::fabs(e));
                for (test_linear* t : {&q, &kk, &v, &g, &u}) {
                    t->w.input_global_scale = nvfp4_global_scale(amax, nvfp4_convention_ct);
                    t->w.fp8_input_scale = amax / 448.0f;
                }
                down.w.input_global_scale = nvfp4_global_scale(amax_in, nvfp4_convention_ct);
                down.w.fp8_input_scale = amax_in / 448.0f;
                auto sums = [&](const test_linear& t, const std::vector<float>& a) {
                    return sum_abs_xw(t, a, rows);
                };
                auto count_bad = [&](const std::vector<float>& got, const std::vector<float>& want,
                                     const std::vector<double>& s) {
                    int bad = 0;
                    for (size_t j = 0; j < got.size(); ++j)
                        if (std::fabs(double(got[j]) - want[j]) > rel * s[j] + 1e-6) ++bad;
                    return bad;
                };
                const std::string what = fmt::format("{} rows {} fused act {}", sc.name, rows, fused_act);
                float* xd = dev(gpu, x);
                float* hd = gpu.alloc(x.size());
                // q/k/v over the normed x.
                std::vector<float> wq(size_t(rows * 72)), wk(size_t(rows * 24)), wv(size_t(rows * 24));
                cpu.norm_linear_qkv(x.data(), nw, eps, rows, h.data(), q.w, kk.w, v.w, wq.data(), wk.data(),
                                    wv.data());
                float* oq = gpu.alloc(wq.size());
                float* ok = gpu.alloc(wk.size());
                float* ov = gpu.alloc(wv.size());
                gpu.norm_linear_qkv(xd, nw, eps, rows, hd, q.w, kk.w, v.w, oq, ok, ov);
                EXPECT_EQ(count_bad(host(gpu, oq, wq.size()), wq, sums(q, h)), 0) << what << ": q";
                EXPECT_EQ(count_bad(host(gpu, ok, wk.size()), wk, sums(kk, h)), 0) << what << ": k";
                EXPECT_EQ(count_bad(host(gpu, ov, wv.size()), wv, sums(v, h)), 0) << what << ": v";
                // SwiGLU over the normed x: 1e-5 · (Σ|h w_g| · |u| · 1.1 + |silu(g)| · Σ|h w_u|) as there.
                const size_t ng = size_t(rows * I);
                std::vector<float> wsw(ng), wu(ng), gl(ng), ul(ng);
                cpu.norm_linear_swiglu(x.data(), nw, eps, rows, h.data(), g.w, u.w, wsw.data(), wu.data());
                cpu.linear(h.data(), rows, g.w, gl.data());
                cpu.linear(h.data(), rows, u.w, ul.data());
                float* od = gpu.alloc(ng);
                float* us = gpu.alloc(ng);
                gpu.norm_linear_swiglu(xd, nw, eps, rows, hd, g.w, u.w, od, us);
                const std::vector<float> got = host(gpu, od, ng);
                const std::vector<double> sg = sums(g, h), su = sums(u, h);
                int bad = 0;
                for (size_t j = 0; j < ng; ++j) {
                    const double silu = gl[j] / (1.0 + std::exp(-double(gl[j])));
                    const double bound =
                        rel * (sg[j] * std::fabs(ul[j]) * 1.1 + std::fabs(silu) * su[j]) + 1e-6;
                    if (std::fabs(double(got[j]) - wsw[j]) > bound) ++bad;
                }
                EXPECT_EQ(bad, 0) << what << ": swiglu";
                // The residual add: x += down(in).
                std::vector<float> want_x = x, scratch(size_t(rows * H));
                cpu.linear_add(in.data(), rows, down.w, want_x.data(), scratch.data());
                float* ind = dev(gpu, in);
                float* sd = gpu.alloc(scratch.size());
                gpu.linear_add(ind, rows, down.w, xd, sd);
                EXPECT_EQ(count_bad(host(gpu, xd, x.size()), want_x, sums(down, in)), 0)
                    << what << ": x += down(in)";
            }
}

// The GEMV timeline (NIBBLE_GEMV_TRACE: the batch-1 streaming launches run separate recording kernels)
// changes no result: every decode step's logits are bit-identical to an untraced runner's, at batch 1 and 3
// with graphs, for NVFP4 W4A16 (the FP16-activation kernel) and W4A4 and FP8 W8A8; the trace file holds
// whole records.
TEST(cuda_backend, gemv_trace_changes_no_result) {
    REQUIRE_GPU();
    for (const char* model : {"qwen3-tiny-nvfp4a16", "qwen3-tiny-nvfp4", "qwen3-tiny-fp8-dynamic"}) {
        const std::string dir = std::string(NIBBLE_SOURCE_DIR) + "/models/" + model;
        const std::string trace = ::testing::TempDir() + "nibble_gemv_trace_" + model + ".bin";
        std::remove(trace.c_str());
        runner_options opt;
        opt.max_ctx = 256;
        opt.n_slots = 3;
        opt.max_step = 64;
        opt.device = "cuda";
        // The same prefills and decode steps on a fresh runner: every decode step's logits.
        auto run = [&](model_runner& r) {
            std::vector<std::vector<float>> out;
            const std::vector<int32_t> prompt = {13, 400, 5, 77, 1000, 31, 2, 9};
            for (int32_t s = 0; s < 3; ++s) r.prefill(s, prompt, 0);
            std::vector<int32_t> next(3, int32_t(prompt.size()));
            for (int step = 0; step < 4; ++step)
                for (int32_t batch : {1, 3}) {
                    const decode_batch d = next_decode_batch(step, batch, next);
                    out.push_back(r.decode(d.slots, d.ids, d.pos));
                }
            return out;
        };
        std::vector<std::vector<float>> want, got;
        {
            model_runner plain(dir, opt);  // before the trace exists: the default kernels
            want = run(plain);
        }
        {
            ::setenv("NIBBLE_GEMV_TRACE", trace.c_str(), 1);
            model_runner traced(dir, opt);
            ::unsetenv("NIBBLE_GEMV_TRACE");
            got = run(traced);
        }  // the trace file is written here
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < want.size(); ++i)
            EXPECT_EQ(got[i], want[i]) << model << ": decode call " << i << " (steps of batch 1, 3 in turn)";
        std::ifstream f(trace, std::ios::binary | std::ios::ate);
        ASSERT_TRUE(f.good()) << model << ": no trace file " << trace;
        const std::streamoff bytes = f.tellg();
        EXPECT_GT(bytes, 0) << model;
        EXPECT_EQ(bytes % 64, 0) << model << ": 64-byte records";
        std::remove(trace.c_str());
    }
}

TEST(cuda_backend, moe) {
    REQUIRE_GPU();
    model_config c;
    c.hidden_size = 64;
    c.n_experts = 8;
    c.n_experts_per_token = 2;
    c.moe_intermediate_size = 48;
    for (bool renorm : {true, false}) {
        c.norm_topk_prob = renorm;
        layer_weights l;
        std::vector<test_linear> store;
        store.reserve(24);
        uint32_t seed = 300;
        for (int e = 0; e < 8; ++e) {
            weight_format f = e % 2 ? weight_format_nvfp4 : weight_format_dense;
            store.push_back(make_linear(f, act_format_none, 48, 64, seed++));
            l.expert_gate.push_back(store.back().w);
            store.push_back(make_linear(f, act_format_none, 48, 64, seed++));
            l.expert_up.push_back(store.back().w);
            store.push_back(make_linear(f, act_format_none, 64, 48, seed++));
            l.expert_down.push_back(store.back().w);
        }
        for (int64_t rows : {1, 9, 33}) {
            cpu_backend cpu;
            cuda_backend gpu;
            std::vector<float> x = randn(size_t(rows * 64), seed++), lg = randn(size_t(rows * 8), seed++);
            std::vector<float> want(size_t(rows * 64));
            cpu.moe(c, l, x.data(), lg.data(), rows, want.data());
            float* xd = dev(gpu, x);
            float* ld = dev(gpu, lg);
            float* od = gpu.alloc(want.size());
            gpu.moe(c, l, xd, ld, rows, od);
            EXPECT_LE(max_abs_diff(host(gpu, od, want.size()), want), 1e-4) << rows << " rows";
        }
    }
}

namespace {
struct e2e_case {
    std::string model;
    kv_cache_dtype kv;
};

// Every bundled model with a float32 KV cache on both backends, and each again with BF16 KV storage
// (the CUDA default; the CPU stores the same rounded values).
std::vector<e2e_case> bundled_models() {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(std::string(NIBBLE_SOURCE_DIR) + "/models", ec))
        if (std::filesystem::exists(e.path() / "golden.json")) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    std::vector<e2e_case> out;
    for (kv_cache_dtype kv : {kv_cache_f32, kv_cache_bf16})
        for (const std::string& n : names) out.push_back({n, kv});
    return out;
}

struct greedy_result {
    std::vector<float> first_logits;
    std::vector<int32_t> tokens;
    std::vector<double> margins;  // top-1 minus top-2 logit at each generated token
};

greedy_result greedy(model_runner& r, const std::vector<int32_t>& ids, int n) {
    greedy_result g;
    std::vector<float> lg = r.prefill(0, ids, 0);
    g.first_logits = lg;
    for (int i = 0; i < n; ++i) {
        std::vector<float> s = lg;
        std::partial_sort(s.begin(), s.begin() + 2, s.end(), std::greater<float>());
        const int32_t tok = int32_t(std::max_element(lg.begin(), lg.end()) - lg.begin());
        g.tokens.push_back(tok);
        g.margins.push_back(double(s[0]) - s[1]);
        if (i + 1 == n) break;
        int32_t slot = 0, pos = int32_t(ids.size()) + i;
        lg = r.decode(std::span<const int32_t>(&slot, 1), std::span<const int32_t>(&tok, 1),
                      std::span<const int32_t>(&pos, 1));
    }
    return g;
}

class cuda_end_to_end : public ::testing::TestWithParam<e2e_case> {};

}  // namespace

TEST_P(cuda_end_to_end, matches_cpu_backend) {
    REQUIRE_GPU();
    const std::string dir = std::string(NIBBLE_SOURCE_DIR) + "/models/" + GetParam().model;
    nlohmann::json g = nlohmann::json::parse(read_text_file(dir + "/golden.json"));
    const std::string em = g.value("quant_emulation", "none");
    const bool act_quant = em == "nvfp4-w4a4" || em == "fp8-dynamic";
    // BF16 KV: a K or V value that float32 noise puts on the other side of a BF16 rounding boundary is
    // stored 2^-9 away (seen: max 0.013, mean 0.0028 over the bundled models, H200).
    const bool kv16 = GetParam().kv == kv_cache_bf16;
    // Weight-only NVFP4: prompts over 16 tokens run the tensor-core GEMM on FP16 activations (2^-11
    // relative, cuda_row_scale_f16; seen: max 0.0059, mean 0.0013 with F32 KV, H200) — the order of BF16 KV.
    const bool fp16_prefill = em == "nvfp4-w4a16";
    const bool loose = kv16 || fp16_prefill;
    // Fake-quantized activations: float32 noise that moves a value across a rounding boundary of its
    // quantization format changes it by a whole step (FP8: 2^-3 relative, seen max 0.62, mean 0.12; E2M1:
    // up to a third, seen max 1.36, mean 0.38 on the 76-token prompt below with either attention path).
    const bool w4a4 = em == "nvfp4-w4a4";
    // MoE: the same noise at a near-tie of two routing logits picks another expert for a token (seen with
    // the FP16 prefill activations, F32 KV: max 0.030, mean 0.0059, a greedy divergence at a CPU margin of
    // 0.077 on the 76-token prompt, with either attention path).
    const bool moe =
        nlohmann::json::parse(read_text_file(dir + "/config.json")).value("num_experts_per_tok", 0) > 0;
    const double max_bound = w4a4           ? 2.0
                             : act_quant    ? 1.0
                             : moe && loose ? 0.1
                             : loose        ? 3e-2
                                            : 2e-3,
                 mean_bound = w4a4           ? 0.5
                              : act_quant    ? 0.25
                              : moe && loose ? 2e-2
                              : loose        ? 5e-3
                                             : 2e-3,
                 tie = act_quant      ? 1.0
                       : moe && loose ? 0.1
                       : loose        ? 3e-2
                                      : 1e-3;
    runner_options opt;
    opt.max_ctx = 512;
    opt.max_step = 256;
    opt.kv_dtype = GetParam().kv;  // the same KV storage on both sides
    opt.device = "cpu";
    model_runner rc(dir, opt);
    opt.device = "cuda";
    model_runner rg(dir, opt);
    // The golden prompts, then all of them as one prompt (steps of 64 tokens and more take the tensor-core
    // prefill attention, attention_prefill.h), with that path off and on, so that the model path runs it
    // and any difference the long prompt itself brings shows next to it.
    std::vector<std::pair<std::string, std::vector<int32_t>>> prompts;
    std::vector<int32_t> all;
    for (const auto& p : g["prompts"]) {
        prompts.emplace_back(p["name"].get<std::string>(), p["ids"].get<std::vector<int32_t>>());
        all.insert(all.end(), prompts.back().second.begin(), prompts.back().second.end());
    }
    while (all.size() < 64) all.insert(all.end(), all.begin(), all.end());
    prompts.emplace_back("all_split_kv", all);
    prompts.emplace_back("all_tc_attn", all);
    for (const auto& [name, ids] : prompts) {
        const test::prefill_attention_switch tc(name != "all_split_kv");
        greedy_result a = greedy(rc, ids, 32), b = greedy(rg, ids, 32);
        double mx = 0, sum = 0;
        for (size_t i = 0; i < a.first_logits.size(); ++i) {
            const double d = std::fabs(double(a.first_logits[i]) - b.first_logits[i]);
            mx = std::max(mx, d);
            sum += d;
        }
        const double mean = sum / double(a.first_logits.size());
        EXPECT_LE(mx, max_bound) << name << ": last-position logits, max |cuda - cpu|";
        EXPECT_LE(mean, mean_bound) << name << ": last-position logits, mean |cuda - cpu|";
        size_t same = 0;
        while (same < a.tokens.size() && a.tokens[same] == b.tokens[same]) ++same;
        if (same < a.tokens.size())
            EXPECT_LT(a.margins[same], tie)
                << name << ": greedy token " << same << " differs (cpu " << a.tokens[same] << ", cuda "
                << b.tokens[same] << ") at a cpu top-2 margin of " << a.margins[same];
        std::printf(
            "e2e %-28s %-12s max |dlogit| %.3g mean %.3g, greedy %zu/32 equal%s\n",
            (GetParam().model + " kv " + kv_cache_dtype_name(GetParam().kv)).c_str(), name.c_str(), mx, mean,
            same,
            same < a.tokens.size() ? fmt::format(" (cpu margin there {:.3g})", a.margins[same]).c_str() : "");
    }
}

INSTANTIATE_TEST_SUITE_P(bundled, cuda_end_to_end, ::testing::ValuesIn(bundled_models()),
                         [](const auto& info) {
                             std::string s = info.param.model + "_kv_" + kv_cache_dtype_name(info.param.kv);
                             for (char& ch : s)
                                 if (!isalnum(uint8_t(ch))) ch = '_';
                             return s;
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(cuda_end_to_end);

// Whole decode steps recorded as CUDA graphs compute exactly what eager steps compute (the same kernels
// on the same staged data): every step's logits are bit-identical, with several batch shapes, and graphs
// were in fact recorded and replayed.
TEST(cuda_backend, step_graphs_match_eager) {
    REQUIRE_GPU();
    const std::string dir = std::string(NIBBLE_SOURCE_DIR) + "/models/qwen3-tiny";
    runner_options opt;
    opt.max_ctx = 256;
    opt.n_slots = 3;
    opt.max_step = 64;
    opt.device = "cuda";
    opt.step_graphs = false;
    model_runner eager(dir, opt);
    opt.step_graphs = true;
    model_runner graphs(dir, opt);
    std::vector<int32_t> prompt = {13, 400, 5, 77, 1000, 31, 2, 9};
    for (model_runner* r : {&eager, &graphs})
        for (int32_t s = 0; s < 3; ++s) r->prefill(s, prompt, 0);
    std::vector<int32_t> next(3, int32_t(prompt.size()));
    for (int step = 0; step < 6; ++step)
        for (int32_t batch : {1, 3}) {
            const decode_batch d = next_decode_batch(step, batch, next);
            EXPECT_EQ(eager.decode(d.slots, d.ids, d.pos), graphs.decode(d.slots, d.ids, d.pos))
                << "step " << step << " batch " << batch;
        }
    auto& gb = dynamic_cast<cuda_backend&>(graphs.device());
    auto& eb = dynamic_cast<cuda_backend&>(eager.device());
    EXPECT_GE(gb.n_step_graphs(), 2u) << "decode shapes (1, 1) and (3, 3) recorded";
    EXPECT_EQ(eb.n_step_graphs(), 0u);
}
