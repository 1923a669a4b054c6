// NVFP4 weight-only decode linear (see linear_nvfp4.h for the contract).
//
// Design (decode is bandwidth-bound: every weight byte is read once, so the kernel must stream):
// - A persistent grid of 2 blocks per SM (1 for m > 4), 8 warps each. The rows of W are cut into tiles of
//   16 rows (2 per warp, so each x value read from shared memory serves two rows); block b takes tiles
//   b, b + grid, ...
// - The activations x[m, kc] of the current k-chunk are staged once per block in shared memory (FP32,
//   4 floats of padding per unit so that the 16-byte reads of a warp are bank-conflict free). kc = k unless
//   m·k does not fit the shared-memory budget; then y holds the raw partial sums between chunks, always
//   read and written by the same thread, so the result stays deterministic.
// - A "unit" is 16 packed bytes (32 k, two NVFP4 blocks) or 8 bytes for k = 16·odd. Lane l of a warp reads
//   units l, l + 32, ... of its rows: coalesced 16-byte loads that bypass L1 (read once), 4 units per row
//   in a batch (2 or 4), and the next batch (or the next tile's first) is issued before the current one is
//   computed, so 2-4 KB per warp is in flight. (Also prefetching the batch after into L2 measured slower on
//   H100: lm_head 151936x4096 at m = 1 went from 75 % to 69 % of the copy bandwidth.)
// - Dequantization stays in registers: two E2M1 codes (pair layout, nvfp4_layout.h) become a half2
//   holding e2m1 × 2^-14 with 1-4 integer ops, widened to FP32; each 16-block is summed unscaled, then scaled
//   once by its E4M3 value. The 2^14 and the global multiplier are applied once per output.
// - The warp's per-lane sums are combined with a butterfly of shuffles; lane r·M + i writes y.
// - Programmatic dependent launch (sm_90+): the kernel's first weight loads are issued before it waits for
//   the previous kernel on the stream (only x and y depend on it), hiding the launch ramp. So the weights
//   must not be written by the kernel launched just before this one. NIBBLE_NO_PDL=1 turns it off.
//   Why: H100, graph replays of back-to-back launches, m = 1: 4096x4096 7.48 -> 6.20 us, 4096x12288
//   16.48 -> 15.05 us, lm_head 151936x4096 unchanged (150 us).
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>

#include "cuda/kernel_util.cuh"
#include "cuda/linear_nvfp4.h"
#include "cuda/linear_stream.h"

