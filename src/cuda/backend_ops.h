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
// Splits float32 into two BF16 arrays with x = hi + lo to within 2^-17 |x| (for BF16 tensor-core GEMMs
// that must track FP32 results: two products, hi and lo, summed in FP32).
cudaError_t cuda_split_bf16(const float* x, int64_t n, void* hi, void* lo, cudaStream_t st);
// x[i] += y[i].
cudaError_t cuda_add(float* x, const float* y, int64_t n, cudaStream_t st);
// Residual add fused with RMSNorm: x[r, :] += y[r, :], then out[r, :] = x[r, :] / rms(x[r, :]) * w; out
// must not alias x or y. cols <= 8192.
cudaError_t cuda_add_rms_norm(float* x, const float* y, const float* w, int64_t rows, int64_t cols, float eps,
                              float* out, cudaStream_t st);
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

// --- the KV cache (written by norm_rope.cu, read by attention.cu; element encodings in kv_cache.cuh)
// How K and V values are stored: float32, BF16 (RNE) or FP8 E4M3 bytes (scale 1, RNE saturating at
// ±448).
enum cuda_kv_type : int { cuda_kv_f32 = 0, cuda_kv_bf16 = 1, cuda_kv_fp8 = 2 };
// Layout (paged, core/backend.h): K and V are each [n_layers][n_blocks][block_size][n_kv · head_dim]
// elements of `type`, densely packed; tables is the device copy of the block tables, [n_slots][max_blocks]
// int32 (core/kv_tables.h). The row of (slot, layer, pos) starts at element ((layer · n_blocks +
// tables[slot · max_blocks + pos / block_size]) · block_size + pos % block_size) · n_kv · head_dim, KV head
// h's values at h · head_dim within it. block_size = 1 << block_shift. The buffers are 16-byte aligned
// (cudaMalloc). max_ctx bounds every position (the split plan depends on it).
struct cuda_kv_cache {
    void* k = nullptr;
    void* v = nullptr;
    cuda_kv_type type = cuda_kv_f32;
    int64_t n_blocks = 0, block_shift = 4, n_layers = 0, n_kv = 0, head_dim = 0;
    const int32_t* tables = nullptr;
    int64_t max_blocks = 0, max_ctx = 0;
};
// Bytes of one stored element.
int cuda_kv_type_bytes(cuda_kv_type t);

// RoPE fused with the cache append, one launch: in place on q [T, nh·hd] and k [T, nkv·hd], per-head
// RMSNorm with q_norm / k_norm [hd] when non-null, then RoPE (rotate_half pairs (i, i + hd/2), angle
// positions[t] · inv_freq[i]); then k (rotated) and v [T, nkv·hd] are stored, encoded as kv.type, at
// (slots[t], layer, positions[t]). hd = kv.head_dim even, <= 2048; slots and positions in range and inside
// their block tables (the caller validates them; they and the tables are read on the device only, so the
// launch depends on T and sizes only).
cudaError_t cuda_rope_and_cache(float* q, float* k, const float* v, const float* q_norm, const float* k_norm,
                                const int32_t* slots, const int32_t* positions, const float* inv_freq,
                                int64_t T, int64_t nh, float eps, const cuda_kv_cache& kv, int64_t layer,
                                cudaStream_t st);

