// Activation fake quantization on the device, operation for operation as core/quant.cpp (and so
// bit-exact with cpu_quantize_activations): E4M3 / E2M1 rounding and decoding, the FP8 per-token /
// static and NVFP4 per-16 formulas. Shared by linear.cu (the standalone quantize kernels) and
// linear_stream.cu (fused into the decode GEMV's staging of x). Header-only, for .cu files.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace nibble::actq {

// E4M3 byte -> float, NaN codes included.
__device__ __forceinline__ float e4m3_value(uint32_t b) {
    const int e = (b >> 3) & 0xF, m = b & 7;
    if (e == 0xF && m == 7) return __int_as_float(0x7fc00000);
    const float v = e == 0 ? ldexpf(float(m), -9) : ldexpf(1.0f + float(m) / 8.0f, e - 7);
    return (b & 0x80) ? -v : v;
}

// E2M1 code (low 4 bits) -> float: magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6 (no table: arithmetic on m).
__device__ __forceinline__ float e2m1_value(uint32_t code) {
    const int m = int(code & 7);
    const float v = m < 4 ? 0.5f * float(m) : m < 6 ? float(m - 2) : float(2 * m - 8);
    return (code & 8) ? -v : v;
}

// RNE of a finite non-negative float onto the E4M3 grid, no upper limit (as core/formats.cpp).
__device__ __forceinline__ uint32_t e4m3_round_magnitude(float a) {
    if (a < 0.015625f) return uint32_t(rintf(a * 512.0f));
    const uint32_t u = __float_as_uint(a);
    int exp = int((u >> 23) & 0xFF) - 127;
    const uint32_t mant = u & 0x7FFFFF;
    uint32_t keep = mant >> 20;
    const uint32_t rest = mant & 0xFFFFF;
    if (rest > 0x80000 || (rest == 0x80000 && (keep & 1))) ++keep;
    if (keep == 8) {
        keep = 0;
        ++exp;
    }
    return uint32_t(exp + 7) << 3 | keep;
}

__device__ __forceinline__ uint32_t e4m3_from_float_sat(float x) {
    if (isnan(x)) return 0x7F;
    const uint32_t sign = signbit(x) ? 0x80 : 0;
    const float a = fabsf(x);
    if (a >= 448.0f) return sign | 0x7E;
    uint32_t c = e4m3_round_magnitude(a);
    if (c > 0x7E) c = 0x7E;
    return sign | c;
}

// compressed-tensors' thresholds: every exact tie to the even mantissa code.
__device__ __forceinline__ uint32_t e2m1_from_float(float x) {
    if (isnan(x)) return 0;
    const uint32_t sign = signbit(x) ? 8 : 0;
    const float a = fabsf(x);
    uint32_t m;
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

// FP8 per-token / per-group scale from the amax of its values: amax / 448, 1 for an all-zero group.
__device__ __forceinline__ float fp8_scale(float amax) {
    return amax > 0 ? amax / 448.0f : 1.0f;
}

// x' = e4m3_sat(x / s) · s (FP8 dynamic with scale s, or static with s = input_scale), for two values at
// once. On sm_89+ the rounding and the decode are the hardware conversions: cvt.rn.satfinite.e4m3x2.f32
// rounds to nearest even onto the E4M3 grid (subnormals included), takes ±Inf and anything past ±448 to
// ±448 and NaN to NaN: e4m3_from_float_sat's rules; cvt.rn.f16x2.e4m3x2 decodes exactly. ~11 instead of
// ~50 instructions per value (the quotient x / s stays an IEEE division, as the CPU's).
__device__ __forceinline__ float2 fp8_fake2(float x0, float x1, float s) {
    const float a = x0 / s, b = x1 / s;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    uint32_t h;
    asm("{\n\t.reg .b16 c;\n\tcvt.rn.satfinite.e4m3x2.f32 c, %2, %1;\n\tcvt.rn.f16x2.e4m3x2 %0, c;\n\t}"
        : "=r"(h)
        : "f"(a), "f"(b));  // b into the upper byte and half, a into the lower
    const float2 v = __half22float2(*reinterpret_cast<const __half2*>(&h));
    return make_float2(v.x * s, v.y * s);
#else
    return make_float2(e4m3_value(e4m3_from_float_sat(a)) * s, e4m3_value(e4m3_from_float_sat(b)) * s);
#endif
}
__device__ __forceinline__ float fp8_fake(float x, float s) {
    return fp8_fake2(x, 0.0f, s).x;
}

// NVFP4 activations: the effective scale of a 16-block with absolute max amax under input_global g
// (e4m3(g · amax / 6), a zero code replaced by 0x20, over g), then one value of the block.
__device__ __forceinline__ float nvfp4_block_scale(float amax, float g) {
    uint32_t s = e4m3_from_float_sat(g * (amax / 6.0f));
    if ((s & 0x7F) == 0) s = 0x20;
    return e4m3_value(s) / g;
}
__device__ __forceinline__ float nvfp4_fake(float x, float eff) {
    const float v = x / eff;
    float a = fminf(fmaxf(v, -6.0f), 6.0f);
    if (isnan(v)) a = 0;
    return e2m1_value(e2m1_from_float(a)) * eff;
}

}  // namespace nibble::actq
