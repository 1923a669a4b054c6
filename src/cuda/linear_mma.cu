// Tensor-core decode linear (see linear_mma.h for the contract).
//
// Why: on CUDA cores NVFP4 costs ~3 instructions per weight (decode, convert, FMA) and reached only 34-51 %
// of the H200's copy bandwidth at m = 1 (linear_stream.cu), and every extra batch row adds an FMA per weight.
// Here a weight costs its decode (2 integer ops per pair) and one HMUL2 per pair for the block scale, and
// 16 batch rows share each mma.
//
// Design:
// - mma.sync.m16n8k16 (FP16 in, FP32 accumulate) with A = x (the 16 rows of the batch, zero-padded) and
//   B = W (8 weight rows per n8 tile). A warp owns NT n8 tiles (8·NT weight rows), a block of 8 warps 64·NT
//   rows of one part, over a slice of k (split-K when there are too few row blocks to fill the GPU: the
//   slices' FP32 partial sums go to a workspace and the last block of a row block adds them in slice order,
//   so the result is deterministic).
// - Fragments are built from what a thread loads itself: lane (g, t) reads 16 contiguous bytes of weight
//   rows 8r + g (tile r) per item (NVFP4: 32 k, FP8: 16 k), and uses its own values for the k-slots of its
//   fragments. The dot product does not care which physical k a slot holds as long as A and B agree, so
//   x's fragments are built with the same permutation (kslot below).
// - NVFP4: two E2M1 codes (pair layout, nvfp4_layout.h) -> half2 (e2m1 × 2^-14, exact), times the block's
//   E4M3 scale as half2: e2m1 × e4m3 × 2^-14 is exact in FP16 (at most 6 significant bits, multiples of
//   2^-24, < 2^-2).
//   FP8: cvt.rn.f16x2.e4m3x2, exact. Per-tensor / per-channel multipliers are applied to the outputs.
// - x: per span of k and batch row, a power of two 2^e brings the row's amax to [2^14, 2^15); x·2^-e goes
//   in as hi = fp16(x·2^-e) (|x - hi·2^e| <= 2^-11 |x|, FP16 activations as in the prefill GEMM), each
//   span's sums are scaled back by 2^e in FP32. NIBBLE_MMA_SPLIT=1 adds lo = fp16(x·2^-e - hi) and a second
//   mma per step (|x - (hi + lo)·2^e| <= 2^-22 |x| for all but values below 2^-28 of the amax), the former
//   default: the kernel is bound by instruction issue (~3 per weight and lane at m = 16, ncu, H200), and the
//   second mma and its fragment load were ~10 % of them.
// - x prepared once per call: mma_prep_kernel writes every item's A fragments in the order lanes
//   load them, and the per-item scales, into the workspace; mma_xp_kernel, launched with programmatic
//   dependent launch behind it, fetches its first weights while the prep runs, then copies the fragments of
//   its next register batch of items into shared memory (cp.async, 2 stages) while it computes the current
//   one. Span: one item (128 k NVFP4, 64 k FP8). NT = 2 n8 tiles per warp (4 tiles, half the A-fragment
//   loads per weight byte, spilled for NVFP4 at 128 registers and measured slower at m = 8, 16; removed).
//   Why: building x's fragments in every block from x staged in shared memory (the first version, removed
//   2026-12-01) cost as much as the weight tile at m = 16. Measured (H200, 2026-12-01, bench --kernels, %
//   of copy bandwidth, staged -> prepared): NVFP4 m = 4: 18-22 -> 22-28, m = 16: 15-20 -> 16-24; FP8 m = 4:
//   29-36 -> 30-42, m = 16: 23-32 -> 23-37. What is left is the k loop itself (decode + mma per 4 weights
//   per lane, 16 padded batch rows at every m).
// - Weights are loaded into registers KG = 4 items at a time (KG = 2 with NIBBLE_MMA_OCC=3), the next batch
//   while the current one is computed.
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "cuda/kernel_util.cuh"
#include "cuda/linear_mma.h"

