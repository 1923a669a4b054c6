// The CPU backend's KV cache dtypes (the oracle the CUDA cache is tested against): auto resolves to f32;
// with bf16 / fp8 the cache holds each K and V value rounded exactly as core/formats.h encodes it (BF16
// RNE; E4M3 RNE saturating at ±448, scale 1), so attention over one key returns the rounded V bit for bit
// and keys that round to the same values score the same.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/formats.h"
#include "cpu/cpu_backend.h"

using namespace nibble;

namespace {

model_config small_config() {
    model_config c;
    c.n_layers = 2;
    c.n_heads = 6;
    c.n_kv_heads = 2;
    c.head_dim = 16;
    c.hidden_size = 96;
    c.rope_theta = 1e6f;
    c.rms_norm_eps = 1e-6f;
    return c;
}

float rounded(kv_cache_dtype dt, float x) {
    if (dt == kv_cache_bf16) return bf16_to_float(bf16_from_float(x));
    if (dt == kv_cache_fp8) return e4m3_to_float(e4m3_from_float_sat(x));
    return x;
}

// V rows with values every format rounds differently: ties, saturation, subnormals, plain randoms.
std::vector<float> tricky_values(size_t n, uint32_t seed) {
    const float special[] = {1.00390625f,  // 1 + 2^-8: a BF16 tie, to even (1.0)
                             1.01171875f,  // 1 + 3·2^-8: a BF16 tie, to even (1 + 2^-6)
                             1000.0f,      // FP8 saturates to 448
                             -500.0f,      // ... and to -448
                             460.0f,       // above 448, below the NaN code: 448
                             0.3f,         // FP8 0.3125
                             1e-3f,        // FP8 subnormal: 2^-9
                             -0.0f,       0.0f, 3.0e-5f};
    std::mt19937 g(seed);
    std::normal_distribution<float> d(0.0f, 2.0f);
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = i < std::size(special) ? special[i] : d(g);
    return v;
}

}  // namespace

TEST(kv_cache, dtypes_resolve_on_cpu) {
    const model_config c = small_config();
    for (kv_cache_dtype dt : {kv_cache_auto, kv_cache_f32, kv_cache_bf16, kv_cache_fp8}) {
        cpu_backend b;
        b.kv_init(c, 1, 8, dt);
        EXPECT_EQ(b.kv_dtype(), dt == kv_cache_auto ? kv_cache_f32 : dt) << kv_cache_dtype_name(dt);
    }
}

TEST(kv_cache, reference_roundings) {
    // The encoders the cache uses, on the values tricky_values relies on.
    EXPECT_EQ(rounded(kv_cache_bf16, 1.00390625f), 1.0f);
    EXPECT_EQ(rounded(kv_cache_bf16, 1.01171875f), 1.015625f);
    EXPECT_EQ(rounded(kv_cache_fp8, 1000.0f), 448.0f);
    EXPECT_EQ(rounded(kv_cache_fp8, -500.0f), -448.0f);
    EXPECT_EQ(rounded(kv_cache_fp8, 460.0f), 448.0f);
    EXPECT_EQ(rounded(kv_cache_fp8, 0.3f), 0.3125f);
    EXPECT_EQ(rounded(kv_cache_fp8, 3.0e-5f), 0.0f);
}

// A token at position 0 attends to itself only: its output is the stored V, exactly, for every q head.
TEST(kv_cache, attention_over_one_key_is_the_stored_value) {
    const model_config c = small_config();
    const int64_t hd = c.head_dim, kd = c.n_kv_heads * hd, qd = c.n_heads * hd,
                  group = c.n_heads / c.n_kv_heads;
    for (kv_cache_dtype dt : {kv_cache_f32, kv_cache_bf16, kv_cache_fp8}) {
        cpu_backend b;
        b.kv_init(c, 2, 8, dt);
        std::vector<int32_t> ids = {0}, slots = {1}, pos = {0};
        step_tokens s{ids, slots, pos};
        std::vector<float> q = tricky_values(size_t(qd), 1), k = tricky_values(size_t(kd), 2),
                           v = tricky_values(size_t(kd), 3);
        for (float& x : q) x *= 0.01f;  // finite scores whatever k is
        b.rope_and_cache(c, 1, layer_weights{}, s, q.data(), k.data(), v.data());
        std::vector<float> out(static_cast<size_t>(qd));
        b.attention(c, 1, s, q.data(), out.data());
        for (int64_t h = 0; h < c.n_heads; ++h)
            for (int64_t i = 0; i < hd; ++i) {
                const float want = rounded(dt, v[size_t((h / group) * hd + i)]);
                ASSERT_EQ(out[size_t(h * hd + i)], want)
                    << kv_cache_dtype_name(dt) << " head " << h << " element " << i << " of v "
                    << v[size_t((h / group) * hd + i)];
            }
    }
}

// Keys are rounded too: two keys that differ below the format's resolution score the same, so the output
// is the exact mean of the two stored values; in f32 they differ and the output is not that mean.
TEST(kv_cache, keys_are_stored_rounded) {
    const model_config c = small_config();
    const int64_t hd = c.head_dim, kd = c.n_kv_heads * hd, qd = c.n_heads * hd;
    std::vector<float> q(static_cast<size_t>(qd), 0.5f), k0(static_cast<size_t>(kd)),
        k1 = k0, v(static_cast<size_t>(2 * kd));
    for (int64_t i = 0; i < kd; ++i) {
        k0[size_t(i)] = 1.0f;
        k1[size_t(i)] = 1.0f + 1.0f / 1024.0f;  // the same value in BF16 (2^-7 steps) and FP8 (2^-3 steps)
    }
    std::vector<float> kk(static_cast<size_t>(2 * kd));
    std::copy(k0.begin(), k0.end(), kk.begin());
    std::copy(k1.begin(), k1.end(), kk.begin() + kd);
    for (size_t i = 0; i < v.size(); ++i) v[i] = i < size_t(kd) ? 1.0f : 2.0f;
    for (kv_cache_dtype dt : {kv_cache_f32, kv_cache_bf16, kv_cache_fp8}) {
        cpu_backend b;
        b.kv_init(c, 1, 4, dt);
        std::vector<int32_t> ids = {0, 0}, slots = {0, 0}, pos = {0, 1};
        b.kv_store(0, step_tokens{ids, slots, pos}, kk.data(), v.data());
        std::vector<int32_t> ids1 = {0}, slots1 = {0}, pos1 = {1};
        std::vector<float> out(static_cast<size_t>(qd));
        b.attention(c, 0, step_tokens{ids1, slots1, pos1}, q.data(), out.data());
        for (float o : out) {
            if (dt == kv_cache_f32)
                EXPECT_GT(o, 1.5f) << "f32 keeps the larger key's larger score";
            else
                EXPECT_EQ(o, 1.5f) << kv_cache_dtype_name(dt);
        }
    }
}

TEST(kv_cache, store_checks_slot_and_position) {
    const model_config c = small_config();
    cpu_backend b;
    b.kv_init(c, 2, 4, kv_cache_fp8);
    std::vector<float> k(size_t(c.n_kv_heads * c.head_dim)), v = k;
    std::vector<int32_t> ids = {0}, slots = {2}, pos = {0};
    EXPECT_THROW(b.kv_store(0, step_tokens{ids, slots, pos}, k.data(), v.data()), error);
    slots = {1};
    pos = {4};
    EXPECT_THROW(b.kv_store(0, step_tokens{ids, slots, pos}, k.data(), v.data()), error);
}
