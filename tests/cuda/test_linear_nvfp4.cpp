// cuda_nvfp4_linear against the CPU reference (cpu_backend::linear) on fresh random inputs.
//
// Error bound, per output y[t, r], with S = Σ_j |x[t, j] · w[r, j]| (w the exact dequantized weights) and
// u = 2^-24: both sides are FP32 with different summation orders, so |y_gpu - y_cpu| <= (γ_cpu + γ_gpu)·S
// + 2u·|bias| to first order.
//   CPU: one rounding of each weight (e4m3/gs formed first), 8 interleaved partial sums of length k/8 and
//        3 levels to combine them, the bias add: γ_cpu <= (k/8 + 5)·u.
//   GPU: a 16-long FMA chain per block, the block-scale FMA into the lane's sum (<= k/512 blocks per lane
//        and chunk), 5 shuffle levels, <= k/1024 chunk additions, and the final multiply by
//        fl(1/gs)·2^14 (itself 1 rounding off 1/gs): γ_gpu <= (16 + 1 + k/512 + 5 + k/1024 + 3)·u.
// Stated bound: (k/8 + 64)·u·(S + |bias|), e.g. 3.4e-5·S at k = 4096. Any indexing or nibble-order error
// moves an output by a whole product term, orders of magnitude above it. The output is poisoned with NaN
// first, so an unwritten element fails.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "core/formats.h"
#include "core/quant.h"
#include "core/weights.h"
#include "cpu/cpu_backend.h"
#include "cuda/cuda_test_util.h"
#include "cuda/dequant.h"
#include "cuda/device.h"
#include "cuda/linear_nvfp4.h"

using namespace nibble;
using nibble::test::device_buffer;

