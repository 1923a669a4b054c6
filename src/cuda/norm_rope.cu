// RMSNorm, and Qwen3's per-head q/k RMSNorm + RoPE fused with the KV-cache append, for cuda_backend.
#include <cmath>

#include "cuda/backend_ops.h"
#include "cuda/kernel_util.cuh"
#include "cuda/kv_cache.cuh"

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
    kernel::grid_dependency_wait();  // PDL: what the kernel before wrote is visible from here
    kernel::grid_dependency_trigger();
    const float* xr = x + blockIdx.x * cols;
    float ss = 0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) ss += xr[j] * xr[j];
    ss = block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / float(cols) + eps);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x)
        out[blockIdx.x * cols + j] = w[j] * (xr[j] * inv);
}

// One block per (token, head) over the nh q heads, the nkv k heads, then the nkv v heads; blockDim =
// round_up(hd/2, 32), thread i holding the RoPE pair (i, i + hd/2). q and k are normed, rotated and
// written back in place; k and v are stored into the cache as KV encodes them.
template <class KV>
__global__ void rope_and_cache_kernel(float* q, float* k, const float* v, const float* q_norm,
                                      const float* k_norm, const int32_t* slots, const int32_t* positions,
                                      const float* inv_freq, int64_t nh, int64_t nkv, int64_t hd, float eps,
                                      typename KV::storage* kc, typename KV::storage* vc, kv_pages pages) {
    kernel::grid_dependency_wait();  // PDL: what the kernel before wrote is visible from here
    kernel::grid_dependency_trigger();
    const int64_t t = blockIdx.x, h = blockIdx.y, half = hd / 2;
    const int i = threadIdx.x;
    const int64_t kv_dim = nkv * hd;
    const int64_t row = pages.row(slots[t], positions[t], kv_dim);
    if (h >= nh + nkv) {  // a v head: stored as is
        const int64_t off = (h - nh - nkv) * hd;
        if (i < half) {
            vc[row + off + i] = KV::encode(v[t * kv_dim + off + i]);
            vc[row + off + i + half] = KV::encode(v[t * kv_dim + off + i + half]);
        }
        return;
    }
    const bool is_q = h < nh;
    float* x = is_q ? q + (t * nh + h) * hd : k + t * kv_dim + (h - nh) * hd;
    const float* nw = is_q ? q_norm : k_norm;
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
        const float y0 = x0 * c - x1 * s, y1 = x1 * c + x0 * s;
        x[i] = y0;
        x[i + half] = y1;
        if (!is_q) {
            const int64_t off = row + (h - nh) * hd;
            kc[off + i] = KV::encode(y0);
            kc[off + i + half] = KV::encode(y1);
        }
    }
}

template <class KV>
cudaError_t launch_rope_and_cache(float* q, float* k, const float* v, const float* q_norm,
                                  const float* k_norm, const int32_t* slots, const int32_t* positions,
                                  const float* inv_freq, int64_t T, int64_t nh, float eps,
                                  const cuda_kv_cache& kv, int64_t layer, cudaStream_t st) {
    const int64_t hd = kv.head_dim, nkv = kv.n_kv;
    const unsigned threads = unsigned((hd / 2 + 31) / 32 * 32);
    return launch_pdl(
        rope_and_cache_kernel<KV>, dim3(unsigned(T), unsigned(nh + 2 * nkv)), dim3(threads), 0, st, q, k, v,
        q_norm, k_norm, slots, positions, inv_freq, nh, nkv, hd, eps,
        static_cast<typename KV::storage*>(kv.k), static_cast<typename KV::storage*>(kv.v),
        kv_pages{kv.tables, kv.max_blocks, layer * kv.n_blocks << kv.block_shift, int(kv.block_shift)});
}

}  // namespace

cudaError_t cuda_rms_norm(const float* x, const float* w, int64_t rows, int64_t cols, float eps, float* out,
                          cudaStream_t st) {
    if (rows < 0 || cols <= 0 || rows > INT32_MAX) return cudaErrorInvalidValue;
    if (rows == 0) return cudaSuccess;
    return launch_pdl(rms_norm_kernel, dim3(unsigned(rows)), dim3(256), 0, st, x, w, cols, eps, out);
}

int cuda_kv_type_bytes(cuda_kv_type t) {
    return t == cuda_kv_f32 ? 4 : t == cuda_kv_bf16 ? 2 : 1;
}

cudaError_t cuda_rope_and_cache(float* q, float* k, const float* v, const float* q_norm, const float* k_norm,
                                const int32_t* slots, const int32_t* positions, const float* inv_freq,
                                int64_t T, int64_t nh, float eps, const cuda_kv_cache& kv, int64_t layer,
                                cudaStream_t st) {
    const int64_t hd = kv.head_dim, nkv = kv.n_kv;
    if (T < 0 || nh <= 0 || nkv <= 0 || hd <= 0 || hd % 2 || hd > 2048 || T > INT32_MAX ||
        nh + 2 * nkv > 65535 || layer < 0 || layer >= kv.n_layers || !kv.k || !kv.v || !kv.tables ||
        kv.block_shift < 0 || kv.block_shift > 20)
        return cudaErrorInvalidValue;
    if (T == 0) return cudaSuccess;
    switch (kv.type) {
        case cuda_kv_f32:
            return launch_rope_and_cache<kv_f32>(q, k, v, q_norm, k_norm, slots, positions, inv_freq, T, nh,
                                                 eps, kv, layer, st);
        case cuda_kv_bf16:
            return launch_rope_and_cache<kv_bf16>(q, k, v, q_norm, k_norm, slots, positions, inv_freq, T, nh,
                                                  eps, kv, layer, st);
        case cuda_kv_fp8:
            return launch_rope_and_cache<kv_fp8>(q, k, v, q_norm, k_norm, slots, positions, inv_freq, T, nh,
                                                 eps, kv, layer, st);
    }
    return cudaErrorInvalidValue;
}

}  // namespace nibble