namespace nibble {

namespace {

using namespace kernel;

constexpr int k_threads = 256;
constexpr int k_warps = k_threads / 32;
constexpr size_t k_smem_budget = 96 * 1024;  // per block; fits sm_89/sm_120's 99 KB opt-in
constexpr float k_e2m1_unscale = 16384.0f;   // 2^14, undoes the half2 decode's offset

template <int VEC>
struct unit_traits;
template <>
struct unit_traits<16> {
    using word_t = uint4;
};
template <>
struct unit_traits<8> {
    using word_t = uint2;
};

// Streaming loads: the weights are read exactly once, so keep them out of L1 (shared memory's space).
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}
__device__ __forceinline__ uint2 load_stream(const uint2* p) {
    uint2 v;
    asm("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
    return v;
}
// The unit's scale bytes: two (16-byte units) or one (8-byte units), in the low bits.
template <int VEC>
__device__ __forceinline__ uint32_t load_scales(const uint8_t* scales, int64_t unit) {
    uint32_t v;
    if constexpr (VEC == 16)
        asm("ld.global.nc.L1::no_allocate.u16 %0, [%1];" : "=r"(v) : "l"(scales + 2 * unit));
    else
        asm("ld.global.nc.L1::no_allocate.u8 %0, [%1];" : "=r"(v) : "l"(scales + unit));
    return v;
}

template <int VEC>
__device__ __forceinline__ uint32_t word_at(const typename unit_traits<VEC>::word_t& w, int i) {
    return reinterpret_cast<const uint32_t*>(&w)[i];
}

template <int M, int VEC>
__global__ void __launch_bounds__(k_threads, M > 4 ? 1 : 2)
    nvfp4_linear_kernel(const float* __restrict__ x, int m, const uint8_t* __restrict__ packed,
                        const uint8_t* __restrict__ scales, int n, int k, int kc, float out_mul,
                        const float* __restrict__ bias, float* __restrict__ y) {
    using word_t = typename unit_traits<VEC>::word_t;
    constexpr int R = 2;         // rows per warp: each x value read from shared memory serves 2 rows
    constexpr int EL = 2 * VEC;  // k per unit
    constexpr int XS = EL + 4;   // floats per unit in shared memory (padded)
    constexpr int TILE = k_warps * R;
    // Units per lane and row loaded together (32 or 64 bytes per row); the next batch is in flight while
    // one is computed. Why not more: 4 16-byte units need ~170 registers at m = 1 and spill at the 128 that
    // 2 blocks/SM allow; 2 keeps 2-4 KB per warp, 32-64 KB per SM, in flight.
    constexpr int k_batch = VEC == 16 ? 2 : 4;
    extern __shared__ float4 smem[];
    float* xs = reinterpret_cast<float*>(smem);

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t units_row = k / EL;
    const int n_tiles = (n + TILE - 1) / TILE;
    const int my_tiles = int(blockIdx.x) < n_tiles ? (n_tiles - 1 - int(blockIdx.x)) / int(gridDim.x) + 1 : 0;
    const word_t* wp = reinterpret_cast<const word_t*>(packed);
    grid_dependency_trigger();

    for (int k0 = 0; k0 < k; k0 += kc) {
        const int units = min(kc, k - k0) / EL;
        const int n_iter = (units + 31) / 32;  // units per lane, rounded up
        const int n_batch = (n_iter + k_batch - 1) / k_batch;
        const int n_items = my_tiles * n_batch;
        const int xs_row = units * XS;
        const int64_t unit0 = k0 / EL;
        const bool first = k0 == 0, last = k0 + kc >= k;

        auto load = [&](int item, word_t(&w)[k_batch][R], uint32_t(&s)[k_batch][R]) {
            const int tile = int(blockIdx.x) + (item / n_batch) * int(gridDim.x);
            const int it0 = (item % n_batch) * k_batch;
#pragma unroll
            for (int j = 0; j < k_batch; ++j) {
                const int u = (it0 + j) * 32 + lane;
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    const int row = (tile * k_warps + warp) * R + r;
                    if (u < units && row < n) {
                        const int64_t idx = row * units_row + unit0 + u;
                        w[j][r] = load_stream(wp + idx);
                        s[j][r] = load_scales<VEC>(scales, idx);
                    } else {
                        w[j][r] = word_t{};
                        s[j][r] = 0;
                    }
                }
            }
        };

        // The first weights are requested before x is staged (and, with PDL, while the previous kernel
        // finishes), so HBM starts streaming at once.
        word_t wa[k_batch][R];
        uint32_t sa[k_batch][R];
        if (n_items > 0) load(0, wa, sa);

        if (first) grid_dependency_wait();  // x (and y) may come from the kernel before us
        __syncthreads();                    // every reader of the previous chunk's x is done
        constexpr int F4 = EL / 4;
        const int n_f4 = M * units * F4;
        for (int i = threadIdx.x; i < n_f4; i += k_threads) {
            const int mm = i / (units * F4), rem = i - mm * units * F4;
            const int u = rem / F4, q = rem - u * F4;
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (mm < m) v = *reinterpret_cast<const float4*>(x + int64_t(mm) * k + k0 + u * EL + q * 4);
            *reinterpret_cast<float4*>(xs + mm * xs_row + u * XS + q * 4) = v;
        }
        __syncthreads();

        float acc[R][M] = {};
        for (int item = 0; item < n_items; ++item) {
            word_t wb[k_batch][R];
            uint32_t sb[k_batch][R];
            if (item + 1 < n_items) load(item + 1, wb, sb);

            const int it0 = (item % n_batch) * k_batch;
#pragma unroll
            for (int j = 0; j < k_batch; ++j) {
                const int u = (it0 + j) * 32 + lane;
                if (u >= units) break;
                const float* xu = xs + u * XS;
#pragma unroll
                for (int b = 0; b < VEC / 8; ++b) {  // the NVFP4 blocks of this unit
                    float part[R][M] = {};
#pragma unroll
                    for (int h = 0; h < 2; ++h) {  // two 32-bit words (8 codes each) per block
                        const int wi = 2 * b + h;
                        float wf[R][8];
#pragma unroll
                        for (int r = 0; r < R; ++r) {
                            const uint32_t word = word_at<VEC>(wa[j][r], wi);
                            e2m1x8_scaled(word, wf[r]);
                        }
#pragma unroll
                        for (int mm = 0; mm < M; ++mm) {
                            const float4 xa = *reinterpret_cast<const float4*>(xu + mm * xs_row + wi * 8);
                            const float4 xb = *reinterpret_cast<const float4*>(xu + mm * xs_row + wi * 8 + 4);
#pragma unroll
                            for (int r = 0; r < R; ++r) {
                                float s = part[r][mm];
                                s = fmaf(xa.x, wf[r][0], s);
                                s = fmaf(xa.y, wf[r][1], s);
                                s = fmaf(xa.z, wf[r][2], s);
                                s = fmaf(xa.w, wf[r][3], s);
                                s = fmaf(xb.x, wf[r][4], s);
                                s = fmaf(xb.y, wf[r][5], s);
                                s = fmaf(xb.z, wf[r][6], s);
                                s = fmaf(xb.w, wf[r][7], s);
                                part[r][mm] = s;
                            }
                        }
                    }
#pragma unroll
                    for (int r = 0; r < R; ++r) {
                        const float sc = e4m3_value(sa[j][r] >> (8 * b));
#pragma unroll
                        for (int mm = 0; mm < M; ++mm) acc[r][mm] = fmaf(part[r][mm], sc, acc[r][mm]);
                    }
                }
            }
#pragma unroll
            for (int j = 0; j < k_batch; ++j)
#pragma unroll
                for (int r = 0; r < R; ++r) wa[j][r] = wb[j][r], sa[j][r] = sb[j][r];

            if (item % n_batch != n_batch - 1) continue;
            // End of a tile: reduce across the warp; lane r·M + mm owns output (row r, batch row mm).
            const int tile = int(blockIdx.x) + (item / n_batch) * int(gridDim.x);
#pragma unroll
            for (int r = 0; r < R; ++r)
#pragma unroll
                for (int mm = 0; mm < M; ++mm) {
                    float v = acc[r][mm];
#pragma unroll
                    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, off);
                    acc[r][mm] = 0.0f;
                    const int row = (tile * k_warps + warp) * R + r;
                    if (lane == r * M + mm && row < n && mm < m) {
                        float* yp = y + int64_t(mm) * n + row;
                        if (!first) v += *yp;
                        *yp = last ? fmaf(v, out_mul, bias ? bias[row] : 0.0f) : v;
                    }
                }
        }
    }
}

