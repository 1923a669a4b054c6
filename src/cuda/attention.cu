// Causal grouped-query attention over the KV cache (backend_ops.h: cuda_attention), for cuda_backend.
//
// Design (decode reads every K/V byte of the context once per step, so it must stream them):
// - Split-KV (flash-decoding). Block (token t, KV head, head chunk, split s) takes G of the q heads that
//   share the KV head (G = the group rounded up to a power of two, at most 8, at most 64 / E below) and
//   one contiguous key range of the token; K and V rows are read once for all G heads. The ranges come
//   from the token's actual position, read on the device (split_keys): the number of splits is fixed by
//   the launch (static sizes and T), a block past the token's last range exits at once.
// - Lanes: a key row of hd elements is read by LPK lanes, E elements each (E = 16 bytes of the stored
//   type: 4 f32, 8 bf16, 16 fp8, or hd/32 when that is more), so a warp reads KPW = 32 / LPK rows at a
//   time with 16-byte loads that bypass L1. Each lane group keeps its own online softmax (max m, sum l,
//   output acc[G][E]) over its keys, taken B at a time (B loads of K and V in flight per lane, one
//   rescale per batch); scores come from a shuffle reduction over the LPK lanes, in the log2 domain (q
//   is pre-scaled by log2(e) / sqrt(hd), exp2f).
// - 8 warps per block (4 where their merge buffer would pass 32 KB): a 64-key range, the shortest a split
//   gets, is one round of loads per warp. q is loaded before the position (a round trip less on the
//   critical path). At batch 1 decode is latency-bound here: a few hundred keys per layer.
// - The lane groups are merged by shuffles, the warps through shared memory. A token whose keys fit one
//   range writes its output directly; otherwise each range writes (m, l, acc) to the scratch and
//   combine_kernel merges them.
// - head_dim: padded to HDP = 64, 128 or 256 (lanes past hd load nothing). When hd is not a multiple of
//   16 bytes of the stored type, the rows are not 16-byte aligned: a generic kernel (HDP 256, G 1) loads
//   element pairs instead. FP32 math throughout; results do not depend on the split beyond float
//   rounding.
// Prefill chunks: tiles of one sequence's tokens go to the tensor-core kernel (attention_prefill.cu) when
// it serves the step; this kernel and combine_kernel skip the tokens of those tiles. Everything else
// (decode tokens, tiles that mix sequences, shapes and caches that kernel does not take) comes here: T
// blocks per KV head and split, the K/V rows of a chunk re-read per query token from L2.
#include <algorithm>
#include <cmath>

#include "cuda/attention_prefill.h"
#include "cuda/backend_ops.h"
#include "cuda/kernel_util.cuh"
#include "cuda/kv_cache.cuh"

