// Top-k of logit rows with their log-sum-exp (cuda_top_k_rows, backend_ops.h), for the sampler's
// candidate path (backend::top_k_rows).
//
// Keys: a (value, id) pair packs into a uint64 whose unsigned order is the wanted one: the float's bits
// made order-preserving in the high word (NaN read as -inf, -0 as +0 so that zeros tie), ~id in the low
// word so that the lower id ranks first among equal values. Key 0 is below every real key (-inf's high
// word is 0x007fffff) and pads chunks; it decodes to (-inf, id -1).
//
// Rounds: each block bitonic-sorts a chunk of up to k_chunk keys in shared memory (descending) and keeps
// its first k. Round 1 reads the logits (chunk = 4096 entries of a row; it also writes the chunk's max
// and Σ exp(l - max) in float); each further round sorts chunks of the previous round's survivors, until
// one chunk per row remains (vocab 151936, k 256: 38 chunks -> 9728 keys -> 3 chunks -> 768 keys -> 1).
// k = 1 (greedy) skips the sorts: each chunk's largest key by a block reduction (top_1_chunk_kernel), the
// row's largest of those in the finish kernel.
// The finish kernel reads the winners' values from the logits themselves (bit for bit, -0 kept), and
// combines the chunk sums in double: lse = M + log Σ_c s_c exp(m_c - M).
#include <algorithm>
#include <cstdint>
#include <utility>

#include "cuda/backend_ops.h"

namespace nibble {

namespace {

constexpr int k_chunk = 4096;

__device__ __forceinline__ uint64_t make_key(float v, uint32_t id) {
    if (v != v) v = -INFINITY;
    if (v == 0.0f) v = 0.0f;  // -0 ties with +0
    const uint32_t u = __float_as_uint(v);
    const uint32_t o = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return uint64_t(o) << 32 | uint64_t(~id);
}

// The value a key was made from (pads: -inf).
__device__ __forceinline__ float key_value(uint64_t key) {
    const uint32_t o = uint32_t(key >> 32);
    if (o < 0x007fffffu) return -INFINITY;
    return __uint_as_float((o & 0x80000000u) ? (o & 0x7fffffffu) : ~o);
}

__device__ __forceinline__ bool is_pad(uint64_t key) {
    return (key >> 32) == 0;
}

// Descending bitonic sort of s[0, n), n a power of two; every thread of the block takes part.
__device__ void bitonic_sort_desc(uint64_t* s, int n) {
    for (int k = 2; k <= n; k <<= 1) {
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = threadIdx.x; i < n / 2; i += blockDim.x) {
                const int lo = 2 * i - (i & (j - 1)), hi = lo + j;
                const bool desc = (lo & k) == 0;
                const uint64_t a = s[lo], b = s[hi];
                if (desc ? a < b : a > b) s[lo] = b, s[hi] = a;
            }
            __syncthreads();
        }
    }
}

// Sum over the block, in a fixed order; the result is valid in thread 0.
__device__ float block_sum(float x, float* red) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_down_sync(0xffffffffu, x, o);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = (blockDim.x + 31) / 32;
    if (lane == 0) red[warp] = x;
    __syncthreads();
    x = 0.0f;
    if (warp == 0) {
        x = lane < n_warps ? red[lane] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) x += __shfl_down_sync(0xffffffffu, x, o);
    }
    return x;
}

// Grid (chunks, rows). Input row r: logits[r · n_in ...] (from_logits) or keys_in[r · n_in ...]. Output:
// keys_out[(r · chunks + c) · k + j] for j < k; with from_logits, stats[r · chunks + c] = (max, Σ exp).
template <bool from_logits>
__global__ void top_k_chunk_kernel(const float* logits, const uint64_t* keys_in, int64_t n_in, int k,
                                   int sort_n, uint64_t* keys_out, float2* stats) {
    __shared__ uint64_t s[k_chunk];
    __shared__ float red[32];
    const int64_t row = blockIdx.y, chunk = blockIdx.x, n_chunks = gridDim.x;
    const int64_t c0 = chunk * k_chunk;
    const int len = int(n_in - c0 < k_chunk ? n_in - c0 : k_chunk);
    for (int i = threadIdx.x; i < sort_n; i += blockDim.x) {
        uint64_t key = 0;
        if (i < len) {
            if (from_logits)
                key = make_key(logits[row * n_in + c0 + i], uint32_t(c0 + i));
            else
                key = keys_in[row * n_in + c0 + i];
        }
        s[i] = key;
    }
    __syncthreads();
    bitonic_sort_desc(s, sort_n);
    uint64_t* out = keys_out + (row * n_chunks + chunk) * k;
    for (int i = threadIdx.x; i < k; i += blockDim.x) out[i] = s[i];
    if (from_logits) {
        const float m = key_value(s[0]);
        float sum = 0.0f;
        if (m != -INFINITY && m != INFINITY)
            for (int i = threadIdx.x; i < len; i += blockDim.x) sum += expf(key_value(s[i]) - m);
        sum = block_sum(sum, red);
        if (threadIdx.x == 0) stats[row * n_chunks + chunk] = make_float2(m, sum);
    }
}

