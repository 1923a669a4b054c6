// Weight-streaming decode linear (see linear_stream.h for the contract).
//
// Design (decode is bandwidth-bound: every weight byte is read once, so the kernel must keep HBM busy):
// - A persistent grid of 2 blocks per SM (1 for m > 4), 8 warps each. The rows of W are cut into tiles of
//   16 rows (2 per warp, so each x value read from shared memory serves two rows); block b takes tiles
//   b, b + grid, ...
// - A work item of a warp is 64 16-byte "units" of both its rows: lane l reads units l and l + 32, so
//   each copy instruction reads 512 contiguous bytes (an earlier layout with lane l reading units 2l, 2l + 1
//   sent every sector to L2 twice and streamed at 27-46 % of the H200's copy bandwidth). The item's
//   scales (NVFP4: 128 bytes per row; FP8 block: 8 floats) are copied by a few lanes and read by all,
//   after a __syncwarp.
// - The loads are cp.async copies into a per-warp ring of k_depth items in shared memory, so k_depth - 1
//   items (96 KB per SM at m <= 4) are in flight while one is computed, without holding registers. Each
//   lane reads back the weights it copied itself (cp.async.wait_group), and the scales after a warp barrier.
//   Measured (H200, 2026-12-01, m = 1, % of the copy bandwidth, 4096x4096 .. 151936x4096): BF16 72-86 %,
//   FP8 46-73 %; NVFP4 34-51 %, no better than the register-prefetch kernel (37-56 %): with 32 weights per
//   16 bytes, NVFP4 on CUDA cores is bound by instruction issue (~3 per weight: decode, convert, FMA), not
//   by memory. The tensor-core kernel (linear_mma.cu) takes NVFP4 there.
// - The activations x[m, kc] of the current k-chunk are staged once per block in shared memory (FP32,
//   each unit padded so that the lanes' reads are bank-conflict free). kc = k unless m·k does not fit;
//   then y holds raw partial sums between chunks, read and written by the same thread, so the result stays
//   deterministic.
// - Dequantization stays in registers: NVFP4 codes (pair layout, nvfp4_layout.h: 1-4 instructions per two
//   codes) become e2m1 × 2^-14 (exact half2 trick), each 16-block is summed unscaled and then scaled once
//   by its E4M3 value (a unit's two scales in one cvt.rn.f16x2.e4m3x2); FP8 via cvt.rn.f16x2.e4m3x2
//   (exact); BF16 by shifts. Per-tensor multipliers (NVFP4 global × 2^14, FP8 tensor/channel scales) are
//   applied once per output, FP8 block scales once per unit.
// - The warp's per-lane sums are combined with a butterfly of shuffles; lane r·M + i writes y (or adds to
//   it: accumulate, the residual add of a block).
// - Optional RMSNorm of x as it is staged (cuda_stream_norm): each block sums each row's x² itself in one
//   fixed order (so every block has the same inv_rms), then stages w · (x · inv_rms); this takes the norm
//   kernel and its launch out of a decode step (fuses_norms in core/backend.h).
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cuda/act_quant.cuh"
#include "cuda/kernel_util.cuh"
#include "cuda/linear_stream.h"

