// Number formats against their definitions (formats.md section 1) and the worked example (section 8).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/formats.h"
#include "core/quant.h"

using namespace nibble;

namespace {

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

float from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// E4M3 value straight from the definition, written independently of the decoder under test.
double e4m3_reference(int byte) {
    int s = byte >> 7, e = (byte >> 3) & 15, m = byte & 7;
    double v = e == 0 ? m * std::pow(2.0, -9) : (1 + m / 8.0) * std::pow(2.0, e - 7);
    return s ? -v : v;
}

}  // namespace

TEST(formats, e2m1_all_16_codes) {
    const float expect[16] = {0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0f, -0.5, -1, -1.5, -2, -3, -4, -6};
    for (int c = 0; c < 16; ++c) {
        EXPECT_EQ(bits(e2m1_to_float(uint8_t(c))), bits(expect[c])) << "code " << c;
        EXPECT_EQ(e2m1_from_float(expect[c]), c) << "code " << c;  // every code round-trips, -0 included
    }
    EXPECT_TRUE(std::signbit(e2m1_to_float(0x8)));
    EXPECT_EQ(e2m1_to_float(0xF7), 6.0f);  // only the low nibble is read
}

TEST(formats, e2m1_every_tie_rounds_to_even) {
    struct {
        float x;
        uint8_t code;
    } cases[] = {{0.25f, 0},    {0.75f, 2},   {1.25f, 2},   {1.75f, 4},    {2.5f, 4},
                 {3.5f, 6},     {5.0f, 6},    {-0.25f, 8},  {-0.75f, 0xA}, {-1.25f, 0xA},
                 {-1.75f, 0xC}, {-2.5f, 0xC}, {-3.5f, 0xE}, {-5.0f, 0xE}};
    for (auto c : cases) EXPECT_EQ(e2m1_from_float(c.x), c.code) << c.x;
    // Just beyond each tie goes the other way.
    EXPECT_EQ(e2m1_from_float(std::nextafter(0.25f, 1.0f)), 1);
    EXPECT_EQ(e2m1_from_float(std::nextafter(0.75f, 0.0f)), 1);
    EXPECT_EQ(e2m1_from_float(std::nextafter(5.0f, 6.0f)), 7);
    // Saturation and negative zero.
    EXPECT_EQ(e2m1_from_float(6.1875f), 7);
    EXPECT_EQ(e2m1_from_float(1e30f), 7);
    EXPECT_EQ(e2m1_from_float(-1e30f), 0xF);
    EXPECT_EQ(e2m1_from_float(-0.1f), 0x8);
    EXPECT_EQ(e2m1_from_float(-0.0f), 0x8);
    EXPECT_EQ(e2m1_from_float(NAN), 0x0);
}

TEST(formats, e4m3_all_256_bytes) {
    for (int b = 0; b < 256; ++b) {
        float v = e4m3_to_float(uint8_t(b));
        if ((b & 0x7F) == 0x7F) {
            EXPECT_TRUE(std::isnan(v)) << b;
            continue;
        }
        EXPECT_EQ(double(v), e4m3_reference(b)) << "byte " << b;
        // Every finite value encodes back to its own byte (both encoders).
        EXPECT_EQ(e4m3_from_float_sat(v), b) << "byte " << b;
        EXPECT_EQ(e4m3_from_float_torch(v), b) << "byte " << b;
    }
    EXPECT_EQ(e4m3_to_float(0x38), 1.0f);
    EXPECT_EQ(e4m3_to_float(0x20), 0.125f);
    EXPECT_EQ(e4m3_to_float(0x74), 192.0f);
    EXPECT_EQ(e4m3_to_float(0x7E), 448.0f);
    EXPECT_EQ(e4m3_to_float(0x08), std::ldexp(1.0f, -6));  // min normal
    EXPECT_EQ(e4m3_to_float(0x01), std::ldexp(1.0f, -9));  // min subnormal
    EXPECT_EQ(e4m3_to_float(0x07), 7 * std::ldexp(1.0f, -9));
}