namespace nibble {

namespace {

constexpr int k_warps = 4;  // combine_kernel, and attention_kernel where k_wide_warps do not fit
constexpr int k_threads = 32 * k_warps;
constexpr int k_wide_warps = 8;  // attention_kernel where its shared memory allows (launch_main)
constexpr int k_max_splits = 64;
constexpr int k_split_min_keys = 64;     // a token gets at most one range per this many keys
constexpr int k_split_max_keys = 512;    // ... and at least one per this many (up to n_splits)
constexpr int k_split_align = 16;        // range starts are multiples of this
constexpr int k_blocks_per_sm = 4;       // small steps: this many blocks per SM wanted
constexpr int k_long_step_splits = 8;    // steps that fill the GPU anyway: at most this many splits
constexpr int k_long_step_tokens = 128;  // the scratch holds those splits for steps up to this many tokens
constexpr float k_log2e = 1.4426950408889634f;

// The key range [begin, end) of split s of a token with n_keys keys, and how many ranges it has.
struct key_range {
    int begin, end, n_ranges;
};

__host__ __device__ inline key_range split_keys(int n_keys, int s, int n_splits, int n_fill) {
    const int by_length = (n_keys + k_split_max_keys - 1) / k_split_max_keys;
    const int cap = std::min(n_splits, (n_keys + k_split_min_keys - 1) / k_split_min_keys);
    int n = std::max(1, std::min(std::max(n_fill, by_length), cap));
    int chunk = (n_keys + n - 1) / n;
    chunk = (chunk + k_split_align - 1) / k_split_align * k_split_align;
    n = (n_keys + chunk - 1) / chunk;
    const int b = s * chunk;
    return {b, std::min(b + chunk, n_keys), n};
}

// Compile-time shape of the main kernel for element type KV, padded head dim HDP, WIDE (16-byte) loads.
template <class KV, int HDP, bool WIDE>
struct lanes {
    static constexpr int vec = 16 / KV::bytes;                                     // elements per 16 B
    static constexpr int e = WIDE ? (vec > HDP / 32 ? vec : HDP / 32) : HDP / 32;  // elements per lane
    static constexpr int per_key = HDP / e;                                        // lanes per key (LPK)
    static constexpr int keys_per_warp = 32 / per_key;                             // KPW
    static constexpr int words = e * KV::bytes / 4;                                // raw words per lane
    static constexpr int max_group = WIDE ? (64 / e < 8 ? 64 / e : 8) : 1;         // largest G
};

// The group G of q heads one block serves for a GQA group of `group`.
template <class KV, int HDP, bool WIDE>
int heads_per_block(int group) {
    int g = 1;
    while (g < group && g < lanes<KV, HDP, WIDE>::max_group) g *= 2;
    return g;
}

__device__ __forceinline__ uint4 load16(const void* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// The raw words of this lane's elements [e0, e0 + E) of a row (zeros past hd, or when !ok).
template <class KV, int HDP, bool WIDE>
__device__ __forceinline__ void load_row(const typename KV::storage* row, int e0, int hd, bool ok,
                                         uint32_t (&w)[lanes<KV, HDP, WIDE>::words]) {
    using L = lanes<KV, HDP, WIDE>;
    if constexpr (WIDE) {
#pragma unroll
        for (int u = 0; u < L::words / 4; ++u) {
            uint4 v = make_uint4(0, 0, 0, 0);
            if (ok && e0 + u * L::vec < hd) v = load16(row + e0 + u * L::vec);
            w[4 * u] = v.x, w[4 * u + 1] = v.y, w[4 * u + 2] = v.z, w[4 * u + 3] = v.w;
        }
    } else {
#pragma unroll
        for (int i = 0; i < L::words; ++i) w[i] = 0;
#pragma unroll
        for (int p = 0; p < L::e / 2; ++p) {
            if (!ok || e0 + 2 * p >= hd) continue;
            const typename KV::storage* src = row + e0 + 2 * p;
            if constexpr (KV::bytes == 4) {
                const uint2 v = *reinterpret_cast<const uint2*>(src);
                w[2 * p] = v.x, w[2 * p + 1] = v.y;
            } else if constexpr (KV::bytes == 2) {
                w[p] = *reinterpret_cast<const uint32_t*>(src);
            } else {
                const uint32_t v = *reinterpret_cast<const uint16_t*>(src);
                w[p >> 1] |= (p & 1) ? v << 16 : v;
            }
        }
    }
}

template <class KV, int HDP, bool WIDE>
__device__ __forceinline__ void decode_row(const uint32_t (&w)[lanes<KV, HDP, WIDE>::words],
                                           float (&x)[lanes<KV, HDP, WIDE>::e]) {
#pragma unroll
    for (int p = 0; p < lanes<KV, HDP, WIDE>::e / 2; ++p) {
        const float2 f = KV::pair(w, p);
        x[2 * p] = f.x, x[2 * p + 1] = f.y;
    }
}

// Folds state (m2, l2, acc2) into (m, l, acc): both relative to their own max, in the log2 domain.
__device__ __forceinline__ void merge_scales(float& m, float m2, float& a, float& b) {
    const float mx = fmaxf(m, m2), mu = mx == -INFINITY ? 0.0f : mx;
    a = exp2f(m - mu);
    b = exp2f(m2 - mu);
    m = mx;
}

template <class KV, int HDP, int G, bool WIDE, int WARPS>
__global__ void __launch_bounds__(32 * WARPS)
    attention_kernel(const float* __restrict__ q, const typename KV::storage* __restrict__ kc,
                     const typename KV::storage* __restrict__ vc, const int32_t* __restrict__ slots,
                     const int32_t* __restrict__ positions, int nh, int nkv, int hd, int group, int n_chunks,
                     kv_pages pages, int n_splits, int n_fill, float qscale, int T, int tc_tile,
                     float* __restrict__ part_acc, float* __restrict__ part_ml, float* __restrict__ out) {
    kernel::grid_dependency_wait();  // PDL: what the kernel before wrote is visible from here
    kernel::grid_dependency_trigger();
    using L = lanes<KV, HDP, WIDE>;
    constexpr int E = L::e, LPK = L::per_key, KPW = L::keys_per_warp, W = L::words;
    constexpr int B = G * E <= 32 ? 4 : 2;  // keys per lane group per iteration
    constexpr int per_warp = B * KPW, per_block = per_warp * WARPS;
    __shared__ float s_acc[WARPS][G][HDP];
    __shared__ float s_m[WARPS][G], s_l[WARPS][G];

    const int split = int(blockIdx.x % unsigned(n_splits));
    const int64_t t = blockIdx.x / unsigned(n_splits);
    const int kvh = int(blockIdx.y) / n_chunks, chunk = int(blockIdx.y) % n_chunks;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int ks = lane / LPK, e0 = (lane % LPK) * E;
    const int h0 = kvh * group + chunk * G, n_g = min(G, group - chunk * G);
    // q first: its loads do not wait for the position's (the key range's) round trip.
    float qr[G][E], acc[G][E], m[G], l[G];
#pragma unroll
    for (int g = 0; g < G; ++g) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int e = 0; e < E; ++e) {
            const int i = e0 + e;
            qr[g][e] = g < n_g && i < hd ? q[(t * nh + h0 + g) * hd + i] * qscale : 0.0f;
            acc[g][e] = 0.0f;
        }
    }
    if (tc_tile > 0 && attention_tile_taken(slots, T, tc_tile, int(t))) return;  // the tensor-core kernel's
    const key_range r = split_keys(positions[t] + 1, split, n_splits, n_fill);
    if (r.begin >= r.end) return;
    const int64_t kv_dim = int64_t(nkv) * hd;
    const int slot = slots[t];
    const typename KV::storage* kbase = kc + int64_t(kvh) * hd;
    const typename KV::storage* vbase = vc + int64_t(kvh) * hd;