namespace nibble {

namespace {

using namespace kernel;

constexpr int k_threads = 256;
constexpr int k_warps = k_threads / 32;
constexpr int k_rows = 2;                   // rows per warp
constexpr int k_units = 2;                  // 16-byte units per lane, row and item
constexpr int k_depth = 3;                  // items per lane in the shared-memory ring
constexpr int k_span = 32 * k_units;        // units of a row per warp item
constexpr float k_e2m1_unscale = 16384.0f;  // 2^14, undoes the half2 decode's offset
constexpr int k_half_unit = 20;  // HALF: uint32 (half2) of x per unit: 16 + 4 (conflict-free reads)

template <int FMT>
struct fmt_traits;
template <>
struct fmt_traits<cuda_stream_nvfp4> {
    static constexpr int EL = 32, VPW = 8, GW = 2;  // k per unit, values per word, words per scale group
};
template <>
struct fmt_traits<cuda_stream_fp8> {
    static constexpr int EL = 16, VPW = 4, GW = 4;
};
template <>
struct fmt_traits<cuda_stream_bf16> {
    static constexpr int EL = 8, VPW = 2, GW = 4;
};

template <int FMT>
__device__ __forceinline__ void decode_word(uint32_t w, float (&v)[fmt_traits<FMT>::VPW]) {
    if constexpr (FMT == cuda_stream_nvfp4) {
        e2m1x8_scaled(w, v);
    } else if constexpr (FMT == cuda_stream_fp8) {
        e4m3x4_value(w, v);
    } else {
        v[0] = __uint_as_float(w << 16);
        v[1] = __uint_as_float(w & 0xFFFF0000u);
    }
}

template <int N>
__device__ __forceinline__ void load_x(const float* p, float (&v)[N]) {
    if constexpr (N == 2) {
        const float2 a = *reinterpret_cast<const float2*>(p);
        v[0] = a.x, v[1] = a.y;
    } else {
#pragma unroll
        for (int i = 0; i < N; i += 4) {
            const float4 a = *reinterpret_cast<const float4*>(p + i);
            v[i] = a.x, v[i + 1] = a.y, v[i + 2] = a.z, v[i + 3] = a.w;
        }
    }
}

// One weight of a launch, as the kernel reads it.
struct stream_part {
    const uint8_t* w;
    const uint8_t* block_scales;
    const float* fp8_scales;
    float out_mul;
    int n;
    const float* bias;
    float* y;
    bool accumulate;  // y += the result (one k-chunk only: the launcher checks)
};

struct stream_args {
    const float* x;
    int m;
    stream_part p[cuda_stream_max_parts];
    int n_parts;
    int tile_start[cuda_stream_max_parts + 1];  // part i owns tiles [tile_start[i], tile_start[i + 1])
    bool swiglu;                                // rows r = 0 / 1 of a warp: gate / up row of one output
    int gran;
    int k, kc;
    int act;  // cuda_stream_act: fake quantization applied while x is staged
    float act_scale;
    bool half;            // NVFP4, m <= 2: x in FP16 and HFMA2 block sums (stream_kernel's HALF)
    const float* norm_w;  // RMSNorm applied to x as it is staged: x · inv_rms · norm_w (null: none)
    float norm_eps;
    bool accumulate;  // any part's
    uint32_t* trace;  // cuda_linear_stream_trace_begin's ring (null: not tracing)
};

// The trace ring (cuda_linear_stream_trace_begin): k_trace_records records of k_trace_words words.
constexpr int k_trace_words = 16;
constexpr uint32_t k_trace_records = 1u << 18;
__device__ uint32_t g_trace_next;  // records written so far (the ring keeps the last k_trace_records)

__device__ __forceinline__ uint64_t global_ns() {
    uint64_t t;
    asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
    return t;
}

// Shared memory of one block: the weight ring, the scale ring, then x.
constexpr size_t ring_bytes() {
    return size_t(k_warps) * k_depth * k_rows * (k_units * 32 * 16 + 32 * 4);
}
// Floats per unit of x in shared memory: EL plus padding, so that the 16-byte (8-byte for BF16) reads of
// 32 lanes at consecutive units hit distinct banks in each phase.
template <int FMT>
constexpr int unit_floats() {
    return FMT == cuda_stream_bf16 ? 10 : fmt_traits<FMT>::EL + 4;
}

// Part and row of W read by row slot r of `warp` in global tile `tile`.
__device__ __forceinline__ void tile_row(const stream_args& a, int tile, int warp, int r, int& part,
                                         int& row) {
    if (a.swiglu) {
        part = r;
        row = tile * k_warps + warp;
        return;
    }
    part = 0;
    while (part + 1 < a.n_parts && tile >= a.tile_start[part + 1]) ++part;
    row = ((tile - a.tile_start[part]) * k_warps + warp) * k_rows + r;
}

// The multiplier of output `row` of part `pi`: the part's own (NVFP4 global × 2^14), times the FP8 tensor
// or channel scale.
__device__ __forceinline__ float out_mul(const stream_args& a, int pi, int row, bool block_scaled) {
    const stream_part& P = a.p[pi];
    float mul = P.out_mul;
    if (P.fp8_scales && !block_scaled) mul *= P.fp8_scales[a.gran == cuda_stream_scale_channel ? row : 0];
    return mul;
}

// Value j (a multiple of 4) of row mm of the linear's input: x, or with a.norm_w RMSNorm's w[j] · (x[j] ·
// inv_rms) (the rounding order of cuda_rms_norm and the CPU's), row_norm[mm] = inv_rms.
__device__ __forceinline__ float4 input4(const stream_args& a, const float* row_norm, int mm, int j) {
    float4 v = *reinterpret_cast<const float4*>(a.x + int64_t(mm) * a.k + j);
    if (a.norm_w) {
        const float inv = row_norm[mm];
        const float4 w = *reinterpret_cast<const float4*>(a.norm_w + j);
        v = make_float4(w.x * (v.x * inv), w.y * (v.y * inv), w.z * (v.z * inv), w.w * (v.w * inv));
    }
    return v;
}

// Per-row factors of the input over all of k (each block computes them for itself, in the same order,
// so every block gets the same factors). With a.norm_w: row_norm[r] = 1 / sqrt(Σ x² / k + eps), the sum
// per thread in k order, then across each warp by shuffles and across the warps in warp order
// (deterministic). HALF: row_scale[r] = 2^s with the row's amax · 2^s in [2^14, 2^15) (1 for a zero or
// non-finite amax), row_inv[r] = 2^-s. FP8 per-token: row_scale[r] = amax_r / 448 (1 for a zero row), as
// cuda_fp8_fake_quantize's. amax is over the values input4 gives.
__device__ __noinline__ void row_factors(const stream_args& a, bool half, float* row_scale, float* row_inv,
                                         float* row_norm) {
    __shared__ unsigned amax_bits[16];
    __shared__ float warp_ss[k_warps][16];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (threadIdx.x < 16) amax_bits[threadIdx.x] = 0, row_norm[threadIdx.x] = 1.0f;
    if (a.norm_w) {
        // HALF: max |w_j x_j| in the same pass; the normed values' amax is then inv_rms times it, to within
        // 3 roundings (the staged w · (x · inv) has 2): enough for the power of two row_scale picks.
        __syncthreads();  // amax_bits is zeroed before the atomics below
        for (int mm = 0; mm < a.m; ++mm) {
            float ss = 0.0f, mx = 0.0f;
            for (int j = int(threadIdx.x) * 4; j < a.k; j += k_threads * 4) {
                const float4 v = *reinterpret_cast<const float4*>(a.x + int64_t(mm) * a.k + j);
                ss += v.x * v.x;
                ss += v.y * v.y;
                ss += v.z * v.z;
                ss += v.w * v.w;
                if (half) {
                    const float4 w = *reinterpret_cast<const float4*>(a.norm_w + j);
                    mx = fmaxf(mx, fmaxf(fmaxf(fabsf(w.x * v.x), fabsf(w.y * v.y)),
                                         fmaxf(fabsf(w.z * v.z), fabsf(w.w * v.w))));
                }
            }
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) {
                ss += __shfl_xor_sync(0xFFFFFFFFu, ss, off);
                mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, off));
            }
            if (lane == 0) {
                warp_ss[warp][mm] = ss;
                if (half) atomicMax(&amax_bits[mm], __float_as_uint(mx));
            }
        }
        __syncthreads();
        if (threadIdx.x < a.m) {
            float ss = 0.0f;
            for (int w = 0; w < k_warps; ++w) ss += warp_ss[w][threadIdx.x];
            row_norm[threadIdx.x] = 1.0f / sqrtf(ss / float(a.k) + a.norm_eps);
            if (half)
                amax_bits[threadIdx.x] =
                    __float_as_uint(row_norm[threadIdx.x] * __uint_as_float(amax_bits[threadIdx.x]));
        }
    }
    __syncthreads();
    if (!half && a.act != cuda_stream_act_fp8_token) return;
    if (!(half && a.norm_w)) {  // the amax pass (HALF with a norm has it from above)
        for (int mm = 0; mm < a.m; ++mm) {
            float mx = 0.0f;  // fmaxf drops NaN, as block_max does
            for (int j = int(threadIdx.x) * 4; j < a.k; j += k_threads * 4) {
                const float4 v = input4(a, row_norm, mm, j);
                mx = fmaxf(mx, fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w))));
            }
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, off));
            if (lane == 0) atomicMax(&amax_bits[mm], __float_as_uint(mx));  // >= 0: ordered as uint
        }
        __syncthreads();
    }
    if (threadIdx.x < 16) {
        const float amax = __uint_as_float(amax_bits[threadIdx.x]);
        if (half) {
            const int e = amax > 0.0f && amax <= 3.4e38f ? 14 - ilogbf(amax) : 0;
            row_scale[threadIdx.x] = ldexpf(1.0f, e);
            row_inv[threadIdx.x] = ldexpf(1.0f, -e);
        } else {
            row_scale[threadIdx.x] = actq::fp8_scale(amax);
        }
    }
}