namespace nibble {

namespace {

using namespace kernel;

constexpr int k_threads = 256;
constexpr int k_warps = k_threads / 32;
constexpr int k_max_splits = 32;
// Split-K counters sit at the start of the workspace, one per row block, at the same place for every launch
// (each launch leaves its counters zero for the next, whatever its m and shapes); the partial sums follow.
constexpr int k_max_counters = 16384;
constexpr size_t k_counter_bytes = size_t(k_max_counters) * sizeof(unsigned);

template <int FMT>
struct mma_traits;
template <>
struct mma_traits<cuda_stream_nvfp4> {
    static constexpr int ITEM_K = 128, MMAS = 8;  // k per item (4 lanes × 32), mma k-steps per item
};
template <>
struct mma_traits<cuda_stream_fp8> {
    static constexpr int ITEM_K = 64, MMAS = 4;
};

// Physical k (within an item) of fragment slot p (0..3: B register 0 halves 0, 1, register 1 halves 0, 1;
// the same k-slots in A's registers) of mma j for lane column t. NVFP4: lane t's word w (8 codes, k =
// 32t + 8w + q) decodes into pairs (q, q + 4); pairs (0,4), (1,5) feed mma 2w, (2,6), (3,7) mma 2w + 1.
// FP8: k = 16t + 4j + p.
template <int FMT>
__device__ __forceinline__ int kslot(int t, int j, int p) {
    if constexpr (FMT == cuda_stream_nvfp4)
        return 32 * t + 8 * (j / 2) + 2 * (j % 2) + ((p & 1) ? 4 : 0) + (p >> 1);
    else
        return 16 * t + 4 * j + p;
}

// Column of chunk position kk in the raw x copy: one float of padding per lane column's span (32 k for
// NVFP4, 16 for FP8), so the 32 lanes' reads of one fragment entry hit distinct banks (with RS below).
template <int FMT>
__device__ __forceinline__ int raw_col(int kk) {
    return kk + kk / (FMT == cuda_stream_nvfp4 ? 32 : 16);
}

__device__ __forceinline__ void mma16816(float (&c)[4], const uint4& a, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t hmul2_bits(uint32_t a, uint32_t b) {
    __half2 r = __hmul2(*reinterpret_cast<const __half2*>(&a), *reinterpret_cast<const __half2*>(&b));
    return *reinterpret_cast<const uint32_t*>(&r);
}

// Two E4M3 bytes (low 16 bits) -> half2 bits, exact.
__device__ __forceinline__ uint32_t e4m3x2_half2(uint32_t b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    uint32_t h;
    asm("{\n\t.reg .b16 lo;\n\tcvt.u16.u32 lo, %1;\n\tcvt.rn.f16x2.e4m3x2 %0, lo;\n\t}" : "=r"(h) : "r"(b));
    return h;
#else
    __half2 r = __floats2half2_rn(e4m3_value(b & 0xFF), e4m3_value((b >> 8) & 0xFF));
    return *reinterpret_cast<const uint32_t*>(&r);
#endif
}

struct mma_part {
    const uint8_t* w;
    const uint8_t* block_scales;
    const float* fp8_scales;
    float out_mul;
    int n;
    const float* bias;
    float* y;
    int rb0;   // first row block of this part
    int row0;  // first row of this part in the workspace's concatenated rows
};

struct mma_args {
    const float* x;
    int m, k;
    mma_part p[cuda_stream_max_parts];
    int n_parts;
    int gran;
    int items;            // k / ITEM_K
    int splits;           // slices of k
    int split_items;      // items per slice (the last may have fewer)
    int n_total;          // rows of all parts
    float* partial;       // [splits][m][n_total]
    unsigned* counters;   // [row blocks], at the workspace's start
    const uint4* frag;    // x prep: A fragments [items][MMAS][hi, lo][32 lanes] (mma_xprep_kernel)
    const float* xscale;  // x prep: 2^e per item and batch row [items][16]
};

// mma_prep_kernel: block i turns x[:, item i] into the A fragments every warp of mma_xp_kernel loads for
// that item, [MMAS][hi (, lo)][lane] uint4 (one warp-wide 16-byte load per fragment, 512 contiguous bytes;
// kslot permutation), and xscale[i][row] = 2^e, e from the row's amax over the item (rows >= m: zero
// fragments, 2^0).
template <int FMT, bool SPLIT>
__global__ void __launch_bounds__(mma_traits<FMT>::MMAS * 32)
    mma_prep_kernel(const float* __restrict__ x, int m, int k, uint4* __restrict__ frag,
                    float* __restrict__ xscale) {
    using T = mma_traits<FMT>;
    constexpr int IK = T::ITEM_K, MMAS = T::MMAS, NW = MMAS;
    // Floats per row of `raw`: the padded item, ≡ 20 (mod 32) so rows g = 0..7 fall on distinct banks.
    constexpr int RB = IK + IK / (FMT == cuda_stream_nvfp4 ? 32 : 16);
    constexpr int RS = RB + (52 - RB % 32) % 32;
    __shared__ float raw[16 * RS];
    __shared__ int row_exp[16];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, item = blockIdx.x;
    const int64_t kc0 = int64_t(item) * IK;

    grid_dependency_trigger();  // the linear kernel may start fetching its weights
    grid_dependency_wait();     // x is written by the kernel before us
    for (int i = threadIdx.x; i < m * (IK / 4); i += NW * 32) {
        const int r = i / (IK / 4), kk = (i % (IK / 4)) * 4;
        const float4 v = *reinterpret_cast<const float4*>(x + int64_t(r) * k + kc0 + kk);
        float* d = raw + r * RS + raw_col<FMT>(kk);
        d[0] = v.x, d[1] = v.y, d[2] = v.z, d[3] = v.w;
    }
    __syncthreads();
    for (int r = warp; r < 16; r += NW) {
        float mx = 0.0f;
        if (r < m) {
#pragma unroll
            for (int c = lane; c < IK; c += 32) mx = fmaxf(mx, fabsf(raw[r * RS + raw_col<FMT>(c)]));
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, off));
        if (lane == 0) row_exp[r] = r < m && mx > 0.0f ? max(ilogbf(mx) - 14, -100) : 0;
    }
    __syncthreads();
    if (threadIdx.x < 16) xscale[int64_t(item) * 16 + threadIdx.x] = ldexpf(1.0f, row_exp[threadIdx.x]);
    const int j = warp, gg = lane >> 2, tt = lane & 3;
    uint4 hi = make_uint4(0, 0, 0, 0), lo = hi;
    if (gg < m) {
        float v[2][4];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r = gg + 8 * h;
            const float inv = r < m ? ldexpf(1.0f, -row_exp[r]) : 0.0f;
#pragma unroll
            for (int p = 0; p < 4; ++p)
                v[h][p] = r < m ? raw[r * RS + raw_col<FMT>(kslot<FMT>(tt, j, p))] * inv : 0.0f;
        }
        // A registers: 0 (row g, slots 0/1), 1 (row g + 8, slots 0/1), 2 (row g, 2/3), 3 (row g + 8).
        uint32_t* hr = reinterpret_cast<uint32_t*>(&hi);
        uint32_t* lr = reinterpret_cast<uint32_t*>(&lo);
#pragma unroll
        for (int reg = 0; reg < 4; ++reg) {
            const float a0 = v[reg & 1][(reg >> 1) * 2], a1 = v[reg & 1][(reg >> 1) * 2 + 1];
            const __half2 h2 = __floats2half2_rn(a0, a1);
            const float2 hf = __half22float2(h2);
            const __half2 l2 = __floats2half2_rn(a0 - hf.x, a1 - hf.y);
            hr[reg] = *reinterpret_cast<const uint32_t*>(&h2);
            lr[reg] = *reinterpret_cast<const uint32_t*>(&l2);
        }
    }
    constexpr int FS = SPLIT ? 64 : 32;  // uint4 per fragment entry and mma step: hi (, lo)
    uint4* f = frag + (int64_t(item) * MMAS + j) * FS + lane;
    f[0] = hi;
    if constexpr (SPLIT) f[32] = lo;
}

// uint4 per ring stage of mma_xp_kernel: KG items' A fragments (MMAS · 64 each) and their 16 scales each.
template <int FMT, int KG, bool SPLIT>
constexpr int xp_stage_uint4() {
    return KG * mma_traits<FMT>::MMAS * (SPLIT ? 64 : 32) + KG * 4;
}

// mma_xp_kernel: the linear over x prepared by mma_prep_kernel. A warp owns NT n8 tiles (8·NT
// weight rows, tile r = rows 8r + g), the block 8·8·NT rows; weights are prefetched KG items ahead into
// registers (2 · 4·KG·NT: 64 registers at KG = 4, 32 at 2), and the same KG items' A fragments and scales
// (KG · MMAS KB, shared by the block's warps) are copied ahead with cp.async into a 2-stage shared-memory
// ring, one block barrier after each copy lands and one before its stage is refilled. The sums are scaled
// back per item (c = Σ over the item's mma steps, then acc += c · 2^e). (A 3-stage ring, one barrier per
// batch fewer, was no faster at m = 4 or 16; by Nsight Compute at m = 16, 24576 x 4096 the warps wait on
// their shared-memory A-fragment loads: short scoreboard 3.7 of 9.5 cycles per issued instruction, 23 %
// occupancy, DRAM 25 %; H200, 2026-12-01.)
// Why the ring: loading the fragments from global memory right before each mma step (the first version)
// left the kernel stalled on those loads (ncu, H200, m = 16, 24576 x 4096: long-scoreboard 4.7 cycles per
// issued instruction, DRAM at 17 %).
template <int FMT, int NT, bool SPLIT, int KG, int MINB>
__global__ void __launch_bounds__(k_threads, MINB) mma_xp_kernel(const __grid_constant__ mma_args a) {
    using T = mma_traits<FMT>;
    constexpr int MMAS = T::MMAS, BR = k_warps * 8 * NT, FS = SPLIT ? 64 : 32;
    constexpr int FRAGS = KG * MMAS * FS, STAGE = xp_stage_uint4<FMT, KG, SPLIT>();  // uint4 per stage
    extern __shared__ uint4 ring[];  // [2][FRAGS A fragments, then KG × 16 scales]
    __shared__ bool is_last;

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int rb = blockIdx.x, split = blockIdx.y;
    int pi = 0;
    while (pi + 1 < a.n_parts && rb >= a.p[pi + 1].rb0) ++pi;
    const mma_part& P = a.p[pi];
    const int row_base = (rb - P.rb0) * BR + warp * 8 * NT;  // the warp's first row in the part
    const int item0 = split * a.split_items, item1 = min(a.items, item0 + a.split_items);
    const int n_it = item1 - item0;

    // Row of tile r; rows past n read row 0 (never written out).
    int wrow[NT];
#pragma unroll
    for (int r = 0; r < NT; ++r) wrow[r] = row_base + 8 * r + g < P.n ? row_base + 8 * r + g : 0;
    const int64_t row_bytes = FMT == cuda_stream_nvfp4 ? a.k / 2 : a.k;

    uint4 wa[KG][NT], wb[KG][NT];
    uint32_t sa[KG][NT] = {}, sb[KG][NT] = {};
    auto load = [&](int it_rel, uint4(&w)[KG][NT], uint32_t(&s)[KG][NT]) {
#pragma unroll
        for (int q = 0; q < KG; ++q) {
            const int it = item0 + it_rel + q;
#pragma unroll
            for (int r = 0; r < NT; ++r) {
                if (it_rel + q < n_it) {
                    const uint8_t* src = P.w + int64_t(wrow[r]) * row_bytes + int64_t(it) * 64 + 16 * t;
                    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                        : "=r"(w[q][r].x), "=r"(w[q][r].y), "=r"(w[q][r].z), "=r"(w[q][r].w)
                        : "l"(src));
                    if constexpr (FMT == cuda_stream_nvfp4) {
                        uint32_t v;
                        asm("ld.global.nc.L1::no_allocate.u16 %0, [%1];"
                            : "=r"(v)
                            : "l"(P.block_scales + int64_t(wrow[r]) * (a.k / 16) + int64_t(it) * 8 + 2 * t));
                        s[q][r] = e4m3x2_half2(v);
                    }
                } else {
                    w[q][r] = make_uint4(0, 0, 0, 0);
                    s[q][r] = 0;
                }
            }
        }
    };

