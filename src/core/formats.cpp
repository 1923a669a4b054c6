#include "core/formats.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace nibble {

namespace {

constexpr float k_e2m1_values[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

uint32_t float_bits(float x) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    return u;
}

float bits_float(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

}  // namespace

float e2m1_to_float(uint8_t code) {
    float v = k_e2m1_values[code & 7];
    return (code & 8) ? -v : v;
}

uint8_t e2m1_from_float(float x) {
    if (std::isnan(x)) return 0;
    uint8_t sign = std::signbit(x) ? 8 : 0;
    float a = std::fabs(x);
    // Thresholds with closed/open ends as in compressed-tensors' cast_to_fp4: every exact tie goes to
    // the code with the even mantissa bit (0.25->0, 0.75->1, 1.25->1, 1.75->2, 2.5->2, 3.5->4, 5->4).
    uint8_t m;
    if (a <= 0.25f)
        m = 0;
    else if (a < 0.75f)
        m = 1;
    else if (a <= 1.25f)
        m = 2;
    else if (a < 1.75f)
        m = 3;
    else if (a <= 2.5f)
        m = 4;
    else if (a < 3.5f)
        m = 5;
    else if (a <= 5.0f)
        m = 6;
    else
        m = 7;
    return sign | m;
}

float e4m3_to_float(uint8_t byte) {
    int s = byte >> 7, e = (byte >> 3) & 0xF, m = byte & 7;
    float v;
    if (e == 0xF && m == 7) return std::nanf("");
    if (e == 0)
        v = std::ldexp(float(m), -9);
    else
        v = std::ldexp(1.0f + m / 8.0f, e - 7);
    return s ? -v : v;
}

namespace {

// RNE of |x| (finite, non-negative) to the E4M3 grid without any range limit above 448; returns the
// code as an integer that may exceed 0x7E (0x7F = the NaN code, 0x80+ = beyond).
uint32_t e4m3_round_magnitude(float a) {
    // Subnormal region: multiples of 2^-9 below 2^-6.
    if (a < 0.015625f) {
        float q = std::nearbyint(a * 512.0f);  // default rounding mode is RNE
        return uint32_t(q);                    // q = 8 lands on the min normal code 0x08
    }
    uint32_t u = float_bits(a);
    int exp = int((u >> 23) & 0xFF) - 127;  // >= -6 here
    uint32_t mant = u & 0x7FFFFF;
    // Keep 3 mantissa bits, RNE on the 20 dropped bits.
    uint32_t keep = mant >> 20, rest = mant & 0xFFFFF;
    if (rest > 0x80000 || (rest == 0x80000 && (keep & 1))) ++keep;
    if (keep == 8) {
        keep = 0;
        ++exp;
    }
    return uint32_t(exp + 7) << 3 | keep;
}

}  // namespace

uint8_t e4m3_from_float_sat(float x) {
    if (std::isnan(x)) return 0x7F;
    uint8_t sign = std::signbit(x) ? 0x80 : 0;
    float a = std::fabs(x);
    if (a >= 448.0f) return sign | 0x7E;
    uint32_t c = e4m3_round_magnitude(a);
    if (c > 0x7E) c = 0x7E;
    return sign | uint8_t(c);
}

uint8_t e4m3_from_float_torch(float x) {
    if (std::isnan(x)) return 0x7F;
    uint8_t sign = std::signbit(x) ? 0x80 : 0;
    float a = std::fabs(x);
    if (a >= 480.0f) return sign | 0x7F;
    uint32_t c = e4m3_round_magnitude(a);
    if (c >= 0x7F) return sign | 0x7F;  // (464, 480) rounds into the NaN code, as PyTorch does
    return sign | uint8_t(c);
}

float e8m0_to_float(uint8_t byte) {
    if (byte == 255) return std::nanf("");
    return std::ldexp(1.0f, int(byte) - 127);
}

uint16_t bf16_from_float(float x) {
    uint32_t u = float_bits(x);
    if (std::isnan(x)) return uint16_t((u >> 16) | 0x40);
    u += 0x7FFF + ((u >> 16) & 1);
    return uint16_t(u >> 16);
}

float f16_to_float(uint16_t h) {
    uint32_t s = uint32_t(h & 0x8000) << 16, e = (h >> 10) & 0x1F, m = h & 0x3FF;
    if (e == 0) {
        float v = std::ldexp(float(m), -24);
        return s ? -v : v;
    }
    if (e == 31) return bits_float(s | 0x7F800000 | (m << 13));
    return bits_float(s | ((e + 112) << 23) | (m << 13));
}

uint16_t f16_from_float(float x) {
    uint32_t u = float_bits(x);
    uint16_t s = uint16_t((u >> 16) & 0x8000);
    float a = std::fabs(x);
    if (std::isnan(x)) return s | 0x7E00;
    if (a >= 65520.0f) return s | 0x7C00;  // rounds to infinity
    if (a < 6.103515625e-05f) {            // subnormal: multiples of 2^-24
        return s | uint16_t(std::nearbyint(a * 16777216.0f));
    }
    uint32_t ua = float_bits(a);
    uint32_t exp = ((ua >> 23) & 0xFF) - 112, mant = ua & 0x7FFFFF;
    uint32_t keep = mant >> 13, rest = mant & 0x1FFF;
    uint32_t h = (exp << 10) | keep;
    if (rest > 0x1000 || (rest == 0x1000 && (keep & 1))) ++h;  // a carry moves into the exponent
    return s | uint16_t(h);
}

float round_through(dtype t, float x) {
    switch (t) {
        case dtype_f32:
            return x;
        case dtype_bf16:
            return bf16_to_float(bf16_from_float(x));
        case dtype_f16:
            return f16_to_float(f16_from_float(x));
        default:
            fail("round_through: {} is not a scale dtype", dtype_name(t));
    }
}

float load_float(dtype t, const void* data, size_t i) {
    switch (t) {
        case dtype_f32:
            return static_cast<const float*>(data)[i];
        case dtype_bf16:
            return bf16_to_float(static_cast<const uint16_t*>(data)[i]);
        case dtype_f16:
            return f16_to_float(static_cast<const uint16_t*>(data)[i]);
        case dtype_f64:
            return float(static_cast<const double*>(data)[i]);
        case dtype_f8_e4m3:
            return e4m3_to_float(static_cast<const uint8_t*>(data)[i]);
        default:
            fail("cannot read {} values as float", dtype_name(t));
    }
}

void store_float(dtype t, void* data, size_t i, float x) {
    switch (t) {
        case dtype_f32:
            static_cast<float*>(data)[i] = x;
            return;
        case dtype_bf16:
            static_cast<uint16_t*>(data)[i] = bf16_from_float(x);
            return;
        case dtype_f16:
            static_cast<uint16_t*>(data)[i] = f16_from_float(x);
            return;
        default:
            fail("cannot store float values as {}", dtype_name(t));
    }
}

}  // namespace nibble