// One staged HALF word: the half2 (lo_q, hi_q) · mul for q = 0..3 (x values 8w + q and 8w + 4 + q).
__device__ __forceinline__ uint4 half_word(float4 lo, float4 hi, float mul) {
    const __half2 p0 = __floats2half2_rn(lo.x * mul, hi.x * mul);
    const __half2 p1 = __floats2half2_rn(lo.y * mul, hi.y * mul);
    const __half2 p2 = __floats2half2_rn(lo.z * mul, hi.z * mul);
    const __half2 p3 = __floats2half2_rn(lo.w * mul, hi.w * mul);
    return make_uint4(*reinterpret_cast<const uint32_t*>(&p0), *reinterpret_cast<const uint32_t*>(&p1),
                      *reinterpret_cast<const uint32_t*>(&p2), *reinterpret_cast<const uint32_t*>(&p3));
}

// HALF with one row whose x is one chunk of at most 6 words of 8 values per thread (3 with a norm): x (and
// the norm's weights) read once from L2 into registers (word i of the row by thread i mod k_threads), the
// row's factors (as row_factors: Σ x² in a fixed order, every block alike; the FP16 scale from
// inv_rms · max |w x|) and the staging from there: one pass over x per block instead of two (three with a
// norm). kv[2s], kv[2s + 1]: x of word s; with a norm kv[6 + 2s], kv[7 + 2s] its weights (s < 3).
constexpr int k_kept_words = 6;
__device__ __forceinline__ bool kept_fits(const stream_args& a) {
    return a.m == 1 && a.kc == a.k && a.k / 8 <= k_threads * (a.norm_w ? k_kept_words / 2 : k_kept_words);
}
__device__ __forceinline__ void stage_kept(const stream_args& a, uint32_t* xh, float* row_scale,
                                           float* row_inv, float* row_norm) {
    __shared__ float kept_ss[k_warps], kept_mx[k_warps];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, words = a.k / 8;
    const bool norm = a.norm_w != nullptr;
    float4 kv[2 * k_kept_words];
    float ss = 0.0f, mx = 0.0f;  // fmaxf drops NaN, as row_factors does
#pragma unroll
    for (int s = 0; s < k_kept_words; ++s) {
        const int i = int(threadIdx.x) + s * k_threads;
        if (i >= words || (norm && s >= k_kept_words / 2)) continue;
        const float4 lo = *reinterpret_cast<const float4*>(a.x + 8 * i);
        const float4 hi = *reinterpret_cast<const float4*>(a.x + 8 * i + 4);
        kv[2 * s] = lo, kv[2 * s + 1] = hi;
        const float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
        float w[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        if (s < k_kept_words / 2 && norm) {
            const float4 wl = *reinterpret_cast<const float4*>(a.norm_w + 8 * i);
            const float4 wh = *reinterpret_cast<const float4*>(a.norm_w + 8 * i + 4);
            kv[k_kept_words + 2 * s] = wl, kv[k_kept_words + 2 * s + 1] = wh;
            w[0] = wl.x, w[1] = wl.y, w[2] = wl.z, w[3] = wl.w, w[4] = wh.x, w[5] = wh.y, w[6] = wh.z,
            w[7] = wh.w;
        }
#pragma unroll
        for (int e = 0; e < 8; ++e) {
            ss += v[e] * v[e];
            mx = fmaxf(mx, fabsf(w[e] * v[e]));
        }
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        ss += __shfl_xor_sync(0xFFFFFFFFu, ss, off);
        mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, off));
    }
    if (lane == 0) kept_ss[warp] = ss, kept_mx[warp] = mx;
    __syncthreads();
    if (threadIdx.x == 0) {
        float s2 = 0.0f, m2 = 0.0f;
        for (int w = 0; w < k_warps; ++w) s2 += kept_ss[w], m2 = fmaxf(m2, kept_mx[w]);
        const float inv = norm ? 1.0f / sqrtf(s2 / float(a.k) + a.norm_eps) : 1.0f;
        const float amax = norm ? inv * m2 : m2;
        const int e = amax > 0.0f && amax <= 3.4e38f ? 14 - ilogbf(amax) : 0;
        row_norm[0] = inv;
        row_scale[0] = ldexpf(1.0f, e);
        row_inv[0] = ldexpf(1.0f, -e);
    }
    __syncthreads();
    const float inv = row_norm[0], mul = row_scale[0];
#pragma unroll
    for (int s = 0; s < k_kept_words; ++s) {
        const int i = int(threadIdx.x) + s * k_threads;
        if (i >= words || (norm && s >= k_kept_words / 2)) continue;
        float4 lo = kv[2 * s], hi = kv[2 * s + 1];
        if (s < k_kept_words / 2 && norm) {  // input4's rounding order: w · (x · inv)
            const float4 wl = kv[k_kept_words + 2 * s], wh = kv[k_kept_words + 2 * s + 1];
            lo = make_float4(wl.x * (lo.x * inv), wl.y * (lo.y * inv), wl.z * (lo.z * inv),
                             wl.w * (lo.w * inv));
            hi = make_float4(wh.x * (hi.x * inv), wh.y * (hi.y * inv), wh.z * (hi.z * inv),
                             wh.w * (hi.w * inv));
        }
        *reinterpret_cast<uint4*>(xh + (i / 4) * k_half_unit + (i % 4) * 4) = half_word(lo, hi, mul);
    }
}

