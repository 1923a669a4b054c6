// CUDA dequantization kernels against the CPU reference (core/quant.h + one BF16 rounding).
// Error bound: 0 — the kernels use the same F32 operations in the same order, so results are bit-exact;
// MXFP4 (every scale byte) and unscaled FP8 (every code) also equal the float32 values exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/formats.h"
#include "core/quant.h"
#include "cuda/cuda_test_util.h"
#include "cuda/dequant.h"
#include "cuda/device.h"

using namespace nibble;
using nibble::test::device_buffer;

namespace {

void run_nvfp4(int64_t n, int64_t k, bool ct, std::mt19937& rng) {
    std::vector<uint8_t> packed(size_t(n * k / 2)), scales(size_t(n * k / 16));
    for (auto& b : packed) b = uint8_t(rng());
    for (auto& s : scales) s = uint8_t(rng() % 0x7F);  // every non-negative, non-NaN E4M3 incl. subnormals
    float global = ct ? 384.0f + float(rng() % 1000) : 1.0f / (2688.0f + float(rng() % 1000));
    nvfp4_convention c = ct ? nvfp4_convention_ct : nvfp4_convention_modelopt;
    std::vector<float> ref(size_t(n * k));
    nvfp4_dequantize(packed.data(), scales.data(), n, k, global, c, ref.data());

    device_buffer<uint8_t> dp(packed.size()), ds(scales.size());
    device_buffer<uint16_t> dout(size_t(n * k));
    NIBBLE_CUDA_CHECK(cudaMemcpy(dp.p, packed.data(), packed.size(), cudaMemcpyHostToDevice));
    NIBBLE_CUDA_CHECK(cuda_e2m1_to_pair_layout(dp.p, int64_t(packed.size()), nullptr));  // as uploaded
    NIBBLE_CUDA_CHECK(cudaMemcpy(ds.p, scales.data(), scales.size(), cudaMemcpyHostToDevice));
    NIBBLE_CUDA_CHECK(cuda_nvfp4_dequantize_bf16(dp.p, ds.p, n, k, global, ct, dout.p, nullptr));
    std::vector<uint16_t> got(size_t(n * k));
    NIBBLE_CUDA_CHECK(cudaMemcpy(got.data(), dout.p, got.size() * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(got[i], bf16_from_float(ref[i])) << "n=" << n << " k=" << k << " element " << i;
}

}  // namespace

TEST(cuda_dequant, nvfp4_bf16_matches_cpu_bit_exact) {
    REQUIRE_GPU();
    std::mt19937 rng(std::random_device{}());
    for (auto [n, k] : std::vector<std::pair<int64_t, int64_t>>{{1, 16}, {37, 208}, {128, 4096}, {3, 48}})
        for (bool ct : {true, false}) run_nvfp4(n, k, ct, rng);
}

namespace {

// cuda_mxfp4_dequantize_bf16 of packed [n, k/2] and E8M0 scales [n, k/32], copied back.
std::vector<uint16_t> mxfp4_bf16_on_gpu(const std::vector<uint8_t>& packed,
                                        const std::vector<uint8_t>& scales, int64_t n, int64_t k) {
    device_buffer<uint8_t> dp(packed.size()), ds(scales.size());
    device_buffer<uint16_t> dout(size_t(n * k));
    NIBBLE_CUDA_CHECK(cudaMemcpy(dp.p, packed.data(), packed.size(), cudaMemcpyHostToDevice));
    NIBBLE_CUDA_CHECK(cuda_e2m1_to_pair_layout(dp.p, int64_t(packed.size()), nullptr));  // as uploaded
    NIBBLE_CUDA_CHECK(cudaMemcpy(ds.p, scales.data(), scales.size(), cudaMemcpyHostToDevice));
    NIBBLE_CUDA_CHECK(cuda_mxfp4_dequantize_bf16(dp.p, ds.p, n, k, dout.p, nullptr));
    std::vector<uint16_t> got(size_t(n * k));
    NIBBLE_CUDA_CHECK(cudaMemcpy(got.data(), dout.p, got.size() * 2, cudaMemcpyDeviceToHost));
    return got;
}

}  // namespace

TEST(cuda_dequant, mxfp4_bf16_matches_cpu_bit_exact) {
    REQUIRE_GPU();
    std::mt19937 rng(std::random_device{}());
    const int64_t n = 19, k = 352;
    std::vector<uint8_t> packed(size_t(n * k / 2)), scales(size_t(n * k / 32));
    for (auto& b : packed) b = uint8_t(rng());
    for (auto& s : scales) s = uint8_t(100 + rng() % 50);  // within BF16 range
    std::vector<float> ref(size_t(n * k));
    mxfp4_dequantize(packed.data(), scales.data(), n, k, ref.data());
    const std::vector<uint16_t> got = mxfp4_bf16_on_gpu(packed, scales, n, k);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], bf16_from_float(ref[i])) << i;
}