    // The A fragments and scales of items it_rel .. it_rel + KG - 1 (those before n_it) into ring stage st.
    auto load_frags = [&](int it_rel, int st) {
        const int items = min(KG, n_it - it_rel);
        if (items <= 0) return;
        uint4* dst = ring + st * STAGE;
        const uint4* src = a.frag + int64_t(item0 + it_rel) * MMAS * FS;
        for (int i = threadIdx.x; i < items * MMAS * FS; i += k_threads) cp_async16(dst + i, src + i, true);
        if (int(threadIdx.x) < items * 4)
            cp_async16(dst + FRAGS + threadIdx.x, a.xscale + int64_t(item0 + it_rel) * 16 + threadIdx.x * 4,
                       true);
    };

    grid_dependency_trigger();
    load(0, wa, sa);  // weights do not depend on the previous kernels
    grid_dependency_wait();
    load_frags(0, 0);
    cp_async_commit();

    float acc[NT][4] = {};
    for (int it = 0, st = 0; it < n_it; it += KG, st ^= 1) {
        if (it + KG < n_it) load(it + KG, wb, sb);
        load_frags(it + KG, st ^ 1);  // the stage the previous batch read (past the barrier below)
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();  // this batch's fragments are in for every thread
        const uint4* fs = ring + st * STAGE;
        const float* xs = reinterpret_cast<const float*>(fs + FRAGS);
#pragma unroll
        for (int q = 0; q < KG; ++q) {
            if (it + q >= n_it) break;
            const uint4* f = fs + q * MMAS * FS + lane;
            float cc[NT][4] = {};
#pragma unroll
            for (int j = 0; j < MMAS; ++j) {
                const uint4 ah = f[j * FS];
#pragma unroll
                for (int r = 0; r < NT; ++r) {
                    uint32_t b0, b1;
                    const uint32_t word =
                        reinterpret_cast<const uint32_t*>(&wa[q][r])[FMT == cuda_stream_nvfp4 ? j / 2 : j];
                    if constexpr (FMT == cuda_stream_nvfp4) {
                        const uint32_t s2 = (j / 4) == 0 ? __byte_perm(sa[q][r], 0, 0x1010)
                                                         : __byte_perm(sa[q][r], 0, 0x3232);
                        const int q = (j % 2) * 2;  // pairs (0,4),(1,5) for even j; (2,6),(3,7) odd
                        b0 = hmul2_bits(nvfp4_pair_bits(word, q), s2);
                        b1 = hmul2_bits(nvfp4_pair_bits(word, q + 1), s2);
                    } else {
                        b0 = e4m3x2_half2(word);
                        b1 = e4m3x2_half2(word >> 16);
                    }
                    mma16816(cc[r], ah, b0, b1);
                    if constexpr (SPLIT) mma16816(cc[r], f[j * FS + 32], b0, b1);
                }
            }
            // Scale this item's sums back: c0, c1 are batch row g, c2, c3 batch row g + 8.
            const float s_lo = xs[q * 16 + g], s_hi = xs[q * 16 + g + 8];
#pragma unroll
            for (int r = 0; r < NT; ++r) {
                acc[r][0] = fmaf(cc[r][0], s_lo, acc[r][0]);
                acc[r][1] = fmaf(cc[r][1], s_lo, acc[r][1]);
                acc[r][2] = fmaf(cc[r][2], s_hi, acc[r][2]);
                acc[r][3] = fmaf(cc[r][3], s_hi, acc[r][3]);
            }
        }
#pragma unroll
        for (int q = 0; q < KG; ++q)
#pragma unroll
            for (int r = 0; r < NT; ++r) wa[q][r] = wb[q][r], sa[q][r] = sb[q][r];
        __syncthreads();  // every warp is done with stage st before the next batch refills it
    }
    cp_async_wait<0>();