TEST(formats, e4m3_rounding_ties_and_saturation) {
    // Every midpoint between neighbouring positive codes goes to the even code.
    for (int b = 0; b < 0x7E; ++b) {
        double lo = e4m3_reference(b), hi = e4m3_reference(b + 1);
        float mid = float((lo + hi) / 2);
        ASSERT_EQ(double(mid), (lo + hi) / 2);  // representable in float
        int even = (b % 2 == 0) ? b : b + 1;
        EXPECT_EQ(e4m3_from_float_sat(mid), even) << "between bytes " << b << " and " << b + 1;
        EXPECT_EQ(e4m3_from_float_sat(-mid), 0x80 | even);
        EXPECT_EQ(e4m3_from_float_sat(std::nextafter(mid, 0.0f)), b);
        EXPECT_EQ(e4m3_from_float_sat(std::nextafter(mid, 1e9f)), b + 1);
    }
    // Subnormals: 2^-10 is the tie between 0 and 2^-9 -> 0; 1.5 * 2^-9 -> 2 * 2^-9.
    EXPECT_EQ(e4m3_from_float_sat(std::ldexp(1.0f, -10)), 0x00);
    EXPECT_EQ(e4m3_from_float_sat(1.5f * std::ldexp(1.0f, -9)), 0x02);
    EXPECT_EQ(e4m3_from_float_sat(-std::ldexp(1.0f, -12)), 0x80);
    // Saturating encoder clamps, PyTorch's cast goes to NaN beyond 464.
    EXPECT_EQ(e4m3_from_float_sat(464.0f), 0x7E);
    EXPECT_EQ(e4m3_from_float_sat(1e6f), 0x7E);
    EXPECT_EQ(e4m3_from_float_sat(-1e6f), 0xFE);
    EXPECT_EQ(e4m3_from_float_sat(INFINITY), 0x7E);
    EXPECT_EQ(e4m3_from_float_torch(464.0f), 0x7E);
    EXPECT_EQ(e4m3_from_float_torch(464.5f), 0x7F);
    EXPECT_EQ(e4m3_from_float_torch(-500.0f), 0xFF);
    EXPECT_EQ(e4m3_from_float_sat(NAN), 0x7F);
}

TEST(formats, e8m0) {
    EXPECT_EQ(e8m0_to_float(127), 1.0f);
    EXPECT_EQ(e8m0_to_float(128), 2.0f);
    EXPECT_EQ(e8m0_to_float(0), std::ldexp(1.0f, -127));
    EXPECT_EQ(e8m0_to_float(254), std::ldexp(1.0f, 127));
    EXPECT_TRUE(std::isnan(e8m0_to_float(255)));
}