    const int n = r.end - r.begin;
    for (int base = warp * per_warp; base < n; base += per_block) {  // warp-uniform: shuffles below
        uint32_t kw[B][W], vw[B][W];
        bool ok[B];
#pragma unroll
        for (int b = 0; b < B; ++b) {
            const int j = base + b * KPW + ks;
            ok[b] = j < n;
            const int64_t row = pages.row(slot, r.begin + (ok[b] ? j : 0), kv_dim);
            load_row<KV, HDP, WIDE>(kbase + row, e0, hd, ok[b], kw[b]);
            load_row<KV, HDP, WIDE>(vbase + row, e0, hd, ok[b], vw[b]);
        }
        float s[G][B];
#pragma unroll
        for (int b = 0; b < B; ++b) {
            float kf[E];
            decode_row<KV, HDP, WIDE>(kw[b], kf);
#pragma unroll
            for (int g = 0; g < G; ++g) {
                float d = 0.0f;
#pragma unroll
                for (int e = 0; e < E; ++e) d = fmaf(qr[g][e], kf[e], d);
                s[g][b] = d;
            }
        }
#pragma unroll
        for (int o = LPK / 2; o > 0; o >>= 1)
#pragma unroll
            for (int g = 0; g < G; ++g)
#pragma unroll
                for (int b = 0; b < B; ++b) s[g][b] += __shfl_xor_sync(0xffffffffu, s[g][b], o);
        float vf[B][E];
#pragma unroll
        for (int b = 0; b < B; ++b) decode_row<KV, HDP, WIDE>(vw[b], vf[b]);
#pragma unroll
        for (int g = 0; g < G; ++g) {
            float mx = -INFINITY;
#pragma unroll
            for (int b = 0; b < B; ++b) mx = fmaxf(mx, ok[b] ? s[g][b] : -INFINITY);
            const float m_new = fmaxf(m[g], mx), mu = m_new == -INFINITY ? 0.0f : m_new;
            const float alpha = exp2f(m[g] - mu);  // 0 while m was -inf
            m[g] = m_new;
            float p[B], ps = 0.0f;
#pragma unroll
            for (int b = 0; b < B; ++b) {
                p[b] = ok[b] ? exp2f(s[g][b] - mu) : 0.0f;
                ps += p[b];
            }
            l[g] = l[g] * alpha + ps;
#pragma unroll
            for (int e = 0; e < E; ++e) {
                float a = acc[g][e] * alpha;
#pragma unroll
                for (int b = 0; b < B; ++b) a = fmaf(p[b], vf[b][e], a);
                acc[g][e] = a;
            }
        }
    }