// HALF (NVFP4 weight-only, m <= 2): x staged as FP16 pairs in the decode's order, scaled per row by 2^s
// (row_factors), the products of each 16-weight block summed by HFMA2 in FP16 (8 steps per half lane), the
// blocks in FP32 as in the default path; outputs × 2^-s. Per output: |error| <= ~9 · 2^-11 Σ|x w| (x's
// rounding and 8 FP16 roundings of partial sums), instead of the FP32 path's ~1e-6, for one HFMA2 per two
// weights instead of an FFMA per weight and row.
template <int FMT, int M, bool HALF, bool TRACE>
__global__ void __launch_bounds__(k_threads, M > 4 ? 1 : 2)
    stream_kernel(const __grid_constant__ stream_args a) {
    using F = fmt_traits<FMT>;
    constexpr int EL = F::EL, VPW = F::VPW, GW = F::GW, US = unit_floats<FMT>();
    constexpr int WSLOT = k_rows * k_units * 32;  // uint4 per warp and stage
    constexpr int SSLOT = k_rows * 32;            // uint32 per warp and stage
    constexpr bool has_unit_scales = FMT == cuda_stream_nvfp4 || FMT == cuda_stream_fp8;
    extern __shared__ uint4 smem[];
    __shared__ float row_scale[16];  // FP8 per-token activation scales (a.act == cuda_stream_act_fp8_token)
    __shared__ float row_inv[16];    // HALF: 2^-s per row, applied to the outputs
    __shared__ float row_norm[16];   // a.norm_w: each row's 1 / rms
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    uint4* wring = smem + warp * k_depth * WSLOT;
    uint32_t* sring = reinterpret_cast<uint32_t*>(smem + k_warps * k_depth * WSLOT) + warp * k_depth * SSLOT;
    float* xs = reinterpret_cast<float*>(smem + k_warps * k_depth * WSLOT) + k_warps * k_depth * SSLOT;

    const int units_row = a.k / EL;
    const int n_tiles = a.tile_start[a.n_parts];
    const int my_tiles = int(blockIdx.x) < n_tiles ? (n_tiles - 1 - int(blockIdx.x)) / int(gridDim.x) + 1 : 0;
    const bool block_scaled = FMT == cuda_stream_fp8 && a.gran == cuda_stream_scale_block;
    const int bk = (a.k + 127) / 128;
    grid_dependency_trigger();
    // TRACE (a.trace, cuda_linear_stream_trace_begin; instantiated for m = 1 only, so that the default
    // kernels carry none of it): block start, then SM cycles to each phase, kept by thread 0 (warp 0's view).
    __shared__ unsigned long long tr_ns0, tr_c0;
    __shared__ uint32_t tr_c[4];  // wait returned, x staged, first weights in, items done
    if (TRACE && threadIdx.x == 0) tr_ns0 = global_ns(), tr_c0 = clock64(), tr_c[2] = 0;
    auto tr_mark = [&](int i) {
        if (threadIdx.x == 0) tr_c[i] = uint32_t(clock64() - tr_c0);
    };

    for (int k0 = 0; k0 < a.k; k0 += a.kc) {
        const int units = min(a.kc, a.k - k0) / EL;
        const int n_batch = (units + k_span - 1) / k_span;
        const int n_items = my_tiles * n_batch;
        const int xs_row = units * US;
        const int unit0 = k0 / EL;
        const bool first = k0 == 0, last = k0 + a.kc >= a.k;

        // The copies run ahead of the compute in item order: issue_next() copies this lane's share of the
        // next item into its ring stage (an empty group past the end). The rows' addresses are worked out
        // once per tile and the item / tile / stage positions kept as counters (no division per item).
        int iss_item = 0, iss_b = 0, iss_t = 0, iss_stage = 0;
        const uint8_t* wrow[k_rows];  // unit 0 of the chunk in each row of the issuing tile
        const uint8_t* srow[k_rows];  // NVFP4: its scale bytes; FP8 block: the row's scale row (as bytes)
        bool rvalid[k_rows];
        auto issue_next = [&]() {
            if (iss_item < n_items) {
                if (iss_b == 0) {
                    const int tile = int(blockIdx.x) + iss_t * int(gridDim.x);
#pragma unroll
                    for (int r = 0; r < k_rows; ++r) {
                        int part, row;
                        tile_row(a, tile, warp, r, part, row);
                        const stream_part& P = a.p[part];
                        rvalid[r] = row < P.n;
                        const int64_t base = int64_t(row) * units_row + unit0;
                        wrow[r] = P.w + base * 16;
                        if constexpr (FMT == cuda_stream_nvfp4) srow[r] = P.block_scales + base * 2;
                        if constexpr (FMT == cuda_stream_fp8)
                            srow[r] =
                                reinterpret_cast<const uint8_t*>(P.fp8_scales + int64_t(row / 128) * bk);
                    }
                }
                const int stage = iss_stage;
                const int u0 = iss_b * k_span;    // first unit of the item in the chunk
                const uint8_t* dummy = a.p[0].w;  // a valid address for the zero-size copies
#pragma unroll
                for (int r = 0; r < k_rows; ++r) {
                    const bool rv = rvalid[r];
                    // Unit j·32 + lane: each instruction reads 512 contiguous bytes of the row.
#pragma unroll
                    for (int j = 0; j < k_units; ++j) {
                        const int u = j * 32 + lane;
                        const bool ok = rv && u0 + u < units;
                        cp_async16(wring + stage * WSLOT + (r * k_units + j) * 32 + lane,
                                   ok ? wrow[r] + int64_t(u0 + u) * 16 : dummy, ok);
                    }
                    // The item's scales of this row, 128 contiguous bytes at most: NVFP4 two E4M3 bytes
                    // per unit (lane l copies units 2l, 2l + 1); FP8 block: 8 floats (lanes 0..7).
                    if constexpr (FMT == cuda_stream_nvfp4) {
                        const bool ok = rv && u0 + 2 * lane < units;
                        cp_async4(sring + stage * SSLOT + r * 32 + lane,
                                  ok ? srow[r] + int64_t(u0 + 2 * lane) * 2 : dummy, ok);
                    } else if constexpr (FMT == cuda_stream_fp8) {
                        const int kb = (k0 + u0 * EL) / 128 + lane;  // 64 units of 16 = 8 blocks of 128
                        const bool ok = block_scaled && rv && lane < 8 && kb < bk;
                        cp_async4(sring + stage * SSLOT + r * 32 + lane,
                                  ok ? reinterpret_cast<const float*>(srow[r]) + kb : a.x, ok);
                    }
                }
                ++iss_item;
                if (++iss_stage == k_depth) iss_stage = 0;
                if (++iss_b == n_batch) iss_b = 0, ++iss_t;
            }
            cp_async_commit();
        };

        // The first weights are requested before x is staged (and, with PDL, while the previous kernel
        // finishes), so HBM starts streaming at once.
#pragma unroll
        for (int i = 0; i < k_depth - 1; ++i) issue_next();

        const bool kept = HALF && M == 1 && kept_fits(a);  // stage_kept: x read once
        if (first) {
            grid_dependency_wait();  // x (and y) may come from the kernel before us
            if constexpr (TRACE) tr_mark(0);
            if (!kept && (HALF || a.act == cuda_stream_act_fp8_token || a.norm_w))
                row_factors(a, HALF, row_scale, row_inv, row_norm);
        }
        __syncthreads();  // every reader of the previous chunk's x is done
        constexpr int F4 = EL / 4;
        // Stores 4 values of row mm at chunk position kk (a multiple of 4: within one unit).
        auto put = [&](int mm, int kk, float4 v) {
            float2* d = reinterpret_cast<float2*>(xs + mm * xs_row + (kk / EL) * US + kk % EL);
            d[0] = make_float2(v.x, v.y);
            d[1] = make_float2(v.z, v.w);
        };
        if constexpr (HALF) {  // one 8-value word per step: half2 (x_q, x_q+4) · 2^s, q = 0..3, in 4 words
            uint32_t* xh = reinterpret_cast<uint32_t*>(xs);
            const int n_w = kept ? 0 : M * units * 4;
            if (kept) stage_kept(a, xh, row_scale, row_inv, row_norm);
            for (int i = threadIdx.x; i < n_w; i += k_threads) {
                const int mm = i / (units * 4), wi = i - mm * units * 4;
                uint4 out = make_uint4(0, 0, 0, 0);
                if (mm < a.m) {
                    const float4 lo = input4(a, row_norm, mm, k0 + wi * 8);
                    const float4 hi = input4(a, row_norm, mm, k0 + wi * 8 + 4);
                    out = half_word(lo, hi, row_scale[mm]);
                }
                *reinterpret_cast<uint4*>(xh + mm * (units * k_half_unit) + (wi / 4) * k_half_unit +
                                          (wi % 4) * 4) = out;
            }
        } else if (a.act == cuda_stream_act_nvfp4) {  // per 16-block of a row: one thread reads and writes it
            const int n_g = M * (units * EL / 16);
            for (int i = threadIdx.x; i < n_g; i += k_threads) {
                const int mm = i / (units * EL / 16), kk = (i - mm * (units * EL / 16)) * 16;
                float4 v[4] = {};
                float amax = 0.0f;
                if (mm < a.m) {
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        v[j] = input4(a, row_norm, mm, k0 + kk + 4 * j);
                        amax = fmaxf(amax, fmaxf(fmaxf(fabsf(v[j].x), fabsf(v[j].y)),
                                                 fmaxf(fabsf(v[j].z), fabsf(v[j].w))));
                    }
                    const float eff = actq::nvfp4_block_scale(amax, a.act_scale);
#pragma unroll
                    for (int j = 0; j < 4; ++j)
                        v[j] = make_float4(actq::nvfp4_fake(v[j].x, eff), actq::nvfp4_fake(v[j].y, eff),
                                           actq::nvfp4_fake(v[j].z, eff), actq::nvfp4_fake(v[j].w, eff));
                }
#pragma unroll
                for (int j = 0; j < 4; ++j) put(mm, kk + 4 * j, v[j]);
            }
        } else {
            const int n_f4 = M * units * F4;
            for (int i = threadIdx.x; i < n_f4; i += k_threads) {
                const int mm = i / (units * F4), kk = (i - mm * units * F4) * 4;
                float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                if (mm < a.m) {
                    v = input4(a, row_norm, mm, k0 + kk);
                    if (a.act == cuda_stream_act_fp8_token || a.act == cuda_stream_act_fp8_static) {
                        const float s = a.act == cuda_stream_act_fp8_token ? row_scale[mm] : a.act_scale;
                        const float2 lo = actq::fp8_fake2(v.x, v.y, s), hi = actq::fp8_fake2(v.z, v.w, s);
                        v = make_float4(lo.x, lo.y, hi.x, hi.y);
                    }
                }
                put(mm, kk, v);
            }
        }
        __syncthreads();
        if (TRACE && first) tr_mark(1);

        float acc[k_rows][M] = {};
        int c_b = 0, c_t = 0, c_stage = 0;  // the computed item's batch in its tile, tile, ring stage
        for (int item = 0; item < n_items; ++item) {
            issue_next();
            cp_async_wait<k_depth - 1>();
            if constexpr (has_unit_scales) __syncwarp();  // the scale ring holds other lanes' copies
            if (TRACE && first && item == 0) tr_mark(2);
            const int stage = c_stage;
            const int u0 = c_b * k_span;
            const bool tile_end = c_b == n_batch - 1;
            const int tile = int(blockIdx.x) + c_t * int(gridDim.x);
            if (++c_stage == k_depth) c_stage = 0;
            if (tile_end)
                c_b = 0, ++c_t;
            else
                ++c_b;
#pragma unroll
            for (int j = 0; j < k_units; ++j) {
                const int u = j * 32 + lane;
                if (u0 + u >= units) break;
                uint4 w[k_rows];
                uint32_t sbits[k_rows] = {};
#pragma unroll
                for (int r = 0; r < k_rows; ++r) {
                    w[r] = wring[stage * WSLOT + (r * k_units + j) * 32 + lane];
                    const uint32_t* sr = sring + stage * SSLOT + r * 32;
                    if constexpr (FMT == cuda_stream_nvfp4)
                        sbits[r] = reinterpret_cast<const uint16_t*>(sr)[u];
                    else if constexpr (FMT == cuda_stream_fp8)
                        sbits[r] = block_scaled ? sr[u / 8] : 0;
                }
                float2 nv_sc[k_rows];  // NVFP4: the unit's two block scales per row
                if constexpr (FMT == cuda_stream_nvfp4)
#pragma unroll
                    for (int r = 0; r < k_rows; ++r) nv_sc[r] = e4m3x2_value(sbits[r]);
                const float* xu = xs + (u0 + u) * US;
#pragma unroll
                for (int g = 0; g < 4 / GW; ++g) {
                    float part[k_rows][M] = {};
                    if constexpr (HALF) {
                        // The group's two words of x (8 half2) per batch row, then per weight row 8 HFMA2.
                        uint32_t xw[M][8];
#pragma unroll
                        for (int mm = 0; mm < M; ++mm) {
                            const uint32_t* xr = reinterpret_cast<const uint32_t*>(xs) +
                                                 mm * (units * k_half_unit) + (u0 + u) * k_half_unit + 8 * g;
                            const uint4 p = *reinterpret_cast<const uint4*>(xr);
                            const uint4 q = *reinterpret_cast<const uint4*>(xr + 4);
                            xw[mm][0] = p.x, xw[mm][1] = p.y, xw[mm][2] = p.z, xw[mm][3] = p.w;
                            xw[mm][4] = q.x, xw[mm][5] = q.y, xw[mm][6] = q.z, xw[mm][7] = q.w;
                        }
#pragma unroll
                        for (int r = 0; r < k_rows; ++r) {
                            __half2 hs[M];
#pragma unroll
                            for (int mm = 0; mm < M; ++mm) hs[mm] = __float2half2_rn(0.0f);
#pragma unroll
                            for (int hh = 0; hh < 2; ++hh) {
                                const uint32_t word = reinterpret_cast<const uint32_t*>(&w[r])[2 * g + hh];
#pragma unroll
                                for (int q = 0; q < 4; ++q) {
                                    const uint32_t wb = nvfp4_pair_bits(word, q);
#pragma unroll
                                    for (int mm = 0; mm < M; ++mm)
                                        hs[mm] = __hfma2(
                                            *reinterpret_cast<const __half2*>(&wb),
                                            *reinterpret_cast<const __half2*>(&xw[mm][4 * hh + q]), hs[mm]);
                                }
                            }
#pragma unroll
                            for (int mm = 0; mm < M; ++mm)
                                part[r][mm] = __low2float(hs[mm]) + __high2float(hs[mm]);
                        }
                    } else {
#pragma unroll
                        for (int h = 0; h < GW; ++h) {
                            const int wi = g * GW + h;
                            float wf[k_rows][VPW];
#pragma unroll
                            for (int r = 0; r < k_rows; ++r)
                                decode_word<FMT>(reinterpret_cast<const uint32_t*>(&w[r])[wi], wf[r]);
#pragma unroll
                            for (int mm = 0; mm < M; ++mm) {
                                float xv[VPW];
                                load_x(xu + mm * xs_row + wi * VPW, xv);
#pragma unroll
                                for (int r = 0; r < k_rows; ++r) {
                                    float s = part[r][mm];
#pragma unroll
                                    for (int e = 0; e < VPW; ++e) s = fmaf(xv[e], wf[r][e], s);
                                    part[r][mm] = s;
                                }
                            }
                        }
                    }
#pragma unroll
                    for (int r = 0; r < k_rows; ++r) {
                        float sc = 1.0f;
                        if constexpr (FMT == cuda_stream_nvfp4) sc = g == 0 ? nv_sc[r].x : nv_sc[r].y;
                        if constexpr (FMT == cuda_stream_fp8)
                            if (block_scaled) sc = __uint_as_float(sbits[r]);
#pragma unroll
                        for (int mm = 0; mm < M; ++mm) acc[r][mm] = fmaf(part[r][mm], sc, acc[r][mm]);
                    }
                }
            }

            if (!tile_end) continue;
            // End of a tile: reduce across the warp (every lane gets the sums); lane r·M + mm writes
            // output (row r, batch row mm), or lane mm the SwiGLU of the gate and up sums.
            float out[k_rows][M];
#pragma unroll
            for (int r = 0; r < k_rows; ++r)
#pragma unroll
                for (int mm = 0; mm < M; ++mm) {
                    float v = acc[r][mm];
#pragma unroll
                    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, off);
                    acc[r][mm] = 0.0f;
                    out[r][mm] = v;
                }
            // One lane per output, one copy of the code (not one per (row, batch row): those ran one after
            // another, each with a single lane active, 2 · M times per tile).
            if (a.swiglu) {  // one chunk only (the launcher guarantees it)
                const int row = tile * k_warps + warp, mm = lane;
                if (row < a.p[0].n && mm < a.m && mm < M) {
                    float og = out[0][0], ou = out[1][0];
#pragma unroll
                    for (int m2 = 1; m2 < M; ++m2)
                        if (m2 == mm) og = out[0][m2], ou = out[1][m2];
                    const float xi = HALF ? row_inv[mm] : 1.0f;
                    const float g = fmaf(og * xi, out_mul(a, 0, row, block_scaled),
                                         a.p[0].bias ? a.p[0].bias[row] : 0.0f);
                    const float u = fmaf(ou * xi, out_mul(a, 1, row, block_scaled),
                                         a.p[1].bias ? a.p[1].bias[row] : 0.0f);
                    a.p[0].y[int64_t(mm) * a.p[0].n + row] = g / (1.0f + expf(-g)) * u;
                }
                continue;
            }
            if (lane < k_rows * M) {
                const int r = lane / M, mm = lane - r * M;
                float v = out[0][0];
#pragma unroll
                for (int rr = 0; rr < k_rows; ++rr)
#pragma unroll
                    for (int m2 = 0; m2 < M; ++m2)
                        if (rr * M + m2 == lane) v = out[rr][m2];
                int pi, row;
                tile_row(a, tile, warp, r, pi, row);
                const stream_part& P = a.p[pi];
                if (row < P.n && mm < a.m) {
                    float* yp = P.y + int64_t(mm) * P.n + row;
                    if (!first) v += *yp;
                    if (last) {
                        v = fmaf(HALF ? v * row_inv[mm] : v, out_mul(a, pi, row, block_scaled),
                                 P.bias ? P.bias[row] : 0.0f);
                        if (P.accumulate) v = *yp + v;  // one chunk: *yp is still the caller's
                    }
                    *yp = v;
                }
            }
        }
        cp_async_wait<0>();
        if (TRACE && last) tr_mark(3);
    }
    if constexpr (TRACE) {
        __syncthreads();
        if (threadIdx.x == 0) {
            const uint32_t end_c = uint32_t(clock64() - tr_c0);
            const uint64_t end_ns = global_ns();
            uint32_t smid;
            asm volatile("mov.u32 %0, %smid;" : "=r"(smid));
            const uint32_t slot = atomicAdd(&g_trace_next, 1u) & (k_trace_records - 1);
            uint32_t* r = a.trace + size_t(slot) * k_trace_words;
            const uint32_t rec[k_trace_words] = {uint32_t(a.k),
                                                 uint32_t(n_tiles),
                                                 blockIdx.x | gridDim.x << 16,
                                                 smid,
                                                 uint32_t(tr_ns0),
                                                 uint32_t(tr_ns0 >> 32),
                                                 uint32_t(end_ns),
                                                 uint32_t(end_ns >> 32),
                                                 tr_c[0],
                                                 tr_c[1],
                                                 tr_c[2],
                                                 tr_c[3],
                                                 end_c,
                                                 uint32_t(my_tiles),
                                                 uint32_t(FMT | M << 4 | int(HALF) << 12 | a.n_parts << 16),
                                                 uint32_t(a.swiglu)};
#pragma unroll
            for (int i = 0; i < k_trace_words; ++i) r[i] = rec[i];
        }
    }
}