// --- attention.cu
// Causal GQA over the cache: out[t, h] = softmax(q[t, h] · K[slots[t], layer, 0..positions[t]]ᵀ /
// sqrt(hd)) · V (rows found through the block tables; FP32 math), head h reading KV head h / (nh / n_kv); q
// and out [T, nh·hd] float32. Split-KV (flash-decoding): one block per (token, KV head, group of up to 8 of
// its q heads, split) reads each K/V row once for all those heads. A token's n = positions[t] + 1 keys (read
// on the device) are cut into max(1, min(n_splits, ceil(n / 64), max(n_fill, ceil(n / 512)))) near-equal
// ranges (starts at multiples of 16); blocks past the last range exit. A token with one range writes out
// directly; otherwise each range's partial (max, sum, output) goes to `scratch` and a combine kernel merges
// them. Steps the tensor-core prefill kernel serves (attention_prefill.h: T >= 64, tiles of one sequence's
// tokens) go there, and the rest of such a step runs with one range per token (split ignored). Launch
// sizes depend only on T, the sizes and `split`. Contract: nh % n_kv == 0, hd = kv.head_dim even and
// <= 256, 1 <= split.n_fill <= split.n_splits <= 64, and for n_splits > 1 scratch holds at least
// T · nh · n_splits · (hd + 2) floats (else cudaErrorInvalidValue).
struct cuda_attention_split {
    int n_splits = 1;  // key ranges per token at most (grid and scratch size)
    int n_fill = 1;    // ranges wanted per token to fill the GPU, when the token has the keys for them
};
// The split for a step of T tokens: n_fill = enough blocks to fill n_sm SMs 4 times over (small T);
// n_splits = the larger of n_fill and one range per 512 keys of max_ctx (so that one long sequence in a
// big step is not a tail; at most 8 once T alone fills the GPU), capped by 64, by max_ctx / 64 and by
// what scratch_floats holds. Depends on T and static sizes only.
cuda_attention_split cuda_attention_plan(int64_t T, int64_t nh, const cuda_kv_cache& kv, int n_sm,
                                         int64_t scratch_floats);
// The scratch floats for cuda_attention_plan's splits at every T up to where they stop growing (steps
// longer than that get fewer splits from the same scratch), to allocate once with the cache.
int64_t cuda_attention_scratch_floats(int64_t nh, const cuda_kv_cache& kv, int n_sm);
cudaError_t cuda_attention(const float* q, const cuda_kv_cache& kv, const int32_t* slots,
                           const int32_t* positions, int64_t T, int64_t nh, int64_t layer,
                           cuda_attention_split split, float* scratch, int64_t scratch_floats, float* out,
                           cudaStream_t st);

// --- linear.cu: activation fake quantization (bit-exact with core/quant.cpp and cpu_quantize_activations).
// W4A4: out = nvfp4_fake_quantize_activation(x) per row of k (k % 16 == 0), input_global as stored (CT).
cudaError_t cuda_nvfp4_fake_quantize(const float* x, int64_t rows, int64_t k, float input_global, float* out,
                                     cudaStream_t st);
// FP8 dynamic: per `group` of each row (group = k: per token), s = amax/448 (1 when 0), x' = e4m3(x/s)·s.
cudaError_t cuda_fp8_fake_quantize(const float* x, int64_t rows, int64_t k, int64_t group, float* out,
                                   cudaStream_t st);
// FP8 static: x' = e4m3_sat(x / scale) · scale.
cudaError_t cuda_fp8_static_fake_quantize(const float* x, int64_t n, float scale, float* out,
                                          cudaStream_t st);

// --- linear.cu: operands and epilogue of the tensor-core linear (cuda_backend::linear_tensor_core), BF16
// as bf16 bits. Activations reach the BF16 GEMMs either split (x = hi + lo, two GEMM rows per row) or, when
// they are fake-quantized values on a short grid, exactly (one BF16 row and a scale outside the GEMM).
// out[i] = bf16(x[i] · mul) (RNE). Exact (out = x · mul up to float32 rounding) when x · mul lies on the
// BF16 grid: W4A4 activations times their input global (e2m1 × e4m3, 6 significant bits) and static FP8
// activations times 1 / input_scale (an e4m3 value), while those products stay normal floats.
cudaError_t cuda_scale_to_bf16(const float* x, int64_t n, float mul, void* out, cudaStream_t st);
// out[i] = e4m3_sat(x[i] · mul) as E4M3 bytes (RNE) for the FP8 GEMM (fp8_gemm.h). Exact, as
// cuda_scale_to_bf16, for static FP8 activations times 1 / input_scale: the E4M3 code itself.
cudaError_t cuda_scale_to_e4m3(const float* x, int64_t n, float mul, void* out, cudaStream_t st);
// Per row r of x [rows, k]: s = amax|x_r| / target (1 for an all-zero row), out[r, :] = bf16(x_r / s),
// row_scale[r] = s. Exact for per-token FP8 activations with target 448: their largest code is ±448, so
// x / s is the E4M3 code up to three float32 roundings, and codes have 4 significant bits.
cudaError_t cuda_row_normalize_bf16(const float* x, int64_t rows, int64_t k, float target, void* out,
                                    float* row_scale, cudaStream_t st);