    // Outputs of this thread: batch rows g, g + 8; weight rows row_base + 8r + 2t + {0, 1}.
    auto final_value = [&](float v, int row) {
        float mul = P.out_mul;
        if (P.fp8_scales) mul *= P.fp8_scales[a.gran == cuda_stream_scale_channel ? row : 0];
        return fmaf(v, mul, P.bias ? P.bias[row] : 0.0f);
    };
    if (a.splits == 1) {
#pragma unroll
        for (int r = 0; r < NT; ++r)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int b = g + (e >= 2 ? 8 : 0), row = row_base + 8 * r + 2 * t + (e & 1);
                if (b < a.m && row < P.n) P.y[int64_t(b) * P.n + row] = final_value(acc[r][e], row);
            }
        return;
    }
#pragma unroll
    for (int r = 0; r < NT; ++r)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int b = g + (e >= 2 ? 8 : 0), row = row_base + 8 * r + 2 * t + (e & 1);
            if (b < a.m && row < P.n)
                a.partial[(int64_t(split) * a.m + b) * a.n_total + P.row0 + row] = acc[r][e];
        }
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) is_last = atomicAdd(a.counters + rb, 1u) == unsigned(a.splits - 1);
    __syncthreads();
    if (!is_last) return;
    __threadfence();
    const int rows0 = (rb - P.rb0) * BR;
    for (int i = threadIdx.x; i < a.m * BR; i += k_threads) {
        const int b = i / BR, row = rows0 + i % BR;
        if (row >= P.n) continue;
        float v = 0.0f;
        for (int s = 0; s < a.splits; ++s)
            v += __ldcg(a.partial + (int64_t(s) * a.m + b) * a.n_total + P.row0 + row);
        P.y[int64_t(b) * P.n + row] = final_value(v, row);
    }
    if (threadIdx.x == 0) a.counters[rb] = 0;  // ready for the next launch (graph replays too)
}

