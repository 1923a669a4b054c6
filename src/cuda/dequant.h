// Dequantization kernels: packed NVFP4 / MXFP4 / FP8 weights -> BF16 (or FP16: NVFP4, FP8), e.g. for
// prefill tiles that feed tensor-core GEMMs. Each is bit-exact with its CPU twin in core/quant.h followed by
// one BF16 rounding (the reference order of formats.md 8.5.9: effective block scale in F32 first, then × the
// element). That rounding is exact, so the decode is the exact weight, for: NVFP4 with global 1 (e2m1 × e4m3
// has at most 6 significant bits), MXFP4 for every scale byte but 255 (NaN) (e2m1 × 2^(e-127) has 2
// significant bits and BF16 has float32's exponent range; its smallest product 2^-128 is above BF16's
// smallest subnormal 2^-133; products past float32's range are infinite in both), and unscaled FP8. Launchers
// take device pointers, sizes and a stream; they return cudaSuccess or the launch error.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace nibble {

// E2M1 codes (NVFP4, MXFP4) are kept on the GPU in the pair layout (nvfp4_layout.h), which every kernel that
// reads them expects: this converts n_bytes of packed checkpoint codes in place (n_bytes % 4 == 0, codes
// 4-byte aligned; else cudaErrorInvalidValue). The backend does it once per weight, at upload.
cudaError_t cuda_e2m1_to_pair_layout(uint8_t* codes, int64_t n_bytes, cudaStream_t stream);

// packed u8 [n, k/2] (pair layout), scales e4m3 [n, k/16], out bf16 bits [n, k]; k % 16 == 0.
// divide_global: compressed-tensors (e4m3 / global); otherwise ModelOpt (e4m3 × global).
cudaError_t cuda_nvfp4_dequantize_bf16(const uint8_t* packed, const uint8_t* scales, int64_t n, int64_t k,
                                       float global, bool divide_global, uint16_t* out, cudaStream_t stream);
// The same as FP16 bits: exact where the value is on FP16's grid, which holds for NVFP4 with global 1
// (|e2m1 × e4m3| in [2^-10, 2688], 6 significant bits: FP16 normals) and for unscaled FP8 (|e4m3| in
// [2^-9, 448], 4 significant bits); FP16 has the precision but not BF16's range, so MXFP4 stays BF16.
cudaError_t cuda_nvfp4_dequantize_f16(const uint8_t* packed, const uint8_t* scales, int64_t n, int64_t k,
                                      float global, bool divide_global, uint16_t* out, cudaStream_t stream);
cudaError_t cuda_fp8_dequantize_f16(const uint8_t* q, int64_t n, uint16_t* out, cudaStream_t stream);
// packed u8 [n, k/2] (pair layout), scales e8m0 [n, k/32], out bf16 bits [n, k]; k % 32 == 0.
cudaError_t cuda_mxfp4_dequantize_bf16(const uint8_t* packed, const uint8_t* scales, int64_t n, int64_t k,
                                       uint16_t* out, cudaStream_t stream);
// E4M3 bytes -> their values as bf16 bits, unscaled (exact; NaN codes 0x7F / 0xFF give NaN), n elements;
// q and out 16-byte aligned.
cudaError_t cuda_fp8_dequantize_bf16(const uint8_t* q, int64_t n, uint16_t* out, cudaStream_t stream);

}  // namespace nibble