TEST(formats, bf16_and_f16_round_to_nearest_even) {
    EXPECT_EQ(bf16_from_float(1.0f), 0x3F80);
    EXPECT_EQ(bf16_from_float(from_bits(0x3F808000)), 0x3F80);  // tie, even stays
    EXPECT_EQ(bf16_from_float(from_bits(0x3F818000)), 0x3F82);  // tie, odd rounds up
    EXPECT_EQ(bf16_from_float(from_bits(0x3F808001)), 0x3F81);
    EXPECT_TRUE(std::isnan(bf16_to_float(bf16_from_float(NAN))));
    EXPECT_EQ(bf16_to_float(0xC0E0), -7.0f);
    for (uint32_t h = 0; h < 0x10000; ++h) {  // every f16 value round-trips
        float f = f16_to_float(uint16_t(h));
        if (std::isnan(f)) continue;
        EXPECT_EQ(f16_from_float(f), h) << h;
    }
    EXPECT_EQ(f16_from_float(65504.0f), 0x7BFF);
    EXPECT_EQ(f16_from_float(65520.0f), 0x7C00);
    EXPECT_EQ(f16_from_float(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie to even
    EXPECT_EQ(f16_from_float(std::ldexp(1.0f, -25)), 0x0000);         // tie to even (0)
    EXPECT_EQ(f16_from_float(std::ldexp(3.0f, -25)), 0x0002);
}

// Worked example, formats.md section 8.
namespace {

const float k_block0[16] = {0,        0.125f,   0.375f, 0.625f, 0.875f,  1.25f,   1.75f,    2.5f,
                            3.09375f, -0.3125f, -1.0f,  -2.0f,  -2.875f, 0.1875f, -0.0625f, 1.125f};

std::vector<float> example_row() {
    std::vector<float> w(32, 0.0f);
    std::copy(k_block0, k_block0 + 16, w.begin());
    w[16] = 7.0f;
    return w;
}

const uint8_t k_packed[16] = {0x00, 0x22, 0x44, 0x66, 0x97, 0xEC, 0x1F, 0x48, 0x07, 0, 0, 0, 0, 0, 0, 0};

}  // namespace

TEST(worked_example, compressed_tensors_nvfp4) {
    auto w = example_row();
    uint8_t packed[16], scales[2];
    float gs = nvfp4_quantize_auto(w.data(), 1, 32, nvfp4_convention_ct, packed, scales);
    EXPECT_EQ(bits(gs), 0x43C00000u);  // 384
    EXPECT_EQ(scales[0], 0x74);
    EXPECT_EQ(scales[1], 0x7E);
    EXPECT_EQ(0, std::memcmp(packed, k_packed, 16));
    EXPECT_EQ(bits(nvfp4_effective_scale(0x7E, gs, nvfp4_convention_ct)), 0x3F955555u);
    float out[32];
    nvfp4_dequantize(packed, scales, 1, 32, gs, nvfp4_convention_ct, out);
    const float deq0[16] = {0, 0, 0.5f, 0.5f, 1, 1, 2, 2, 3, -0.25f, -1, -2, -3, 0.25f, -0.0f, 1};
    for (int i = 0; i < 16; ++i) EXPECT_EQ(bits(out[i]), bits(deq0[i])) << i;
    EXPECT_EQ(bits(out[16]), 0x40E00000u);  // CT order: fl32(448/384) * 6 = 7.0
    EXPECT_EQ(bf16_from_float(out[16]), bf16_from_float(7.0f));
}

TEST(worked_example, modelopt_nvfp4) {
    auto w = example_row();
    uint8_t packed[16], scales[2];
    float ws2 = nvfp4_quantize_auto(w.data(), 1, 32, nvfp4_convention_modelopt, packed, scales);
    EXPECT_EQ(bits(ws2), 0x3B2AAAABu);
    EXPECT_EQ(scales[0], 0x74);
    EXPECT_EQ(scales[1], 0x7E);
    EXPECT_EQ(0, std::memcmp(packed, k_packed, 16));
    float out[32];
    nvfp4_dequantize(packed, scales, 1, 32, ws2, nvfp4_convention_modelopt, out);
    EXPECT_EQ(out[8], 3.0f);
    EXPECT_EQ(bits(out[16]), 0x40E00001u);  // 7.0000004768
    EXPECT_EQ(bf16_from_float(out[16]), bf16_from_float(7.0f));
}

TEST(worked_example, w4a4_dot_product) {
    auto w = example_row();
    uint8_t wp[16], ws[2], ap[16], as[2];
    float gs = nvfp4_quantize_auto(w.data(), 1, 32, nvfp4_convention_ct, wp, ws);
    nvfp4_quantize_activation(w.data(), 32, gs, ap, as);
    EXPECT_EQ(0, std::memcmp(ap, wp, 16));
    EXPECT_EQ(0, std::memcmp(as, ws, 2));
    // Block-scaled accumulation as a native FP4 MMA does it, then alpha = 1/(igs*wgs).
    double acc = 0;
    for (int b = 0; b < 2; ++b) {
        double blk = 0;
        for (int j = 0; j < 16; ++j) {
            int idx = b * 16 + j;
            uint8_t a = idx & 1 ? ap[idx / 2] >> 4 : ap[idx / 2] & 15;
            uint8_t c = idx & 1 ? wp[idx / 2] >> 4 : wp[idx / 2] & 15;
            blk += double(e2m1_to_float(a)) * e2m1_to_float(c);
        }
        if (b == 0) EXPECT_EQ(blk, 138.5);
        if (b == 1) EXPECT_EQ(blk, 36.0);
        acc += double(e4m3_to_float(as[b])) * e4m3_to_float(ws[b]) * blk;
    }
    EXPECT_EQ(acc, 12331008.0);
    float alpha = (1.0f / gs) * (1.0f / gs);
    EXPECT_NEAR(float(acc) * alpha, 83.625f, 4 * 83.625f * 1.2e-7f);
}

TEST(worked_example, mxfp4_ocp_rule) {
    auto w = example_row();
    uint8_t packed[16], scale;
    mxfp4_quantize(w.data(), 1, 32, packed, &scale);
    EXPECT_EQ(scale, 0x7F);
    const uint8_t expect[16] = {0x00, 0x11, 0x22, 0x44, 0x95, 0xCA, 0x0D, 0x28, 0x07, 0, 0, 0, 0, 0, 0, 0};
    EXPECT_EQ(0, std::memcmp(packed, expect, 16));
    float out[32];
    mxfp4_dequantize(packed, &scale, 1, 32, out);
    EXPECT_EQ(out[16], 6.0f);  // 7 saturates
    EXPECT_EQ(out[8], 3.0f);
    // Decoder rule for any scale byte: e2m1 x 2^(b - 127).
    uint8_t s2 = 0x80;
    mxfp4_dequantize(packed, &s2, 1, 32, out);
    EXPECT_EQ(out[16], 12.0f);
}

TEST(nvfp4, zero_and_subnormal_block_scales) {
    std::vector<float> w(32, 0.0f);
    w[16] = 448.0f * 6.0f;  // tensor amax 2688 -> CT global 1.0
    w[0] = 0.03f;           // block 0: 1.0 * 0.03/6 -> subnormal E4M3 scale
    uint8_t packed[16], scales[2];
    float gs = nvfp4_quantize_auto(w.data(), 1, 32, nvfp4_convention_ct, packed, scales);
    EXPECT_EQ(gs, 1.0f);
    EXPECT_EQ(scales[0], e4m3_from_float_sat(0.03f / 6.0f));
    EXPECT_LT(scales[0], 0x08);  // a subnormal scale
    float out[32];
    nvfp4_dequantize(packed, scales, 1, 32, gs, nvfp4_convention_ct, out);
    EXPECT_EQ(scales[0], 0x03);                             // 0.005 -> 3 x 2^-9
    EXPECT_EQ(out[0], 6.0f * 3.0f * std::ldexp(1.0f, -9));  // 0.03 / 0.00586 = 5.12 -> 6
    // An all-zero block: CT writes 0.125, ModelOpt 1.0; both decode to zeros.
    std::vector<float> z(16, 0.0f);
    nvfp4_quantize(z.data(), 1, 16, 384.0f, nvfp4_convention_ct, packed, scales);
    EXPECT_EQ(scales[0], 0x20);
    nvfp4_quantize(z.data(), 1, 16, 0.01f, nvfp4_convention_modelopt, packed, scales);
    EXPECT_EQ(scales[0], 0x38);
    for (int i = 0; i < 8; ++i) EXPECT_EQ(packed[i], 0);
}

TEST(nvfp4, random_round_trip_error_bound) {
    // Dequantized NVFP4 is within half an E2M1 step of the input, relative to its block scale.
    uint32_t state = 12345;
    auto rnd = [&] {
        state = state * 1664525u + 1013904223u;
        return (int32_t(state >> 8) - (1 << 23)) / float(1 << 23);
    };
    const int64_t n = 37, k = 256;
    std::vector<float> w(n * k), out(n * k);
    for (auto& x : w) x = rnd() * (1 + 10 * std::fabs(rnd()));
    std::vector<uint8_t> packed(n * k / 2), scales(n * k / 16);
    for (auto c : {nvfp4_convention_ct, nvfp4_convention_modelopt}) {
        float g = nvfp4_quantize_auto(w.data(), n, k, c, packed.data(), scales.data());
        nvfp4_dequantize(packed.data(), scales.data(), n, k, g, c, out.data());
        for (int64_t i = 0; i < n * k; ++i) {
            float e = nvfp4_effective_scale(scales[i / 16], g, c);
            // Largest E2M1 gap is 2 (4 -> 6), half of it 1; the E4M3 scale rounding adds up to 1/16.
            EXPECT_LE(std::fabs(out[i] - w[i]), e * 1.0f + std::fabs(w[i]) * 0.0625f) << i;
        }
    }
}

TEST(fp8, granularities_round_trip) {
    uint32_t state = 7;
    auto rnd = [&] {
        state = state * 1664525u + 1013904223u;
        return (int32_t(state >> 8) - (1 << 23)) / float(1 << 23);
    };
    const int64_t n = 200, k = 300;  // partial 128x128 edge tiles
    std::vector<float> w(n * k), out(n * k);
    for (auto& x : w) x = rnd() * 3;
    std::vector<uint8_t> q(n * k);
    for (auto g : {fp8_granularity_tensor, fp8_granularity_channel, fp8_granularity_block}) {
        for (auto sd : {dtype_f32, dtype_bf16}) {
            std::vector<float> s(fp8_scale_count(g, n, k));
            fp8_quantize(w.data(), n, k, g, sd, q.data(), s.data());
            for (float v : s) EXPECT_EQ(v, round_through(sd, v));
            fp8_dequantize(q.data(), s.data(), n, k, g, out.data());
            // Relative 1/16 for normals; half a subnormal step (scale * 2^-10) near zero.
            float smax = *std::max_element(s.begin(), s.end());
            for (int64_t i = 0; i < n * k; ++i)
                EXPECT_LE(std::fabs(out[i] - w[i]), std::fabs(w[i]) / 16 + smax * std::ldexp(1.0f, -10));
        }
    }
    EXPECT_EQ(fp8_scale_count(fp8_granularity_block, 200, 300), 2 * 3);
    // Per-token activations: max maps to 448.
    float x[5] = {1, -2, 0.5f, 3, 0}, s;
    uint8_t qa[5];
    fp8_quantize_activation(x, 5, 5, qa, &s);
    EXPECT_EQ(s, 3.0f / 448.0f);
    EXPECT_EQ(qa[3], 0x7E);
}