// The prep, then the linear kernel; both with programmatic dependent launch (the linear kernel fetches its
// first weights while the prep runs).
template <int FMT, int NT, bool SPLIT, int KG, int MINB>
cudaError_t launch_xprep(dim3 grid, const mma_args& a, uint4* frag, float* xscale, cudaStream_t stream) {
    constexpr int MMAS = mma_traits<FMT>::MMAS;
    cudaError_t e = launch_pdl(mma_prep_kernel<FMT, SPLIT>, dim3(unsigned(a.items)), dim3(MMAS * 32), 0,
                               stream, a.x, a.m, a.k, frag, xscale);
    if (e != cudaSuccess) return e;
    constexpr size_t smem = 2 * xp_stage_uint4<FMT, KG, SPLIT>() * sizeof(uint4);
    static const cudaError_t set = cudaFuncSetAttribute(
        mma_xp_kernel<FMT, NT, SPLIT, KG, MINB>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (set != cudaSuccess) return set;
    return launch_pdl(mma_xp_kernel<FMT, NT, SPLIT, KG, MINB>, grid, dim3(k_threads), smem, stream, a);
}

int item_k(cuda_stream_format f) {
    return f == cuda_stream_nvfp4 ? 128 : 64;
}

// Whether x enters mma_xp_kernel as FP16 hi + lo (two mma per step, ~2^-22 relative): when the caller
// asks (exact_x: fake-quantized activations, whose next quantization must see them unrounded) or
// NIBBLE_MMA_SPLIT=1; else hi only (2^-11, as the prefill GEMM's FP16 activations; see Design).
bool xprep_split(bool exact_x) {
    static const bool forced = [] {
        const char* v = std::getenv("NIBBLE_MMA_SPLIT");
        return v && v[0] == '1';
    }();
    return exact_x || forced;
}

int g_blocks_per_sm = 0;  // 0: not looked up yet (cuda_linear_mma_blocks_per_sm)

int mma_blocks_per_sm() {
    if (g_blocks_per_sm == 0) {
        const char* e = std::getenv("NIBBLE_MMA_OCC");
        g_blocks_per_sm = e && e[0] == '3' ? 3 : 2;
    }
    return g_blocks_per_sm;
}

// Weight rows per block: 8 warps of NT = 2 n8 tiles.
constexpr int k_block_rows = k_warps * 8 * 2;

// The split of k that best fills `slots` resident blocks with `row_blocks` row blocks.
int choose_splits(int row_blocks, int items, int slots) {
    int best = 1;
    double best_eff = 0;
    for (int s = 1; s <= std::min(k_max_splits, items); ++s) {
        const int per = (items + s - 1) / s;
        const int real = (items + per - 1) / per;
        const double x = double(row_blocks) * real / slots, eff = x / std::ceil(x);
        if (eff > best_eff + 0.05) best_eff = eff, best = real;
        if (eff >= 0.9) break;
    }
    return best;
}

// Workspace: split-K counters at its start (always there in x-prep mode), then (x prep) the A fragments
// [items][MMAS][2][32] uint4 and the scales [items][16] float, then the partial sums [splits][m][n_total].
struct plan {
    int row_blocks = 0, items = 0, splits = 1, split_items = 0, n_total = 0, br = 0;
    size_t frag_off = 0, scale_off = 0, partial_off = 0, bytes = 0;
};

cudaError_t make_plan(int64_t m, const cuda_stream_part* parts, int n_parts, bool split, plan& pl) {
    const cuda_stream_weight& w0 = parts[0].w;
    pl = plan{};
    pl.br = k_block_rows;
    for (int i = 0; i < n_parts; ++i) {
        pl.row_blocks += int((parts[i].w.n + pl.br - 1) / pl.br);
        pl.n_total += int(parts[i].w.n);
    }
    pl.items = int(w0.k / item_k(w0.format));
    int dev = 0, n_sm = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev);
    if (e != cudaSuccess) return e;
    pl.splits = pl.row_blocks > k_max_counters
                    ? 1
                    : choose_splits(pl.row_blocks, pl.items, mma_blocks_per_sm() * n_sm);
    pl.split_items = (pl.items + pl.splits - 1) / pl.splits;
    const size_t partial =
        pl.splits > 1 ? size_t(pl.splits) * size_t(m) * size_t(pl.n_total) * sizeof(float) : 0;
    const int mmas = w0.format == cuda_stream_nvfp4 ? mma_traits<cuda_stream_nvfp4>::MMAS
                                                    : mma_traits<cuda_stream_fp8>::MMAS;
    pl.frag_off = k_counter_bytes;
    pl.scale_off = pl.frag_off + size_t(pl.items) * mmas * (split ? 64 : 32) * sizeof(uint4);
    pl.partial_off = pl.scale_off + size_t(pl.items) * 16 * sizeof(float);
    pl.bytes = pl.partial_off + partial;
    return cudaSuccess;
}

}  // namespace