struct device_limits {
    int n_sm = 0, optin = 0, per_sm_smem = 0;
};

cudaError_t query_limits(device_limits& d) {
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&d.n_sm, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&d.optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&d.per_sm_smem, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev);
    return e;
}

// Static shared memory of the kernel (row_scale, row_inv, row_norm, row_factors' amax_bits and warp sums,
// stage_kept's warp sums: 832 bytes at most), kept out of the dynamic budget: the opt-in limit counts static
// + dynamic (checked at the first launch).
constexpr size_t k_static_smem = 1024;

// Why 2 blocks per SM (m <= 4): 16-row tiles keep the per-SM share of rows even for thin matrices;
// above m = 4 the registers allow only one, and the kernel is bound by x reads and FMAs anyway. (3 blocks
// at m = 1, registers capped at 84, x chunked in a third of the SM's shared memory: 6 % slower end to end,
// H200, 2026-12-01.)
int blocks_per_sm(int64_t m) {
    return m > 4 ? 1 : 2;
}
size_t smem_budget(const device_limits& d, int64_t m) {
    return std::min(size_t(d.optin), size_t(d.per_sm_smem) / size_t(blocks_per_sm(m)) - 1024) - k_static_smem;
}
template <int FMT>
size_t unit_x_bytes(int64_t m_tmpl) {
    return size_t(m_tmpl) * unit_floats<FMT>() * sizeof(float);
}
int64_t m_bucket(int64_t m) {
    return m <= 1 ? 1 : m <= 2 ? 2 : m <= 4 ? 4 : m <= 8 ? 8 : 16;
}

