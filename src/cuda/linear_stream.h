// Weight-streaming linear for decode batches (m = 1..16) on CUDA cores: NVFP4, FP8 (E4M3) or BF16
// weights, FP32 activations and accumulation.
//
//   y[m, n] = row_mul[n] · (x[m, k] · Wᵀ) (+ bias[n])
//
// Weight layouts (the checkpoint's own, read in place; core/weights.h):
//   nvfp4  packed u8 [n, k/2] (even k in the low nibble) + E4M3 block scales u8 [n, k/16], row-major;
//          w = e2m1 × e4m3 × global_mul (e2m1 × e4m3 is exact; global_mul applied once per output)
//   fp8    E4M3 u8 [n, k] × scales: tensor (fp8_scales [1]), channel ([n]) or block
//          ([ceil(n/128), ceil(k/128)], applied per 16-value unit inside the sum)
//   bf16   u16 [n, k]
//   x f32 [m, k] row-major (16-byte aligned), bias f32 [n] or null, y f32 [m, n] row-major.
//
// Contract: 1 <= m <= 16; n >= 0; every pointer 16-byte aligned (scales: 4-byte); k > 0 with
// nvfp4: k % 32 == 0, fp8: k % 16 == 0, bf16: k % 8 == 0; otherwise cudaErrorInvalidValue. The weight
// and scale arrays may be read up to 16 bytes past their end (allocate slack). y must not alias x.
// Deterministic: the same inputs give the same bits on every run.
//
// Programmatic dependent launch (sm_90+): the kernel issues its first weight loads before waiting for the
// previous kernel on the stream, so the weights must not be written by the kernel launched just before
// it (they never are: weights are uploaded synchronously). NIBBLE_NO_PDL=1 turns it off.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace nibble {

enum cuda_stream_format : int { cuda_stream_nvfp4 = 0, cuda_stream_fp8 = 1, cuda_stream_bf16 = 2 };
// FP8 scale granularity, as fp8_granularity in core/quant.h.
enum cuda_stream_scales : int {
    cuda_stream_scale_tensor = 0,
    cuda_stream_scale_channel = 1,
    cuda_stream_scale_block = 2
};

// Activation fake quantization fused into the kernel's staging of x, bit for bit the values of
// cuda_fp8_fake_quantize (per token: group = k) / cuda_fp8_static_fake_quantize / cuda_nvfp4_fake_quantize
// (backend_ops.h), so that decode linears of W8A8 / W4A4 schemes take x unquantized, without a separate
// launch. act_scale: the static FP8 input scale, or the NVFP4 input global scale.
enum cuda_stream_act : int {
    cuda_stream_act_none = 0,
    cuda_stream_act_fp8_token = 1,
    cuda_stream_act_fp8_static = 2,
    cuda_stream_act_nvfp4 = 3
};

struct cuda_stream_weight {
    cuda_stream_format format = cuda_stream_nvfp4;
    const void* data = nullptr;             // packed codes / E4M3 bytes / BF16 values
    const uint8_t* block_scales = nullptr;  // nvfp4: E4M3 [n, k/16]
    const float* fp8_scales = nullptr;      // fp8: [1], [n] or [ceil(n/128) · ceil(k/128)]
    cuda_stream_scales fp8_granularity = cuda_stream_scale_tensor;
    float global_mul = 1.0f;  // nvfp4: CT 1/weight_global_scale, ModelOpt weight_scale_2
    int64_t n = 0, k = 0;
    cuda_stream_act act = cuda_stream_act_none;  // the same for every part of a launch
    float act_scale = 1.0f;
    // The caller accepts x rounded to FP16 with FP16 sums inside each 16-weight block (weight-only
    // layers): see cuda_linear_stream_fp16_x.
    bool fp16_x = false;
};