    // Merge the lane groups of the warp (lanes ks and ks ^ x hold the same elements), then the warps.
#pragma unroll
    for (int o = LPK; o < 32; o <<= 1) {
#pragma unroll
        for (int g = 0; g < G; ++g) {
            const float m2 = __shfl_xor_sync(0xffffffffu, m[g], o),
                        l2 = __shfl_xor_sync(0xffffffffu, l[g], o);
            float a, b;
            merge_scales(m[g], m2, a, b);
            l[g] = l[g] * a + l2 * b;
#pragma unroll
            for (int e = 0; e < E; ++e)
                acc[g][e] = acc[g][e] * a + __shfl_xor_sync(0xffffffffu, acc[g][e], o) * b;
        }
    }
    if (ks == 0) {
#pragma unroll
        for (int g = 0; g < G; ++g) {
#pragma unroll
            for (int e = 0; e < E; ++e) s_acc[warp][g][e0 + e] = acc[g][e];
            if (lane == 0) s_m[warp][g] = m[g], s_l[warp][g] = l[g];
        }
    }
    __syncthreads();
    const bool direct = r.n_ranges == 1;
    for (int idx = threadIdx.x; idx < n_g * hd; idx += 32 * WARPS) {
        const int g = idx / hd, i = idx - g * hd;
        float mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < WARPS; ++w) mx = fmaxf(mx, s_m[w][g]);  // finite: warp 0 has keys
        float sum = 0.0f, a = 0.0f;
#pragma unroll
        for (int w = 0; w < WARPS; ++w) {
            const float f = exp2f(s_m[w][g] - mx);
            sum += f * s_l[w][g];
            a += f * s_acc[w][g][i];
        }
        const int64_t row = t * nh + h0 + g;
        if (direct) {
            out[row * hd + i] = a / sum;
        } else {
            const int64_t pr = row * n_splits + split;
            part_acc[pr * hd + i] = a;
            if (i == 0) part_ml[2 * pr] = mx, part_ml[2 * pr + 1] = sum;
        }
    }
}

