// Block quantization formats: NVFP4 (compressed-tensors and ModelOpt conventions), W4A4 dynamic
// activations, MXFP4 and FP8 (per tensor, per channel, 128x128 blocks). Reference implementations:
// they define the exact numbers every backend must reproduce (formats.md sections 2-5 and 8).
//
// Layouts (weights are [n, k] row-major, k = input features):
//   NVFP4  packed  u8   [n, k/2]   two E2M1 codes per byte, even k index in the low nibble
//          scales  e4m3 [n, k/16]  one per 16 consecutive k, row-major (not swizzled)
//          global  f32             CT: weight_global_scale, a divisor (2688/amax)
//                                  ModelOpt: weight_scale_2, a multiplier (amax/2688)
//   MXFP4  packed  u8   [n, k/2]   same nibble order; scales e8m0 [n, k/32]
//   FP8    q       e4m3 [n, k];    scale f32: [1] | [n] | [ceil(n/128), ceil(k/128)]
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace nibble {

constexpr int nvfp4_block = 16;
constexpr int mxfp4_block = 32;
constexpr int fp8_block = 128;
constexpr float e2m1_max = 6.0f;
constexpr float e4m3_max = 448.0f;

enum nvfp4_convention : uint8_t {
    nvfp4_convention_ct,        // compressed-tensors: dequant divides by the global scale
    nvfp4_convention_modelopt,  // ModelOpt: dequant multiplies by weight_scale_2
};

// Global scale from a tensor's absolute max, in the convention's own direction (formats.md 2.4, 3.3):
// CT 2688/amax (amax 0 or non-finite handled as CT does), ModelOpt amax/2688.
float nvfp4_global_scale(float amax, nvfp4_convention c);
// E4M3 block-scale byte for a 16-block of absolute max amax_blk. A zero scale becomes 0.125 (CT) or
// 1.0 (ModelOpt), as the producers write it.
uint8_t nvfp4_block_scale(float amax_blk, float global, nvfp4_convention c);
// The per-block dequant multiplier: CT fl32(e4m3/global), ModelOpt fl32(e4m3 × global).
float nvfp4_effective_scale(uint8_t scale_byte, float global, nvfp4_convention c);
// The multiplier that takes the convention's global into "dequant multiplier" form (1/gs for CT).
float nvfp4_global_multiplier(float global, nvfp4_convention c);

// Quantizes w [n, k] (k % 16 == 0) with a given global scale into packed [n, k/2] and scales [n, k/16].
void nvfp4_quantize(const float* w, int64_t n, int64_t k, float global, nvfp4_convention c, uint8_t* packed,
                    uint8_t* scales);
// Quantizes w [n, k] with its own amax; returns the global scale it used.
float nvfp4_quantize_auto(const float* w, int64_t n, int64_t k, nvfp4_convention c, uint8_t* packed,
                          uint8_t* scales);
// Dequantizes to float, in the reference order: effective block scale first, then × the E2M1 value.
void nvfp4_dequantize(const uint8_t* packed, const uint8_t* scales, int64_t n, int64_t k, float global,
                      nvfp4_convention c, float* out);

// W4A4 activations (formats.md 2.6): each 16-block of x [k] gets a dynamic E4M3 scale from the static
// input global scale `input_global` (CT input_global_scale; for ModelOpt pass 1/input_scale), then codes.
// Produces packed codes [k/2] and scale bytes [k/16]; identical arithmetic to nvfp4_quantize (CT order).
void nvfp4_quantize_activation(const float* x, int64_t k, float input_global, uint8_t* packed,
                               uint8_t* scales);
// The activation as the W4A4 GEMM sees it: quantize, then dequantize (fake quantization), in place.
void nvfp4_fake_quantize_activation(float* x, int64_t k, float input_global);

// MXFP4, OCP rule: block scale 2^(floor(log2 amax) - 2) as an E8M0 byte (127 for an all-zero block),
// elements RNE_E2M1(clamp(x / scale)). Dequant: e2m1 × 2^(byte - 127).
uint8_t mxfp4_block_scale(float amax_blk);
void mxfp4_quantize(const float* w, int64_t n, int64_t k, uint8_t* packed, uint8_t* scales);
void mxfp4_dequantize(const uint8_t* packed, const uint8_t* scales, int64_t n, int64_t k, float* out);

enum fp8_granularity : uint8_t {
    fp8_granularity_tensor,   // one scale
    fp8_granularity_channel,  // one per output row
    fp8_granularity_block,    // one per 128x128 tile (edge tiles partial)
};

// Number of scales for a [n, k] weight at this granularity.
int64_t fp8_scale_count(fp8_granularity g, int64_t n, int64_t k);
// FP8 weight quantization: scale = amax/448 over the group, rounded through `scale_dtype` (the scale's
// storage dtype, so dequantization with the stored value is consistent); a zero amax gives the float32
// epsilon; q = E4M3_sat(x / scale). Writes q [n, k] and scales (float values of the stored scales).
void fp8_quantize(const float* w, int64_t n, int64_t k, fp8_granularity g, dtype scale_dtype, uint8_t* q,
                  float* scales);
void fp8_dequantize(const uint8_t* q, const float* scales, int64_t n, int64_t k, fp8_granularity g,
                    float* out);
// Dynamic activation quantization of x [k] in groups of `group` (k for per-token): s = amax/448 per
// group (1.0 for an all-zero group), q = E4M3_sat(x / s). Writes q [k] and scales [ceil(k/group)].
void fp8_quantize_activation(const float* x, int64_t k, int64_t group, uint8_t* q, float* scales);

// Absolute max of n floats (NaN ignored).
float abs_max(const float* x, int64_t n);

}  // namespace nibble