// k = 1 (greedy): round 1 without the sort. Grid (chunks, rows), k_top1_threads threads; each thread keeps
// the largest key of its entries, the block reduces them; the stats as top_k_chunk_kernel's (its sum in
// another order). keys_out[r · chunks + c] is the chunk's largest key.
constexpr int k_top1_threads = 256;
__global__ void __launch_bounds__(k_top1_threads)
    top_1_chunk_kernel(const float* logits, int64_t n_in, uint64_t* keys_out, float2* stats) {
    constexpr int per = k_chunk / k_top1_threads;
    __shared__ uint64_t best_w[k_top1_threads / 32];
    __shared__ float red[32];
    const int64_t row = blockIdx.y, chunk = blockIdx.x, n_chunks = gridDim.x;
    const int64_t c0 = chunk * k_chunk;
    const int len = int(n_in - c0 < k_chunk ? n_in - c0 : k_chunk);
    float v[per];
    uint64_t best = 0;
#pragma unroll
    for (int j = 0; j < per; ++j) {
        const int i = j * k_top1_threads + int(threadIdx.x);
        v[j] = -INFINITY;
        if (i < len) {
            const uint64_t key = make_key(logits[row * n_in + c0 + i], uint32_t(c0 + i));
            best = key > best ? key : best;
            v[j] = key_value(key);
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        const uint64_t other = __shfl_xor_sync(0xffffffffu, best, o);
        best = other > best ? other : best;
    }
    if (threadIdx.x % 32 == 0) best_w[threadIdx.x / 32] = best;
    __syncthreads();
    best = 0;
    for (int w = 0; w < k_top1_threads / 32; ++w) best = best_w[w] > best ? best_w[w] : best;
    const float m = key_value(best);
    float sum = 0.0f;
    if (m != -INFINITY && m != INFINITY)
#pragma unroll
        for (int j = 0; j < per; ++j)
            if (j * k_top1_threads + int(threadIdx.x) < len) sum += expf(v[j] - m);
    sum = block_sum(sum, red);
    if (threadIdx.x == 0) {
        keys_out[row * n_chunks + chunk] = best;
        stats[row * n_chunks + chunk] = make_float2(m, sum);
    }
}

// One block per row: the k final keys -> values (read from the logits) and ids; the chunk stats -> lse.
// n_keys > k (only with k = 1): the row has n_keys keys (one per chunk), the largest is the result.
__global__ void top_k_finish_kernel(const float* logits, int64_t vocab, const uint64_t* keys, int n_keys,
                                    int k, const float2* stats, int n_chunks, float* values, int32_t* ids,
                                    float* lse) {
    const int64_t row = blockIdx.x;
    __shared__ uint64_t top1;
    if (n_keys > k) {
        if (threadIdx.x < 32) {
            uint64_t best = 0;
            for (int i = int(threadIdx.x); i < n_keys; i += 32) {
                const uint64_t key = keys[row * n_keys + i];
                best = key > best ? key : best;
            }
            for (int o = 16; o > 0; o >>= 1) {
                const uint64_t other = __shfl_xor_sync(0xffffffffu, best, o);
                best = other > best ? other : best;
            }
            if (threadIdx.x == 0) top1 = best;
        }
        __syncthreads();
    }
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        const uint64_t key = n_keys > k ? top1 : keys[row * k + i];
        if (is_pad(key)) {
            values[row * k + i] = -INFINITY;
            ids[row * k + i] = -1;
        } else {
            const uint32_t id = ~uint32_t(key);
            const float v = logits[row * vocab + id];
            values[row * k + i] = v != v ? -INFINITY : v;
            ids[row * k + i] = int32_t(id);
        }
    }
    if (threadIdx.x != 0) return;
    float m = -INFINITY;
    for (int c = 0; c < n_chunks; ++c) m = fmaxf(m, stats[row * n_chunks + c].x);
    if (m == -INFINITY || m == INFINITY) {
        lse[row] = m;
        return;
    }
    double sum = 0.0;
    for (int c = 0; c < n_chunks; ++c) {
        const float2 st = stats[row * n_chunks + c];
        if (st.x != -INFINITY) sum += double(st.y) * exp(double(st.x) - double(m));
    }
    lse[row] = float(double(m) + log(sum));
}