// Per row r of x [rows, k]: 2^e with the row's amax · 2^-e in [2^14, 2^15) (e = 0 for an all-zero row,
// e >= -100),
// out[r, :] = fp16(x_r · 2^-e) as f16 bits, row_scale[r] = 2^e. FP16 keeps 11 significant bits: |x - out ·
// 2^e| <= 2^-11 |x| (values below 2^-24 of the row's amax lose more, as FP16 subnormals). k % 4 == 0, x
// 16-byte aligned.
cudaError_t cuda_row_scale_f16(const float* x, int64_t rows, int64_t k, void* out, float* row_scale,
                               cudaStream_t st);
// The same rows as E4M3 bytes for the FP8 GEMM (fp8_gemm.h): s = amax|x_r| / 448 (1 for an all-zero row),
// out[r, :] = e4m3_sat(x_r / s) (RNE; NaN stays NaN, 0x7F), row_scale[r] = s; out is [rows, k] bytes. For
// per-token FP8 activations (x = fl(c · s0), c the E4M3 code, ±448 the row's largest) x / s is c up to three
// float32 roundings, far inside half an E4M3 step, so the bytes are the codes exactly and e4m3(out) · s = x
// up to float32 rounding of the scale (s is s0 or a neighbour).
cudaError_t cuda_row_quantize_e4m3(const float* x, int64_t rows, int64_t k, void* out, float* row_scale,
                                   cudaStream_t st);
// FP8 128x128 block scales applied on the activation side, for `groups` consecutive 128-row weight blocks:
// v = x[r, j] · scales[g · scale_stride + j / 128] (float32), hi = bf16(v), lo = bf16(v - hi), written as
// out[g] = [hi rows; lo rows], bf16 [groups][2 · rows][k] (|v - hi - lo| <= 2^-17 |v|).
cudaError_t cuda_split_bf16_block_scaled(const float* x, int64_t rows, int64_t k, const float* scales,
                                         int64_t scale_stride, int64_t groups, void* out, cudaStream_t st);
// out[r, c] = (Σ_{p < parts} y(p · rows + r, c)) · row_scale[r] · col_scale[c] + bias[c] for rows × n, each
// of row_scale, col_scale, bias optional (null). y holds `parts` stacked GEMM outputs of rows × n, cut into
// blocks of block_cols columns: with b = c / block_cols, element (i, c) is at
// b · block_cols · parts · rows + i · block_cols + (c - b · block_cols). block_cols = n: plain row-major
// [parts · rows, n]; block_cols > n (parts = 1): rows of block_cols floats, the first n read (a GEMM output
// with padded rows). out may alias y when parts = 1 and block_cols = n.
cudaError_t cuda_linear_epilogue(const float* y, int parts, int64_t rows, int64_t n, int64_t block_cols,
                                 const float* row_scale, const float* col_scale, const float* bias,
                                 float* out, cudaStream_t st);

// --- sampling.cu
// backend::top_k_rows on the device: for each row of logits [rows, vocab], values / ids [rows, k] the k
// largest entries by value descending then id ascending (NaN as -inf; past the vocabulary -inf and id
// -1; values bit for bit as in the logits) and lse [rows] = log Σ exp(row) (float chunk sums combined in
// double; -inf / +inf as backend.h says), all in device memory. scratch: device memory of at least
// cuda_top_k_rows_scratch_bytes(rows, vocab, k). Contract: 1 <= k <= 256, 1 <= rows <= 65535,
// 1 <= vocab <= INT32_MAX.
size_t cuda_top_k_rows_scratch_bytes(int64_t rows, int64_t vocab, int k);
cudaError_t cuda_top_k_rows(const float* logits, int64_t rows, int64_t vocab, int k, void* scratch,
                            size_t scratch_bytes, float* values, int32_t* ids, float* lse, cudaStream_t st);

}  // namespace nibble