// One block per (token, head) with more than one range: out = Σ_s 2^(m_s - M) acc_s / Σ_s 2^(m_s - M) l_s.
// The first k_combine_pre ranges' sums are loaded together with the (m, l) pairs, before the weights are
// known: one round trip to L2 fewer for most tokens.
constexpr int k_combine_pre = 4;
__global__ void __launch_bounds__(k_threads)
    combine_kernel(const int32_t* __restrict__ positions, int nh, int hd, int n_splits, int n_fill,
                   const float* __restrict__ part_acc, const float* __restrict__ part_ml,
                   float* __restrict__ out) {
    kernel::grid_dependency_wait();  // PDL: what the kernel before wrote is visible from here
    kernel::grid_dependency_trigger();
    __shared__ float s_w[k_max_splits];
    __shared__ float s_inv;
    const int64_t row = blockIdx.x, t = row / nh;
    const int n = split_keys(positions[t] + 1, 0, n_splits, n_fill).n_ranges;
    if (n <= 1) return;  // written directly by attention_kernel
    const float* ml = part_ml + 2 * row * n_splits;
    const float* acc = part_acc + row * n_splits * hd;
    constexpr int per_thread = 256 / k_threads;  // hd <= 256
    float pre[per_thread][k_combine_pre];
#pragma unroll
    for (int j = 0; j < per_thread; ++j) {
        const int i = int(threadIdx.x) + j * k_threads;
#pragma unroll
        for (int s = 0; s < k_combine_pre; ++s) pre[j][s] = i < hd && s < n ? acc[int64_t(s) * hd + i] : 0.0f;
    }
    if (threadIdx.x < 32) {
        float mx = -INFINITY;
        for (int s = threadIdx.x; s < n; s += 32) mx = fmaxf(mx, ml[2 * s]);
        for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        float sum = 0.0f;
        for (int s = threadIdx.x; s < n; s += 32) {
            const float w = exp2f(ml[2 * s] - mx);
            s_w[s] = w;
            sum += w * ml[2 * s + 1];
        }
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (threadIdx.x == 0) s_inv = 1.0f / sum;
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < per_thread; ++j) {
        const int i = int(threadIdx.x) + j * k_threads;
        if (i >= hd) break;
        float a = 0.0f;
#pragma unroll
        for (int s = 0; s < k_combine_pre; ++s)
            if (s < n) a += s_w[s] * pre[j][s];
        for (int s = k_combine_pre; s < n; ++s) a += s_w[s] * acc[int64_t(s) * hd + i];
        out[row * hd + i] = a * s_inv;
    }
}

struct launch_args {
    const float* q;
    const cuda_kv_cache* kv;
    const int32_t *slots, *positions;
    int64_t T, nh, layer;
    cuda_attention_split split;
    int tc_tile;  // tokens per tensor-core tile (attention_prefill.h), 0 when that kernel is not launched
    float *part_acc, *part_ml, *out;
    cudaStream_t st;
};

// Warps of attention_kernel: k_wide_warps (a 64-key range in one pass of loads at B = 4) where their
// merge buffer fits 32 KB of static shared memory, else k_warps; NIBBLE_ATTN_WARPS=4 keeps k_warps (A/B).
bool wide_warps_allowed() {
    static const bool ok = [] {
        const char* v = std::getenv("NIBBLE_ATTN_WARPS");
        return !(v && v[0] == '4');
    }();
    return ok;
}

template <class KV, int HDP, int G, bool WIDE, int WARPS>
cudaError_t launch_warps(const launch_args& a) {
    const cuda_kv_cache& kv = *a.kv;
    const int group = int(a.nh / kv.n_kv), n_chunks = (group + G - 1) / G;
    const dim3 grid(unsigned(a.T * a.split.n_splits), unsigned(kv.n_kv * n_chunks));
    return launch_pdl(
        attention_kernel<KV, HDP, G, WIDE, WARPS>, grid, dim3(32 * WARPS), 0, a.st, a.q,
        static_cast<const typename KV::storage*>(kv.k), static_cast<const typename KV::storage*>(kv.v),
        a.slots, a.positions, int(a.nh), int(kv.n_kv), int(kv.head_dim), group, n_chunks,
        kv_pages{kv.tables, kv.max_blocks, a.layer * kv.n_blocks << kv.block_shift, int(kv.block_shift)},
        a.split.n_splits, a.split.n_fill, k_log2e / sqrtf(float(kv.head_dim)), int(a.T), a.tc_tile,
        a.part_acc, a.part_ml, a.out);
}