template <int FMT, int M, bool HALF = false, bool TRACE = false>
cudaError_t launch(stream_args a, cudaStream_t stream) {
    constexpr int EL = fmt_traits<FMT>::EL, US = unit_floats<FMT>();
    device_limits d;
    cudaError_t e = query_limits(d);
    if (e != cudaSuccess) return e;
    const size_t budget = smem_budget(d, M);
    if (budget < ring_bytes() + k_span * unit_x_bytes<FMT>(M)) return cudaErrorInvalidConfiguration;
    // Chunk of k staged at once: all of k if it fits, else whole 64-unit spans.
    const int64_t units_fit = int64_t((budget - ring_bytes()) / unit_x_bytes<FMT>(M));
    int kc = a.k;
    if (units_fit < a.k / EL) kc = int(units_fit / k_span * k_span * EL);
    if ((a.swiglu || a.accumulate) && kc != a.k) return cudaErrorInvalidConfiguration;
    a.kc = kc;
    const int units = kc / EL;
    const size_t smem = ring_bytes() + size_t(M) * size_t(units) * US * sizeof(float);
    auto kernel = stream_kernel<FMT, M, HALF, TRACE>;
    static const cudaError_t static_ok = [&] {
        cudaFuncAttributes fa{};
        const cudaError_t fe = cudaFuncGetAttributes(&fa, kernel);
        return fe != cudaSuccess                    ? fe
               : fa.sharedSizeBytes > k_static_smem ? cudaErrorInvalidConfiguration
                                                    : cudaSuccess;
    }();
    if (static_ok != cudaSuccess) return static_ok;
    static std::atomic<size_t> smem_set{48 * 1024 - k_static_smem};
    if (smem > smem_set.load()) {
        e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(budget));
        if (e != cudaSuccess) return e;
        smem_set.store(budget);
    }
    const int n_tiles = a.tile_start[a.n_parts];
    const int grid = std::max(1, std::min(n_tiles, blocks_per_sm(M) * d.n_sm));
    return launch_pdl(kernel, dim3(unsigned(grid)), dim3(k_threads), smem, stream, a);
}

