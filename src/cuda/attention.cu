// Causal grouped-query attention over the float32 KV cache, for cuda_backend. A straightforward
// correct kernel (not tuned): one block per (token, head); keys are scored a chunk at a time into
// shared memory (one warp per key), and an online softmax rescales the running output per chunk, so any
// context length fits.
#include <cmath>

#include "cuda/backend_ops.h"

namespace nibble {

namespace {

constexpr int k_chunk = 256;
constexpr int k_attn_threads = 128;

template <bool MAX>
__device__ float block_reduce(float v, float* part) {
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        v = MAX ? fmaxf(v, w) : v + w;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) part[warp] = v;
    __syncthreads();
    float r = part[0];
    for (int i = 1; i < nw; ++i) r = MAX ? fmaxf(r, part[i]) : r + part[i];
    __syncthreads();
    return r;
}

__global__ void attention_kernel(const float* q, const float* kc, const float* vc, const int32_t* slots,
                                 const int32_t* positions, int64_t nh, int64_t nkv, int64_t hd, int64_t layer,
                                 int64_t n_layers, int64_t max_ctx, float scale, float* out) {
    extern __shared__ float sm[];
    float* qs = sm;          // [hd]
    float* os = sm + hd;     // [hd]
    float* p = sm + 2 * hd;  // [k_chunk]
    __shared__ float part[32];
    const int64_t t = blockIdx.x, h = blockIdx.y, kvh = h / (nh / nkv), kv_dim = nkv * hd;
    const int32_t pos = positions[t];
    const float* base_k = kc + (int64_t(slots[t]) * n_layers + layer) * max_ctx * kv_dim + kvh * hd;
    const float* base_v = vc + (int64_t(slots[t]) * n_layers + layer) * max_ctx * kv_dim + kvh * hd;
    for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) {
        qs[i] = q[(t * nh + h) * hd + i];
        os[i] = 0.0f;
    }
    __syncthreads();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    float m = -INFINITY, l = 0.0f;
    for (int32_t c0 = 0; c0 <= pos; c0 += k_chunk) {
        const int32_t len = min(k_chunk, pos + 1 - c0);
        for (int32_t j = warp; j < len; j += nw) {
            const float* kr = base_k + int64_t(c0 + j) * kv_dim;
            float d = 0;
            for (int64_t i = lane; i < hd; i += 32) d += qs[i] * kr[i];
            for (int o = 16; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
            if (lane == 0) p[j] = d * scale;
        }
        __syncthreads();
        float cm = -INFINITY;
        for (int32_t j = threadIdx.x; j < len; j += blockDim.x) cm = fmaxf(cm, p[j]);
        cm = block_reduce<true>(cm, part);
        const float m_new = fmaxf(m, cm);
        const float alpha = expf(m - m_new);  // 0 on the first chunk (m = -inf)
        float cs = 0;
        for (int32_t j = threadIdx.x; j < len; j += blockDim.x) cs += (p[j] = expf(p[j] - m_new));
        cs = block_reduce<false>(cs, part);  // its barrier also publishes p
        l = l * alpha + cs;
        m = m_new;
        for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) {
            float acc = 0;
            for (int32_t j = 0; j < len; ++j) acc += p[j] * base_v[int64_t(c0 + j) * kv_dim + i];
            os[i] = os[i] * alpha + acc;
        }
        __syncthreads();  // p is rewritten by the next chunk
    }
    for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) out[(t * nh + h) * hd + i] = os[i] / l;
}

}  // namespace

cudaError_t cuda_attention(const float* q, const float* k_cache, const float* v_cache, const int32_t* slots,
                           const int32_t* positions, int64_t T, int64_t nh, int64_t nkv, int64_t hd,
                           int64_t layer, int64_t n_layers, int64_t max_ctx, float* out, cudaStream_t st) {
    if (T < 0 || nh <= 0 || nkv <= 0 || nh % nkv || hd <= 0 || hd > 1024 || T > INT32_MAX || nh > 65535)
        return cudaErrorInvalidValue;
    if (T == 0) return cudaSuccess;
    const size_t smem = (2 * size_t(hd) + k_chunk) * sizeof(float);
    attention_kernel<<<dim3(unsigned(T), unsigned(nh)), k_attn_threads, smem, st>>>(
        q, k_cache, v_cache, slots, positions, nh, nkv, hd, layer, n_layers, max_ctx, 1.0f / sqrtf(float(hd)),
        out);
    return cudaGetLastError();
}

}  // namespace nibble