template <int M, int VEC>
cudaError_t launch(const float* x, int m, const uint8_t* packed, const uint8_t* scales, int n, int k,
                   float out_mul, const float* bias, float* y, cudaStream_t stream) {
    constexpr int EL = 2 * VEC, XS = EL + 4, TILE = k_warps * 2;
    constexpr size_t unit_bytes = size_t(M) * XS * sizeof(float);
    int dev = 0, n_sm = 0, optin = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e != cudaSuccess) return e;
    const size_t budget = std::min(k_smem_budget, size_t(optin));
    // Chunk of k staged at once: all of k if it fits, else a multiple of 32 units (whole lane sweeps).
    const int64_t units_fit = int64_t(budget / unit_bytes);
    int kc = k;
    if (units_fit < k / EL) {
        if (units_fit < 32) return cudaErrorInvalidConfiguration;
        kc = int(units_fit / 32 * 32 * EL);
    }
    const size_t smem = size_t(kc / EL) * unit_bytes;
    auto kernel = nvfp4_linear_kernel<M, VEC>;
    static std::atomic<size_t> smem_set{48 * 1024};
    if (smem > smem_set.load()) {
        e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(budget));
        if (e != cudaSuccess) return e;
        smem_set.store(budget);
    }
    // Why 2 blocks per SM (m <= 4): 16-row tiles keep the per-SM share of rows even for thin matrices
    // (6144 rows: 3 tiles on the busiest SM for 2.9 on average); above m = 4 each extra block costs another
    // copy of x from L2, the registers allow only one, and the kernel is bound by x reads and FMAs anyway.
    const int per_sm = M > 4 ? 1 : 2;
    const int n_tiles = (n + TILE - 1) / TILE;
    const int grid = std::max(1, std::min(n_tiles, per_sm * n_sm));
    return launch_pdl(kernel, dim3(unsigned(grid)), dim3(k_threads), smem, stream, x, m, packed, scales, n, k,
                      kc, out_mul, bias, y);
}