template <int FMT>
cudaError_t dispatch_m(const stream_args& a, cudaStream_t stream) {
    if (a.trace && a.m <= 1) {  // NIBBLE_GEMV_TRACE: the recording kernels (batch 1 only)
        if constexpr (FMT == cuda_stream_nvfp4)
            if (a.half) return launch<FMT, 1, true, true>(a, stream);
        return launch<FMT, 1, false, true>(a, stream);
    }
    if constexpr (FMT == cuda_stream_nvfp4) {
        if (a.half && a.m <= 1) return launch<FMT, 1, true>(a, stream);
        if (a.half && a.m <= 2) return launch<FMT, 2, true>(a, stream);
    }
    if (a.m <= 1) return launch<FMT, 1>(a, stream);
    if (a.m <= 2) return launch<FMT, 2>(a, stream);
    if (a.m <= 4) return launch<FMT, 4>(a, stream);
    if (a.m <= 8) return launch<FMT, 8>(a, stream);
    return launch<FMT, 16>(a, stream);
}

bool aligned(const void* p, uintptr_t to) {
    return reinterpret_cast<uintptr_t>(p) % to == 0;
}

// Checks the parts against the contract and fills the kernel's view of them.
cudaError_t make_args(const float* x, int64_t m, const cuda_stream_part* parts, int n_parts, bool swiglu,
                      const cuda_stream_norm& norm, stream_args& a) {
    if (m < 1 || m > 16 || n_parts < 1 || n_parts > cuda_stream_max_parts || !parts || !aligned(x, 16))
        return cudaErrorInvalidValue;
    const cuda_stream_weight& w0 = parts[0].w;
    if (!cuda_linear_stream_supports(w0.format, w0.k)) return cudaErrorInvalidValue;
    a = stream_args{};
    a.x = x;
    a.m = int(m);
    a.n_parts = n_parts;
    a.swiglu = swiglu;
    a.gran = int(w0.fp8_granularity);
    a.k = a.kc = int(w0.k);
    a.act = int(w0.act);
    a.act_scale = w0.act_scale;
    if (norm.w && (!aligned(norm.w, 16) || w0.k % 4)) return cudaErrorInvalidValue;
    a.norm_w = norm.w;
    a.norm_eps = norm.eps;
    a.half = cuda_linear_stream_fp16_x() && w0.format == cuda_stream_nvfp4 && m <= 2 &&
             w0.act == cuda_stream_act_none;
    for (int i = 0; i < n_parts; ++i) a.half = a.half && parts[i].w.fp16_x;
    if (w0.act < cuda_stream_act_none || w0.act > cuda_stream_act_nvfp4 ||
        (w0.act == cuda_stream_act_nvfp4 && w0.k % 16))
        return cudaErrorInvalidValue;
    int tiles = 0;
    for (int i = 0; i < n_parts; ++i) {
        const cuda_stream_weight& w = parts[i].w;
        if (w.format != w0.format || w.k != w0.k || w.fp8_granularity != w0.fp8_granularity ||
            w.act != w0.act || w.act_scale != w0.act_scale || w.n < 0 || w.n > INT32_MAX / 2 ||
            !aligned(w.data, 16) || !parts[i].y)
            return cudaErrorInvalidValue;
        if (w.format == cuda_stream_nvfp4 && (!w.block_scales || !aligned(w.block_scales, 4)))
            return cudaErrorInvalidValue;
        if (w.format == cuda_stream_fp8 && !w.fp8_scales) return cudaErrorInvalidValue;
        stream_part& p = a.p[i];
        p.w = static_cast<const uint8_t*>(w.data);
        p.block_scales = w.block_scales;
        p.fp8_scales = w.fp8_scales;
        // NVFP4: the global multiplier and the 2^14 of the half2 decode; FP8 tensor / channel scales are
        // read on the device per output, block scales per unit; BF16: none.
        p.out_mul = w.format == cuda_stream_nvfp4 ? w.global_mul * k_e2m1_unscale : 1.0f;
        p.n = int(w.n);
        p.bias = parts[i].bias;
        p.y = parts[i].y;
        p.accumulate = parts[i].accumulate;
        if (p.accumulate && swiglu) return cudaErrorInvalidValue;
        a.accumulate = a.accumulate || p.accumulate;
        a.tile_start[i] = tiles;
        tiles += swiglu ? 0 : int((w.n + k_warps * k_rows - 1) / (k_warps * k_rows));
    }
    if (swiglu) {
        if (n_parts != 2 || parts[1].w.n != w0.n) return cudaErrorInvalidValue;
        tiles = int((w0.n + k_warps - 1) / k_warps);
        a.tile_start[1] = tiles;
    }
    a.tile_start[n_parts] = tiles;
    return cudaSuccess;
}