template <class KV, int HDP, int G, bool WIDE>
cudaError_t launch_main(const launch_args& a) {
    if constexpr (G * HDP * k_wide_warps * sizeof(float) <= 32 * 1024)
        if (wide_warps_allowed()) return launch_warps<KV, HDP, G, WIDE, k_wide_warps>(a);
    return launch_warps<KV, HDP, G, WIDE, k_warps>(a);
}

template <class KV, int HDP, bool WIDE>
cudaError_t launch_group(const launch_args& a) {
    switch (heads_per_block<KV, HDP, WIDE>(int(a.nh / a.kv->n_kv))) {
        case 1:
            return launch_main<KV, HDP, 1, WIDE>(a);
        case 2:
            if constexpr (lanes<KV, HDP, WIDE>::max_group >= 2) return launch_main<KV, HDP, 2, WIDE>(a);
            break;
        case 4:
            if constexpr (lanes<KV, HDP, WIDE>::max_group >= 4) return launch_main<KV, HDP, 4, WIDE>(a);
            break;
        case 8:
            if constexpr (lanes<KV, HDP, WIDE>::max_group >= 8) return launch_main<KV, HDP, 8, WIDE>(a);
            break;
    }
    return cudaErrorInvalidValue;
}

template <class KV>
bool wide_rows(int64_t hd) {
    return hd % (16 / KV::bytes) == 0;
}

template <class KV>
cudaError_t launch_type(const launch_args& a) {
    const int64_t hd = a.kv->head_dim;
    if (!wide_rows<KV>(hd)) return launch_group<KV, 256, false>(a);
    if (hd <= 64) return launch_group<KV, 64, true>(a);
    if (hd <= 128) return launch_group<KV, 128, true>(a);
    return launch_group<KV, 256, true>(a);
}

// Blocks per split of a step of T tokens: KV heads × head chunks per token.
template <class KV>
int64_t blocks_per_token(int64_t nh, const cuda_kv_cache& kv) {
    const int64_t hd = kv.head_dim, group = nh / kv.n_kv;
    int g = 1;
    if (!wide_rows<KV>(hd))
        g = heads_per_block<KV, 256, false>(int(group));
    else if (hd <= 64)
        g = heads_per_block<KV, 64, true>(int(group));
    else if (hd <= 128)
        g = heads_per_block<KV, 128, true>(int(group));
    else
        g = heads_per_block<KV, 256, true>(int(group));
    return kv.n_kv * ((group + g - 1) / g);
}

int64_t blocks_per_token(int64_t nh, const cuda_kv_cache& kv) {
    switch (kv.type) {
        case cuda_kv_f32:
            return blocks_per_token<kv_f32>(nh, kv);
        case cuda_kv_bf16:
            return blocks_per_token<kv_bf16>(nh, kv);
        case cuda_kv_fp8:
            return blocks_per_token<kv_fp8>(nh, kv);
    }
    return kv.n_kv;
}

// Splits before the scratch limit, and the fill wanted.
cuda_attention_split plan_unlimited(int64_t T, int64_t nh, const cuda_kv_cache& kv, int n_sm) {
    const int64_t blocks = std::max<int64_t>(1, T * blocks_per_token(nh, kv));
    const int64_t fill = (int64_t(std::max(n_sm, 1)) * k_blocks_per_sm + blocks - 1) / blocks;
    const int64_t by_length = (kv.max_ctx + k_split_max_keys - 1) / k_split_max_keys;
    const int64_t cap =
        std::min<int64_t>(k_max_splits, (kv.max_ctx + k_split_min_keys - 1) / k_split_min_keys);
    int64_t n = std::max(fill, by_length);
    if (fill <= 1) n = std::min<int64_t>(n, k_long_step_splits);
    n = std::max<int64_t>(1, std::min(n, cap));
    return {int(n), int(std::max<int64_t>(1, std::min(fill, n)))};
}

}  // namespace

