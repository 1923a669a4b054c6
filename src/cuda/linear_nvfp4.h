// NVFP4 weight-only linear for decode batches (m = 1..16) on CUDA cores, FP32 activations and accumulation.
//
//   y[m, n] = global_mul · (x[m, k] · Wᵀ) (+ bias[n])
//
// Layouts (formats.md 2.2-2.4, the checkpoint's own, read in place):
//   x       f32  [m, k]    row-major, 16-byte aligned
//   packed  u8   [n, k/2]  two E2M1 codes per byte, even k index in the low nibble
//   scales  e4m3 [n, k/16] one per 16 consecutive k, row-major (not swizzled); NaN bytes are not
//                          allowed (the loader rejects them, formats.md 8.5.3)
//   bias    f32  [n]       or nullptr
//   y       f32  [m, n]    row-major
// global_mul is the per-tensor dequant multiplier (CT: 1/weight_global_scale; ModelOpt: weight_scale_2),
// applied once per output: w = e2m1 × e4m3 × global_mul, where e2m1 × e4m3 is exact.
//
// Contract: 1 <= m <= 16, k > 0, k % 16 == 0, n >= 0; otherwise cudaErrorInvalidValue. k % 64 == 0 with
// 16-byte aligned `packed` and 4-byte aligned `scales` runs the weight-streaming kernel (linear_stream.h;
// NIBBLE_GEMV_LEGACY=1 keeps the kernel below instead, for A/B runs). Otherwise this file's kernel, with
// register-prefetched loads: 16-byte loads for k % 32 == 0, 8-byte loads for k = 16·odd.
// Deterministic: the same inputs give the same bits on every run. While the kernel runs, y may hold
// partial sums (for m·k too large for one shared-memory tile); it must not alias x.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace nibble {

// NIBBLE_GEMV_LEGACY=1 in the environment: NVFP4 decode linears use this file's kernel for every k.
bool cuda_nvfp4_legacy_gemv();

cudaError_t cuda_nvfp4_linear(const float* x, int64_t m, const uint8_t* packed, const uint8_t* scales,
                              int64_t n, int64_t k, float global_mul, const float* bias_or_null, float* y,
                              cudaStream_t stream);

}  // namespace nibble