int64_t chunks_of(int64_t n) {
    return (n + k_chunk - 1) / k_chunk;
}

// Bytes of one key buffer: rows × chunks × k keys; the rounds ping-pong between two (A: round 1's
// output, the largest; B: round 2's).
struct top_k_layout {
    size_t a = 0, b = 0, stats = 0;
    size_t total() const { return a + b + stats; }
};

top_k_layout layout(int64_t rows, int64_t vocab, int k) {
    top_k_layout l;
    const int64_t n1 = chunks_of(vocab);
    l.a = size_t(rows * n1 * k) * sizeof(uint64_t);
    l.b = n1 > 1 ? size_t(rows * chunks_of(n1 * k) * k) * sizeof(uint64_t) : 0;
    l.stats = size_t(rows * n1) * sizeof(float2);
    return l;
}

int pow2_at_least(int64_t n) {
    int p = 1;
    while (p < n) p <<= 1;
    return p;
}

}  // namespace

size_t cuda_top_k_rows_scratch_bytes(int64_t rows, int64_t vocab, int k) {
    return layout(rows, vocab, k).total();
}

cudaError_t cuda_top_k_rows(const float* logits, int64_t rows, int64_t vocab, int k, void* scratch,
                            size_t scratch_bytes, float* values, int32_t* ids, float* lse, cudaStream_t st) {
    if (k < 1 || k > 256 || rows < 1 || rows > 65535 || vocab < 1 || vocab > INT32_MAX)
        return cudaErrorInvalidValue;
    const top_k_layout l = layout(rows, vocab, k);
    if (scratch_bytes < l.total()) return cudaErrorInvalidValue;
    auto* a = static_cast<uint64_t*>(scratch);
    auto* b = reinterpret_cast<uint64_t*>(static_cast<char*>(scratch) + l.a);
    auto* stats = reinterpret_cast<float2*>(static_cast<char*>(scratch) + l.a + l.b);
    auto launch = [&](bool first, const uint64_t* in, int64_t n_in, uint64_t* out) {
        const int sort_n = pow2_at_least(std::max<int64_t>(std::min<int64_t>(n_in, k_chunk), k));
        const int threads = std::min(1024, std::max(32, sort_n / 2));
        const dim3 grid(unsigned(chunks_of(n_in)), unsigned(rows));
        if (first)
            top_k_chunk_kernel<true><<<grid, threads, 0, st>>>(logits, nullptr, n_in, k, sort_n, out, stats);
        else
            top_k_chunk_kernel<false><<<grid, threads, 0, st>>>(nullptr, in, n_in, k, sort_n, out, nullptr);
        return cudaGetLastError();
    };
    const int n1 = int(chunks_of(vocab));
    if (k == 1) {  // greedy: each chunk's largest key, then the largest of those in the finish kernel
        top_1_chunk_kernel<<<dim3(unsigned(n1), unsigned(rows)), k_top1_threads, 0, st>>>(logits, vocab, a,
                                                                                          stats);
        if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
        top_k_finish_kernel<<<unsigned(rows), 32, 0, st>>>(logits, vocab, a, n1, 1, stats, n1, values, ids,
                                                           lse);
        return cudaGetLastError();
    }
    if (cudaError_t e = launch(true, nullptr, vocab, a); e != cudaSuccess) return e;
    uint64_t *cur = a, *next = b;
    for (int64_t n = n1 * int64_t(k); n > k;) {  // n survivors per row, from chunks_of(n) > 1 chunks
        if (cudaError_t e = launch(false, cur, n, next); e != cudaSuccess) return e;
        n = chunks_of(n) * k;
        std::swap(cur, next);
    }
    top_k_finish_kernel<<<unsigned(rows), std::min(256, std::max(32, k)), 0, st>>>(
        logits, vocab, cur, k, k, stats, n1, values, ids, lse);
    return cudaGetLastError();
}

}  // namespace nibble
