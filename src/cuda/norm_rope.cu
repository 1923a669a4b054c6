// RMSNorm, Qwen3's per-head q/k RMSNorm + RoPE, and the KV-cache append, for cuda_backend.
#include <cmath>

#include "cuda/backend_ops.h"

namespace nibble {

namespace {

// Block-wide sum (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
__device__ float block_sum(float v) {
    __shared__ float part[32];
    __shared__ float total;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float s = lane < int(blockDim.x >> 5) ? part[lane] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) total = s;
    }
    __syncthreads();
    float r = total;
    __syncthreads();  // part/total may be reused by the next call
    return r;
}

__global__ void rms_norm_kernel(const float* x, const float* w, int64_t cols, float eps, float* out) {
    const float* xr = x + blockIdx.x * cols;
    float ss = 0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) ss += xr[j] * xr[j];
    ss = block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / float(cols) + eps);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
        out[blockIdx.x * cols + j] = w[j] * (xr[j] * inv);
}

// One block per (token, head) over the nh q heads then the nkv k heads; blockDim = round_up(hd/2, 32).
__global__ void qk_norm_rope_kernel(float* q, float* k, const float* q_norm, const float* k_norm,
                                    const int32_t* positions, const float* inv_freq, int64_t nh, int64_t nkv,
                                    int64_t hd, float eps) {
    const int64_t t = blockIdx.x, h = blockIdx.y;
    const bool is_q = h < nh;
    float* x = is_q ? q + (t * nh + h) * hd : k + (t * nkv + (h - nh)) * hd;
    const float* nw = is_q ? q_norm : k_norm;
    const int64_t half = hd / 2;
    const int i = threadIdx.x;
    float x0 = i < half ? x[i] : 0.0f, x1 = i < half ? x[i + half] : 0.0f;
    if (nw) {
        const float ss = block_sum(x0 * x0 + x1 * x1);
        const float inv = 1.0f / sqrtf(ss / float(hd) + eps);
        if (i < half) {
            x0 = nw[i] * (x0 * inv);
            x1 = nw[i + half] * (x1 * inv);
        }
    }
    if (i < half) {
        const float a = float(positions[t]) * inv_freq[i];
        const float c = cosf(a), s = sinf(a);
        x[i] = x0 * c - x1 * s;
        x[i + half] = x1 * c + x0 * s;
    }
}

__global__ void kv_append_kernel(const float* k, const float* v, const int32_t* slots,
                                 const int32_t* positions, int64_t kv_dim, int64_t layer, int64_t n_layers,
                                 int64_t max_ctx, float* kc, float* vc) {
    const int64_t t = blockIdx.x;
    const int64_t off = ((int64_t(slots[t]) * n_layers + layer) * max_ctx + positions[t]) * kv_dim;
    for (int64_t j = threadIdx.x; j < kv_dim; j += blockDim.x) {
        kc[off + j] = k[t * kv_dim + j];
        vc[off + j] = v[t * kv_dim + j];
    }
}

}  // namespace

cudaError_t cuda_rms_norm(const float* x, const float* w, int64_t rows, int64_t cols, float eps, float* out,
                          cudaStream_t st) {
    if (rows < 0 || cols <= 0 || rows > INT32_MAX) return cudaErrorInvalidValue;
    if (rows == 0) return cudaSuccess;
    rms_norm_kernel<<<unsigned(rows), 256, 0, st>>>(x, w, cols, eps, out);
    return cudaGetLastError();
}

cudaError_t cuda_qk_norm_rope(float* q, float* k, const float* q_norm, const float* k_norm,
                              const int32_t* positions, const float* inv_freq, int64_t T, int64_t nh,
                              int64_t nkv, int64_t hd, float eps, cudaStream_t st) {
    if (T < 0 || nh <= 0 || nkv <= 0 || hd <= 0 || hd % 2 || hd > 2048 || T > INT32_MAX || nh + nkv > 65535)
        return cudaErrorInvalidValue;
    if (T == 0) return cudaSuccess;
    const unsigned threads = unsigned((hd / 2 + 31) / 32 * 32);
    qk_norm_rope_kernel<<<dim3(unsigned(T), unsigned(nh + nkv)), threads, 0, st>>>(
        q, k, q_norm, k_norm, positions, inv_freq, nh, nkv, hd, eps);
    return cudaGetLastError();
}

cudaError_t cuda_kv_append(const float* k, const float* v, const int32_t* slots, const int32_t* positions,
                           int64_t T, int64_t kv_dim, int64_t layer, int64_t n_layers, int64_t max_ctx,
                           float* k_cache, float* v_cache, cudaStream_t st) {
    if (T < 0 || kv_dim <= 0 || T > INT32_MAX) return cudaErrorInvalidValue;
    if (T == 0) return cudaSuccess;
    kv_append_kernel<<<unsigned(T), 256, 0, st>>>(k, v, slots, positions, kv_dim, layer, n_layers, max_ctx,
                                                  k_cache, v_cache);
    return cudaGetLastError();
}

}  // namespace nibble