int cuda_linear_mma_blocks_per_sm() {
    return mma_blocks_per_sm();
}

void cuda_linear_mma_set_blocks_per_sm(int blocks) {
    g_blocks_per_sm = blocks == 3 ? 3 : 2;
}

bool cuda_linear_mma_supports(const cuda_stream_weight& w) {
    if (w.k <= 0 || w.k > INT32_MAX / 2 || w.n > INT32_MAX / 2) return false;
    if (w.format == cuda_stream_nvfp4) return w.k % 128 == 0;
    if (w.format == cuda_stream_fp8) return w.k % 64 == 0 && w.fp8_granularity != cuda_stream_scale_block;
    return false;
}

size_t cuda_linear_mma_workspace_bytes(int64_t m, const cuda_stream_part* parts, int n_parts, bool exact_x) {
    plan pl;
    if (n_parts < 1 || make_plan(m, parts, n_parts, xprep_split(exact_x), pl) != cudaSuccess) return 0;
    return pl.bytes;
}

cudaError_t cuda_linear_mma_parts(const float* x, int64_t m, const cuda_stream_part* parts, int n_parts,
                                  bool exact_x, void* workspace, size_t workspace_bytes,
                                  cudaStream_t stream) {
    if (m < 1 || m > 16 || n_parts < 1 || n_parts > cuda_stream_max_parts || !parts ||
        reinterpret_cast<uintptr_t>(x) % 16)
        return cudaErrorInvalidValue;
    const cuda_stream_weight& w0 = parts[0].w;
    if (!cuda_linear_mma_supports(w0)) return cudaErrorInvalidValue;
    mma_args a{};
    a.x = x;
    a.m = int(m);
    a.k = int(w0.k);
    a.n_parts = n_parts;
    a.gran = int(w0.fp8_granularity);
    plan pl;
    const bool split = xprep_split(exact_x);
    cudaError_t e = make_plan(m, parts, n_parts, split, pl);
    if (e != cudaSuccess) return e;
    const int br = pl.br;
    int rb = 0, row0 = 0;
    for (int i = 0; i < n_parts; ++i) {
        const cuda_stream_weight& w = parts[i].w;
        if (w.format != w0.format || w.k != w0.k || w.fp8_granularity != w0.fp8_granularity || w.n < 0 ||
            !parts[i].y || reinterpret_cast<uintptr_t>(w.data) % 16 ||
            (w.format == cuda_stream_nvfp4 &&
             (!w.block_scales || reinterpret_cast<uintptr_t>(w.block_scales) % 2)) ||
            (w.format == cuda_stream_fp8 && !w.fp8_scales))
            return cudaErrorInvalidValue;
        mma_part& p = a.p[i];
        p.w = static_cast<const uint8_t*>(w.data);
        p.block_scales = w.block_scales;
        p.fp8_scales = w.format == cuda_stream_fp8 ? w.fp8_scales : nullptr;
        p.out_mul = w.format == cuda_stream_nvfp4 ? w.global_mul * 16384.0f : 1.0f;  // 2^14: the half2 decode
        p.n = int(w.n);
        p.bias = parts[i].bias;
        p.y = parts[i].y;
        p.rb0 = rb;
        p.row0 = row0;
        rb += int((w.n + br - 1) / br);
        row0 += int(w.n);
    }
    if (rb == 0) return cudaSuccess;
    a.items = pl.items;
    a.splits = pl.splits;
    a.split_items = pl.split_items;
    a.n_total = pl.n_total;
    if (!workspace || workspace_bytes < pl.bytes || reinterpret_cast<uintptr_t>(workspace) % 16)
        return cudaErrorInvalidValue;
    char* ws = static_cast<char*>(workspace);
    a.counters = reinterpret_cast<unsigned*>(ws);
    a.partial = reinterpret_cast<float*>(ws + pl.partial_off);
    a.frag = reinterpret_cast<const uint4*>(ws + pl.frag_off);
    a.xscale = reinterpret_cast<const float*>(ws + pl.scale_off);
    const dim3 grid(unsigned(rb), unsigned(pl.splits));
    uint4* frag = reinterpret_cast<uint4*>(ws + pl.frag_off);
    float* xscale = reinterpret_cast<float*>(ws + pl.scale_off);
    const bool occ3 = mma_blocks_per_sm() == 3;
    if (w0.format == cuda_stream_nvfp4)
        return split
                   ? (occ3 ? launch_xprep<cuda_stream_nvfp4, 2, true, 2, 3>(grid, a, frag, xscale, stream)
                           : launch_xprep<cuda_stream_nvfp4, 2, true, 4, 2>(grid, a, frag, xscale, stream))
                   : (occ3 ? launch_xprep<cuda_stream_nvfp4, 2, false, 2, 3>(grid, a, frag, xscale, stream)
                           : launch_xprep<cuda_stream_nvfp4, 2, false, 4, 2>(grid, a, frag, xscale, stream));
    return split ? (occ3 ? launch_xprep<cuda_stream_fp8, 2, true, 2, 3>(grid, a, frag, xscale, stream)
                         : launch_xprep<cuda_stream_fp8, 2, true, 4, 2>(grid, a, frag, xscale, stream))
                 : (occ3 ? launch_xprep<cuda_stream_fp8, 2, false, 2, 3>(grid, a, frag, xscale, stream)
                         : launch_xprep<cuda_stream_fp8, 2, false, 4, 2>(grid, a, frag, xscale, stream));
}

}  // namespace nibble