template <int VEC>
cudaError_t dispatch_m(const float* x, int m, const uint8_t* packed, const uint8_t* scales, int n, int k,
                       float out_mul, const float* bias, float* y, cudaStream_t stream) {
    if (m <= 1) return launch<1, VEC>(x, m, packed, scales, n, k, out_mul, bias, y, stream);
    if (m <= 2) return launch<2, VEC>(x, m, packed, scales, n, k, out_mul, bias, y, stream);
    if (m <= 4) return launch<4, VEC>(x, m, packed, scales, n, k, out_mul, bias, y, stream);
    if (m <= 8) return launch<8, VEC>(x, m, packed, scales, n, k, out_mul, bias, y, stream);
    return launch<16, VEC>(x, m, packed, scales, n, k, out_mul, bias, y, stream);
}

}  // namespace

bool cuda_nvfp4_legacy_gemv() {
    static const bool on = [] {
        const char* v = std::getenv("NIBBLE_GEMV_LEGACY");
        return v && v[0] == '1';
    }();
    return on;
}

cudaError_t cuda_nvfp4_linear(const float* x, int64_t m, const uint8_t* packed, const uint8_t* scales,
                              int64_t n, int64_t k, float global_mul, const float* bias_or_null, float* y,
                              cudaStream_t stream) {
    if (m < 1 || m > 16 || n < 0 || k <= 0 || k % 16 || n > INT32_MAX / 2 || k > INT32_MAX / 2)
        return cudaErrorInvalidValue;
    if (reinterpret_cast<uintptr_t>(x) % 16 || reinterpret_cast<uintptr_t>(packed) % 8)
        return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    if (cuda_linear_stream_supports(cuda_stream_nvfp4, k) && reinterpret_cast<uintptr_t>(packed) % 16 == 0 &&
        reinterpret_cast<uintptr_t>(scales) % 4 == 0 && !cuda_nvfp4_legacy_gemv()) {
        cuda_stream_weight w;
        w.format = cuda_stream_nvfp4;
        w.data = packed;
        w.block_scales = scales;
        w.global_mul = global_mul;
        w.n = n;
        w.k = k;
        return cuda_linear_stream(x, m, w, bias_or_null, y, stream);
    }
    const float out_mul = global_mul * k_e2m1_unscale;
    const bool wide = k % 32 == 0 && reinterpret_cast<uintptr_t>(packed) % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(scales) % 2 == 0;
    return wide ? dispatch_m<16>(x, int(m), packed, scales, int(n), int(k), out_mul, bias_or_null, y, stream)
                : dispatch_m<8>(x, int(m), packed, scales, int(n), int(k), out_mul, bias_or_null, y, stream);
}

}  // namespace nibble
