// The kernels behind cuda_backend, one host launcher each: device pointers, sizes and a stream in, the
// launch status out (cudaErrorInvalidValue for sizes outside a launcher's contract). All tensors are
// row-major; activations float32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace nibble {

// Element types of dense tables (embeddings, norms, dense weights).
enum cuda_dense_type : int { cuda_dense_f32 = 0, cuda_dense_bf16 = 1, cuda_dense_f16 = 2 };

// --- cuda_backend.cu: elementwise and data movement
// dst[i] = float(src[i]) for n elements of type t.
cudaError_t cuda_convert_f32(const void* src, cuda_dense_type t, int64_t n, float* dst, cudaStream_t st);
// out[t, :] = float(table[ids[t], :]) for T tokens; table [vocab, hidden] of type ty. ids are validated
// by the caller.
cudaError_t cuda_embed(const void* table, cuda_dense_type ty, int64_t hidden, const int32_t* ids, int64_t T,
                       float* out, cudaStream_t st);
// x[i] += y[i].
cudaError_t cuda_add(float* x, const float* y, int64_t n, cudaStream_t st);
// out[i] = silu(gate[i]) * up[i] (out may alias gate).
cudaError_t cuda_silu_mul(const float* gate, const float* up, int64_t n, float* out, cudaStream_t st);
// dst[i, :] = src[rows[i], :] for n rows of `cols` floats.
cudaError_t cuda_gather_rows(const float* src, int64_t cols, const int32_t* rows, int64_t n, float* dst,
                             cudaStream_t st);
// y[r, :] += bias[:] for rows × n.
cudaError_t cuda_add_bias(float* y, const float* bias, int64_t rows, int64_t n, cudaStream_t st);
// out[tokens[i], :] += weights[i] · y[i, :] for i < m, rows of h floats (tokens distinct).
cudaError_t cuda_scatter_add_scaled(const float* y, const int32_t* tokens, const float* weights, int64_t m,
                                    int64_t h, float* out, cudaStream_t st);

// --- norm_rope.cu
// out[r, :] = x[r, :] / rms(x[r, :]) * w (x and out may alias); the CPU's formula.
cudaError_t cuda_rms_norm(const float* x, const float* w, int64_t rows, int64_t cols, float eps, float* out,
                          cudaStream_t st);
// In place on q [T, nh·hd] and k [T, nkv·hd]: per-head RMSNorm with q_norm / k_norm [hd] when non-null,
// then RoPE (rotate_half pairs (i, i + hd/2), angle positions[t] · inv_freq[i]). hd even, <= 1024.
cudaError_t cuda_qk_norm_rope(float* q, float* k, const float* q_norm, const float* k_norm,
                              const int32_t* positions, const float* inv_freq, int64_t T, int64_t nh,
                              int64_t nkv, int64_t hd, float eps, cudaStream_t st);
// KV append: for each token t, cache[(slot·n_layers + layer)·max_ctx + pos] = k[t] / v[t] (kv_dim floats).
cudaError_t cuda_kv_append(const float* k, const float* v, const int32_t* slots, const int32_t* positions,
                           int64_t T, int64_t kv_dim, int64_t layer, int64_t n_layers, int64_t max_ctx,
                           float* k_cache, float* v_cache, cudaStream_t st);

// --- attention.cu
// Causal GQA: out[t, h] = softmax(q[t, h] · K[slot, layer, 0..pos]ᵀ / sqrt(hd)) · V, head h reading KV
// head h / (nh / nkv). One block per (token, head); keys in chunks with an online softmax. hd <= 1024.
cudaError_t cuda_attention(const float* q, const float* k_cache, const float* v_cache, const int32_t* slots,
                           const int32_t* positions, int64_t T, int64_t nh, int64_t nkv, int64_t hd,
                           int64_t layer, int64_t n_layers, int64_t max_ctx, float* out, cudaStream_t st);

// --- linear.cu: weight decoding to float32 (exact dequantized values, the CPU's order) and activation
// fake quantization (bit-exact with core/quant.cpp and cpu_quantize_activations).
// NVFP4 packed [n, k/2], scales e4m3 [n, k/16]; eff = e4m3 / global (divide) or e4m3 × global.
cudaError_t cuda_nvfp4_decode_f32(const uint8_t* packed, const uint8_t* scales, int64_t n, int64_t k,
                                  float global, bool divide_global, float* out, cudaStream_t st);
// MXFP4 packed [n, k/2], scales e8m0 [n, k/32].
cudaError_t cuda_mxfp4_decode_f32(const uint8_t* packed, const uint8_t* scales, int64_t n, int64_t k,
                                  float* out, cudaStream_t st);
// FP8 e4m3 [n, k] × scales: granularity 0 tensor [1], 1 channel [n], 2 block [ceil(n/128), ceil(k/128)].
cudaError_t cuda_fp8_decode_f32(const uint8_t* q, const float* scales, int granularity, int64_t n, int64_t k,
                                float* out, cudaStream_t st);
// W4A4: out = nvfp4_fake_quantize_activation(x) per row of k (k % 16 == 0), input_global as stored (CT).
cudaError_t cuda_nvfp4_fake_quantize(const float* x, int64_t rows, int64_t k, float input_global, float* out,
                                     cudaStream_t st);
// FP8 dynamic: per `group` of each row (group = k: per token), s = amax/448 (1 when 0), x' = e4m3(x/s)·s.
cudaError_t cuda_fp8_fake_quantize(const float* x, int64_t rows, int64_t k, int64_t group, float* out,
                                   cudaStream_t st);
// FP8 static: x' = e4m3_sat(x / scale) · scale.
cudaError_t cuda_fp8_static_fake_quantize(const float* x, int64_t n, float scale, float* out,
                                          cudaStream_t st);

}  // namespace nibble