namespace {

struct case_result {
    double worst_ratio = 0;  // max |err| / bound
};

case_result run_case(int64_t m, int64_t n, int64_t k, bool ct, bool with_bias, std::mt19937& rng) {
    std::vector<uint8_t> packed(size_t(n * k / 2)), scales(size_t(n * k / 16));
    for (auto& b : packed) b = uint8_t(rng());
    for (auto& s : scales) s = uint8_t(rng() % 0x7F);  // every non-negative non-NaN E4M3, subnormals too
    std::uniform_real_distribution<float> ux(-2.0f, 2.0f);
    std::vector<float> x(static_cast<size_t>(m * k)), bias(static_cast<size_t>(n));
    for (auto& v : x) v = ux(rng);
    for (auto& v : bias) v = ux(rng);
    const float global = ct ? 384.0f + float(rng() % 3000) : 1.0f / (2688.0f + float(rng() % 1000));
    const nvfp4_convention conv = ct ? nvfp4_convention_ct : nvfp4_convention_modelopt;

    linear_weight w;
    w.name = "test";
    w.format = weight_format_nvfp4;
    w.n = n;
    w.k = k;
    w.weight = {"packed", dtype_u8, {n, k / 2}, packed.data(), packed.size()};
    w.block_scale = {"scales", dtype_f8_e4m3, {n, k / 16}, scales.data(), scales.size()};
    if (with_bias)
        w.bias = {"bias", dtype_f32, {n}, reinterpret_cast<const uint8_t*>(bias.data()), bias.size() * 4};
    w.convention = conv;
    w.global_scale = global;
    cpu_backend cpu;
    std::vector<float> ref(size_t(m * n));
    cpu.linear(x.data(), m, w, ref.data());

    device_buffer<float> dx(x.size()), dy(ref.size()), db(bias.size());
    device_buffer<uint8_t> dp(packed.size()), ds(scales.size());
    NIBBLE_CUDA_CHECK(cudaMemcpy(dx.p, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
    NIBBLE_CUDA_CHECK(cudaMemcpy(db.p, bias.data(), bias.size() * 4, cudaMemcpyHostToDevice));
    NIBBLE_CUDA_CHECK(cudaMemcpy(dp.p, packed.data(), packed.size(), cudaMemcpyHostToDevice));
    NIBBLE_CUDA_CHECK(cuda_e2m1_to_pair_layout(dp.p, int64_t(packed.size()), nullptr));  // as uploaded
    NIBBLE_CUDA_CHECK(cudaMemcpy(ds.p, scales.data(), scales.size(), cudaMemcpyHostToDevice));
    NIBBLE_CUDA_CHECK(cudaMemset(dy.p, 0xFF, ref.size() * 4));  // NaN poison
    NIBBLE_CUDA_CHECK(cuda_nvfp4_linear(dx.p, m, dp.p, ds.p, n, k, nvfp4_global_multiplier(global, conv),
                                        with_bias ? db.p : nullptr, dy.p, nullptr));
    NIBBLE_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> got(ref.size());
    NIBBLE_CUDA_CHECK(cudaMemcpy(got.data(), dy.p, got.size() * 4, cudaMemcpyDeviceToHost));

    case_result res;
    const double u = std::ldexp(1.0, -24);
    std::vector<float> row(static_cast<size_t>(k));
    for (int64_t r = 0; r < n; ++r) {
        cpu_decode_row(w, r, row.data());
        for (int64_t t = 0; t < m; ++t) {
            double s = 0;
            for (int64_t j = 0; j < k; ++j) s += std::fabs(double(x[size_t(t * k + j)]) * row[size_t(j)]);
            const double b = with_bias ? std::fabs(bias[size_t(r)]) : 0.0;
            const double bound = (double(k) / 8 + 64) * u * (s + b) + 1e-30;
            const float g = got[size_t(t * n + r)], e = ref[size_t(t * n + r)];
            const double err = std::fabs(double(g) - double(e));
            EXPECT_TRUE(std::isfinite(g) && err <= bound)
                << "m=" << m << " n=" << n << " k=" << k << " ct=" << ct << " y[" << t << "," << r << "] gpu "
                << g << " cpu " << e << " err " << err << " bound " << bound;
            if (!(std::isfinite(g) && err <= bound)) return res;  // one report per case is enough
            res.worst_ratio = std::max(res.worst_ratio, err / bound);
        }
    }
    return res;
}

}  // namespace

TEST(cuda_linear_nvfp4, matches_cpu_reference) {
    REQUIRE_GPU();
    std::mt19937 rng(std::random_device{}());
    // n: single row, below/across the 8- and 16-row tiles, more tiles than blocks; k: 16·odd (8-byte path),
    // multiples of 32 (16-byte path), and k large enough that m = 4..16 is processed in several chunks.
    const std::vector<std::pair<int64_t, int64_t>> shapes = {
        {1, 16}, {37, 208}, {129, 1040}, {300, 4096}, {67, 12288}, {45, 4112}, {4099, 512}, {17, 2064}};
    double worst = 0;
    int i = 0;
    for (auto [n, k] : shapes)
        for (int64_t m : {1, 2, 3, 8, 16}) {
            case_result r = run_case(m, n, k, (i % 2) == 0, (i % 3) != 0, rng);
            ++i;
            worst = std::max(worst, r.worst_ratio);
        }
    std::printf("nvfp4 linear: %d cases, worst |err| / bound = %.3g\n", i, worst);
}

TEST(cuda_linear_nvfp4, rejects_bad_arguments) {
    REQUIRE_GPU();
    device_buffer<float> d(64);
    const uint8_t* p = reinterpret_cast<const uint8_t*>(d.p);
    EXPECT_EQ(cuda_nvfp4_linear(d.p, 1, p, p, 1, 24, 1.0f, nullptr, d.p, nullptr), cudaErrorInvalidValue);
    EXPECT_EQ(cuda_nvfp4_linear(d.p, 0, p, p, 1, 16, 1.0f, nullptr, d.p, nullptr), cudaErrorInvalidValue);
    EXPECT_EQ(cuda_nvfp4_linear(d.p, 17, p, p, 1, 16, 1.0f, nullptr, d.p, nullptr), cudaErrorInvalidValue);
    EXPECT_EQ(cuda_nvfp4_linear(d.p + 1, 1, p, p, 1, 16, 1.0f, nullptr, d.p, nullptr), cudaErrorInvalidValue);
    EXPECT_EQ(cuda_nvfp4_linear(d.p, 1, p, p, 0, 16, 1.0f, nullptr, d.p, nullptr), cudaSuccess);
}