cuda_attention_split cuda_attention_plan(int64_t T, int64_t nh, const cuda_kv_cache& kv, int n_sm,
                                         int64_t scratch_floats) {
    cuda_attention_split sp = plan_unlimited(T, nh, kv, n_sm);
    const int64_t per_split = std::max<int64_t>(1, T * nh * (kv.head_dim + 2));
    const int64_t fit = scratch_floats / per_split;
    if (sp.n_splits > fit) sp.n_splits = int(std::max<int64_t>(1, fit));
    sp.n_fill = std::min(sp.n_fill, sp.n_splits);
    return sp;
}

int64_t cuda_attention_scratch_floats(int64_t nh, const cuda_kv_cache& kv, int n_sm) {
    int64_t need = 0;
    for (int64_t T = 1;; ++T) {
        const cuda_attention_split sp = plan_unlimited(T, nh, kv, n_sm);
        if (sp.n_splits > 1) need = std::max(need, T * nh * sp.n_splits * (kv.head_dim + 2));
        // Past both the fill and the long-step range the splits only shrink with T.
        if (sp.n_fill <= 1 && T >= k_long_step_tokens) break;
    }
    return need;
}

cudaError_t cuda_attention(const float* q, const cuda_kv_cache& kv, const int32_t* slots,
                           const int32_t* positions, int64_t T, int64_t nh, int64_t layer,
                           cuda_attention_split split, float* scratch, int64_t scratch_floats, float* out,
                           cudaStream_t st) {
    const int64_t hd = kv.head_dim, nkv = kv.n_kv;
    if (T < 0 || nh <= 0 || nkv <= 0 || nh % nkv || hd <= 0 || hd % 2 || hd > 256 || layer < 0 ||
        layer >= kv.n_layers || !kv.k || !kv.v || !kv.tables || kv.block_shift < 0 || kv.block_shift > 20 ||
        split.n_splits < 1 || split.n_splits > k_max_splits || split.n_fill < 1 ||
        split.n_fill > split.n_splits || T * split.n_splits > INT32_MAX)
        return cudaErrorInvalidValue;
    const int64_t parts = T * nh * split.n_splits;
    if (split.n_splits > 1 && (!scratch || scratch_floats < parts * (hd + 2))) return cudaErrorInvalidValue;
    if (T == 0) return cudaSuccess;
    // With the tensor-core kernel on the step (T >= 64: the step fills the GPU anyway), the tokens left
    // here (decodes, tiles that mix sequences) take one range each: a grid of T blocks per KV head instead
    // of T · n_splits, most of which exit at once, and no combine launch.
    const int tc_tile = cuda_attention_prefill_tile(T, nh, kv);
    if (tc_tile > 0) {
        const cudaError_t e = cuda_attention_prefill(q, kv, slots, positions, T, nh, layer, tc_tile, out, st);
        if (e != cudaSuccess) return e;
        split = {1, 1};
    }
    const launch_args a{q,
                        &kv,
                        slots,
                        positions,
                        T,
                        nh,
                        layer,
                        split,
                        tc_tile,
                        scratch,
                        scratch ? scratch + parts * hd : nullptr,
                        out,
                        st};
    cudaError_t e = cudaErrorInvalidValue;
    switch (kv.type) {
        case cuda_kv_f32:
            e = launch_type<kv_f32>(a);
            break;
        case cuda_kv_bf16:
            e = launch_type<kv_bf16>(a);
            break;
        case cuda_kv_fp8:
            e = launch_type<kv_fp8>(a);
            break;
    }
    if (e != cudaSuccess || split.n_splits == 1) return e;
    return launch_pdl(combine_kernel, dim3(unsigned(T * nh)), dim3(k_threads), 0, st, positions, int(nh),
                      int(hd), split.n_splits, split.n_fill, a.part_acc, a.part_ml, out);
}

}  // namespace nibble