// NVFP4 at m <= 2 with every part's fp16_x set: x staged in FP16 (scaled per row by a power of two) and
// the products of each 16-weight block summed by HFMA2, FP32 across blocks; |error| <= ~9 · 2^-11 Σ|x·w|
// per output instead of ~1e-6, one HFMA2 per two weights instead of an FFMA per weight (the order of the FP16
// activations that weight-only prefill already multiplies, cuda_row_scale_f16). On unless
// NIBBLE_GEMV_HFMA2=0, or as last set (tests, A/B runs): NVFP4 W4A16 batch 1 took 3.341 instead of
// 3.639 ms a step (synthetic Qwen3-8B, H200, 2026-12-01); bench/gemv_variants times both.
bool cuda_linear_stream_fp16_x();
void cuda_linear_stream_set_fp16_x(bool on);

// Whether cuda_linear_stream takes this weight (format and k as in the contract above).
bool cuda_linear_stream_supports(cuda_stream_format f, int64_t k);

cudaError_t cuda_linear_stream(const float* x, int64_t m, const cuda_stream_weight& w,
                               const float* bias_or_null, float* y, cudaStream_t stream);

// Several weights over the same x in one launch (q/k/v): up to 3 parts with the same format, k and FP8
// granularity, each with its own data, scales, multiplier, n, bias and output y [m, part n].
// accumulate: y += the result (the residual add of a transformer block; y is read, not only written);
// only where x fits in shared memory at once (cuda_linear_stream_single_chunk), else
// cudaErrorInvalidConfiguration; not with SwiGLU.
struct cuda_stream_part {
    cuda_stream_weight w;  // format, k and fp8_granularity must equal those of parts[0]
    const float* bias = nullptr;
    float* y = nullptr;
    bool accumulate = false;
};
constexpr int cuda_stream_max_parts = 3;
// An RMSNorm applied to x as the kernel stages it: the linear multiplies w[j] · (x[j] · inv_rms), inv_rms =
// 1 / sqrt(Σ_j x[j]² / k + eps) per row (cuda_rms_norm's formula; the sum in another order, so the result
// differs from the separate norm in float32 rounding only). w: f32 [k]; null for none. With an activation
// quantization (cuda_stream_act) the normed values are quantized.
struct cuda_stream_norm {
    const float* w = nullptr;
    float eps = 0.0f;
};
cudaError_t cuda_linear_stream_parts(const float* x, int64_t m, const cuda_stream_part* parts, int n_parts,
                                     cudaStream_t stream, const cuda_stream_norm& norm = {});
// Whether x [m, k] of this format fits in the kernel's shared memory at once (else it is staged in
// k-chunks): required by SwiGLU and accumulate.
bool cuda_linear_stream_single_chunk(cuda_stream_format f, int64_t m, int64_t k);
// SwiGLU in one launch: parts[0].y [m, n] = silu(x · gateᵀ) · (x · upᵀ), gate = parts[0], up = parts[1]
// (same n; biases allowed; no accumulate), the CPU's silu formula. Only when x fits in shared memory at
// once (cuda_linear_stream_single_chunk).
cudaError_t cuda_linear_stream_swiglu(const float* x, int64_t m, const cuda_stream_part* parts,
                                      cudaStream_t stream, const cuda_stream_norm& norm = {});

// Diagnostics: with NIBBLE_GEMV_TRACE=FILE, every block of every batch-1 streaming launch records when it
// started (%globaltimer) and, in SM cycles from there, when its wait for the previous kernel returned, when
// x was staged, when warp 0's first weights had arrived, when warp 0 finished its items and when the block
// was done (one 64-byte record per block into a device ring of the last 2^18 records; tools/gemv_timeline.py
// reads FILE). The recording kernels are separate instantiations (m = 1), so the default ones carry none of
// it. cuda_linear_stream_trace_begin allocates the ring (call it outside graph capture; `began`: whether it
// did, false without the variable or while a ring exists); cuda_linear_stream_trace_end, by the caller that
// began, writes FILE and frees it. Every launch in between (of any caller) records.
cudaError_t cuda_linear_stream_trace_begin(bool& began);
void cuda_linear_stream_trace_end();

}  // namespace nibble
