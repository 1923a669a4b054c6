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
// Contract: 1 <= m <= 16, k > 0, k % 16 == 0, n >= 0; otherwise cudaErrorInvalidValue. k % 32 == 0 with
// 16-byte aligned `packed` takes the 16-byte-load path; other k (16·odd) a path with 8-byte loads.
// Deterministic: the same inputs give the same bits on every run. While the kernel runs, y may hold
// partial sums (for m·k too large for one shared-memory tile); it must not alias x.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace nibble {

cudaError_t cuda_nvfp4_linear(const float* x, int64_t m, const uint8_t* packed, const uint8_t* scales,
                              int64_t n, int64_t k, float global_mul, const float* bias_or_null, float* y,
                              cudaStream_t stream);

}  // namespace nibble