uint32_t* g_trace_ring = nullptr;  // cuda_linear_stream_trace_begin's device ring (null: off)
std::string g_trace_path;          // and the file cuda_linear_stream_trace_end writes

cudaError_t dispatch(stream_args a, cuda_stream_format f, cudaStream_t stream) {
    if (a.tile_start[a.n_parts] == 0) return cudaSuccess;
    a.trace = g_trace_ring;
    switch (f) {
        case cuda_stream_nvfp4:
            return dispatch_m<cuda_stream_nvfp4>(a, stream);
        case cuda_stream_fp8:
            return dispatch_m<cuda_stream_fp8>(a, stream);
        case cuda_stream_bf16:
            return dispatch_m<cuda_stream_bf16>(a, stream);
    }
    return cudaErrorInvalidValue;
}

template <int FMT>
bool single_chunk_fmt(int64_t m, int64_t k) {
    device_limits d;
    if (query_limits(d) != cudaSuccess) return false;
    const size_t budget = smem_budget(d, m), need_x = unit_x_bytes<FMT>(m_bucket(m));
    return budget > ring_bytes() && int64_t((budget - ring_bytes()) / need_x) >= k / fmt_traits<FMT>::EL;
}

}  // namespace

namespace {
int g_fp16_x = -1;  // -1: not looked up yet
}  // namespace

bool cuda_linear_stream_fp16_x() {
    if (g_fp16_x < 0) {
        const char* v = std::getenv("NIBBLE_GEMV_HFMA2");
        g_fp16_x = v && v[0] == '0' ? 0 : 1;
    }
    return g_fp16_x == 1;
}

void cuda_linear_stream_set_fp16_x(bool on) {
    g_fp16_x = on ? 1 : 0;
}

bool cuda_linear_stream_supports(cuda_stream_format f, int64_t k) {
    if (k <= 0 || k > INT32_MAX / 2) return false;
    switch (f) {
        case cuda_stream_nvfp4:
            return k % 64 == 0;  // scale rows of k/16 bytes stay 4-byte aligned for the 4-byte copies
        case cuda_stream_fp8:
            return k % 16 == 0;
        case cuda_stream_bf16:
            return k % 8 == 0;
    }
    return false;
}

cudaError_t cuda_linear_stream(const float* x, int64_t m, const cuda_stream_weight& w,
                               const float* bias_or_null, float* y, cudaStream_t stream) {
    cuda_stream_part p;
    p.w = w;
    p.bias = bias_or_null;
    p.y = y;
    return cuda_linear_stream_parts(x, m, &p, 1, stream);
}

cudaError_t cuda_linear_stream_parts(const float* x, int64_t m, const cuda_stream_part* parts, int n_parts,
                                     cudaStream_t stream, const cuda_stream_norm& norm) {
    stream_args a;
    const cudaError_t e = make_args(x, m, parts, n_parts, false, norm, a);
    return e != cudaSuccess ? e : dispatch(a, parts[0].w.format, stream);
}

bool cuda_linear_stream_single_chunk(cuda_stream_format f, int64_t m, int64_t k) {
    if (m < 1 || m > 16 || !cuda_linear_stream_supports(f, k)) return false;
    switch (f) {
        case cuda_stream_nvfp4:
            return single_chunk_fmt<cuda_stream_nvfp4>(m, k);
        case cuda_stream_fp8:
            return single_chunk_fmt<cuda_stream_fp8>(m, k);
        case cuda_stream_bf16:
            return single_chunk_fmt<cuda_stream_bf16>(m, k);
    }
    return false;
}

cudaError_t cuda_linear_stream_swiglu(const float* x, int64_t m, const cuda_stream_part* parts,
                                      cudaStream_t stream, const cuda_stream_norm& norm) {
    stream_args a;
    const cudaError_t e = make_args(x, m, parts, 2, true, norm, a);
    return e != cudaSuccess ? e : dispatch(a, parts[0].w.format, stream);
}

cudaError_t cuda_linear_stream_trace_begin(bool& began) {
    began = false;
    const char* path = std::getenv("NIBBLE_GEMV_TRACE");
    if (!path || !*path || g_trace_ring) return cudaSuccess;
    g_trace_path = path;
    const size_t bytes = size_t(k_trace_records) * k_trace_words * sizeof(uint32_t);
    cudaError_t e = cudaMalloc(&g_trace_ring, bytes);
    if (e == cudaSuccess) e = cudaMemset(g_trace_ring, 0, bytes);
    const uint32_t zero = 0;
    if (e == cudaSuccess) e = cudaMemcpyToSymbol(g_trace_next, &zero, sizeof zero);
    began = e == cudaSuccess;
    return e;
}

void cuda_linear_stream_trace_end() {
    if (!g_trace_ring) return;
    const char* path = g_trace_path.c_str();
    std::vector<uint32_t> ring(size_t(k_trace_records) * k_trace_words);
    uint32_t next = 0;
    if (cudaDeviceSynchronize() == cudaSuccess &&
        cudaMemcpy(ring.data(), g_trace_ring, ring.size() * sizeof(uint32_t), cudaMemcpyDeviceToHost) ==
            cudaSuccess &&
        cudaMemcpyFromSymbol(&next, g_trace_next, sizeof next) == cudaSuccess) {
        // Oldest record first: the ring from `next` on once it has wrapped.
        const uint32_t n = std::min(next, k_trace_records), first = next > k_trace_records ? next : 0;
        if (FILE* f = std::fopen(path, "wb")) {
            for (uint32_t i = 0; i < n; ++i) {
                const uint32_t slot = (first + i) & (k_trace_records - 1);
                std::fwrite(ring.data() + size_t(slot) * k_trace_words, sizeof(uint32_t), k_trace_words, f);
            }
            std::fclose(f);
            std::fprintf(stderr, "nibble: %u GEMV block records written to %s\n", n, path);
        }
    }
    cudaFree(g_trace_ring);
    g_trace_ring = nullptr;
}

}  // namespace nibble