// Every scale byte but 255 (NaN), 0 (2^-127, a float32 subnormal) included: the decode is the exact
// weight for all of them (dequant.h), which the tensor-core linear relies on.
TEST(cuda_dequant, mxfp4_bf16_every_scale_byte) {
    REQUIRE_GPU();
    std::mt19937 rng(7);
    const int64_t n = 255, k = 64;
    std::vector<uint8_t> packed(size_t(n * k / 2)), scales(size_t(n * k / 32));
    for (auto& b : packed) b = uint8_t(rng());
    for (size_t i = 0; i < scales.size(); ++i) scales[i] = uint8_t(i / 2);  // row r: both blocks byte r
    std::vector<float> ref(size_t(n * k));
    mxfp4_dequantize(packed.data(), scales.data(), n, k, ref.data());
    const std::vector<uint16_t> got = mxfp4_bf16_on_gpu(packed, scales, n, k);
    for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i], bf16_from_float(ref[i])) << "scale byte " << i / size_t(k) << ", element " << i;
        if (std::isfinite(ref[i])) {
            ASSERT_EQ(bf16_to_float(got[i]), ref[i]) << "not exact: element " << i;
        }
    }
}

// FP16 output with global 1 (how the prefill GEMM decodes): every value e2m1 × e4m3 exactly.
TEST(cuda_dequant, nvfp4_f16_global_one_exact) {
    REQUIRE_GPU();
    std::mt19937 rng(23);
    for (auto [n, k] : std::vector<std::pair<int64_t, int64_t>>{{1, 16}, {37, 208}, {128, 4096}}) {
        std::vector<uint8_t> packed(size_t(n * k / 2)), scales(size_t(n * k / 16));
        for (auto& b : packed) b = uint8_t(rng());
        for (size_t i = 0; i < scales.size(); ++i) scales[i] = uint8_t(i < 127 ? i : rng() % 0x7F);
        std::vector<float> ref(size_t(n * k));
        nvfp4_dequantize(packed.data(), scales.data(), n, k, 1.0f, nvfp4_convention_ct, ref.data());
        device_buffer<uint8_t> dp(packed.size()), ds(scales.size());
        device_buffer<uint16_t> dout(size_t(n * k));
        NIBBLE_CUDA_CHECK(cudaMemcpy(dp.p, packed.data(), packed.size(), cudaMemcpyHostToDevice));
        NIBBLE_CUDA_CHECK(cuda_e2m1_to_pair_layout(dp.p, int64_t(packed.size()), nullptr));  // as uploaded
        NIBBLE_CUDA_CHECK(cudaMemcpy(ds.p, scales.data(), scales.size(), cudaMemcpyHostToDevice));
        NIBBLE_CUDA_CHECK(cuda_nvfp4_dequantize_f16(dp.p, ds.p, n, k, 1.0f, true, dout.p, nullptr));
        std::vector<uint16_t> got(size_t(n * k));
        NIBBLE_CUDA_CHECK(cudaMemcpy(got.data(), dout.p, got.size() * 2, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < got.size(); ++i)
            ASSERT_EQ(f16_to_float(got[i]), ref[i]) << "n=" << n << " k=" << k << " element " << i;
    }
}

// Every E4M3 code as FP16: exact, NaN for 0x7F / 0xFF.
TEST(cuda_dequant, fp8_f16_every_code_exact) {
    REQUIRE_GPU();
    for (int64_t n : {17, 256 + 3}) {
        std::vector<uint8_t> q(static_cast<size_t>(n));
        for (size_t i = 0; i < q.size(); ++i) q[i] = uint8_t(i);
        device_buffer<uint8_t> dq(q.size());
        device_buffer<uint16_t> dout(q.size());
        NIBBLE_CUDA_CHECK(cudaMemcpy(dq.p, q.data(), q.size(), cudaMemcpyHostToDevice));
        NIBBLE_CUDA_CHECK(cuda_fp8_dequantize_f16(dq.p, n, dout.p, nullptr));
        std::vector<uint16_t> got(q.size());
        NIBBLE_CUDA_CHECK(cudaMemcpy(got.data(), dout.p, got.size() * 2, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < got.size(); ++i) {
            const float want = e4m3_to_float(q[i]);
            if (std::isnan(want))
                ASSERT_TRUE(std::isnan(f16_to_float(got[i]))) << "code " << int(q[i]);
            else
                ASSERT_EQ(f16_to_float(got[i]), want) << "code " << int(q[i]);
        }
    }
}

// Every E4M3 code, at lengths around the 16-element vector width (the scalar tail): exact values,
// NaN for 0x7F / 0xFF.
TEST(cuda_dequant, fp8_bf16_every_code_exact) {
    REQUIRE_GPU();
    std::mt19937 rng(11);
    for (int64_t n : {1, 15, 16, 17, 256, 4096 + 5}) {
        std::vector<uint8_t> q(static_cast<size_t>(n));
        for (size_t i = 0; i < q.size(); ++i) q[i] = n >= 256 ? uint8_t(i) : uint8_t(rng());
        device_buffer<uint8_t> dq(q.size());
        device_buffer<uint16_t> dout(q.size());
        NIBBLE_CUDA_CHECK(cudaMemcpy(dq.p, q.data(), q.size(), cudaMemcpyHostToDevice));
        NIBBLE_CUDA_CHECK(cuda_fp8_dequantize_bf16(dq.p, n, dout.p, nullptr));
        std::vector<uint16_t> got(q.size());
        NIBBLE_CUDA_CHECK(cudaMemcpy(got.data(), dout.p, got.size() * 2, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < got.size(); ++i) {
            const float want = e4m3_to_float(q[i]);
            if (std::isnan(want))
                ASSERT_TRUE(std::isnan(bf16_to_float(got[i]))) << "n=" << n << " code " << int(q[i]);
            else
                ASSERT_EQ(bf16_to_float(got[i]), want) << "n=" << n << " code " << int(q[i]);
        }
    }
}

TEST(cuda_dequant, rejects_bad_block_multiple) {
    REQUIRE_GPU();
    EXPECT_EQ(cuda_nvfp4_dequantize_bf16(nullptr, nullptr, 1, 24, 1.0f, true, nullptr, nullptr),
              cudaErrorInvalidValue);
    EXPECT_EQ(cuda_mxfp4_dequantize_bf16(nullptr, nullptr, 1, 48, nullptr, nullptr), cudaErrorInvalidValue);
    EXPECT_EQ(cuda_fp8_dequantize_bf16(nullptr, -1, nullptr, nullptr), cudaErrorInvalidValue);
}

TEST(cuda_device, query) {
    REQUIRE_GPU();
    cuda_device_info d = cuda_device_query(0);
    EXPECT_FALSE(d.name.empty());
    EXPECT_GT(d.n_sms, 0);
    EXPECT_GT(d.memory_bytes, 0u);
    std::printf("device 0: %s, sm_%d%d, %d SMs, %.1f GiB, L2 %.1f MiB\n", d.name.c_str(), d.sm_major,
                d.sm_minor, d.n_sms, d.memory_bytes / 1073741824.0, d.l2_bytes / 1048576.0);
}
