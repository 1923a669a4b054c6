// Prefill attention on tensor cores (see attention_prefill.h for the contract).
//
// Why: the split-KV kernel (attention.cu) computes on CUDA cores and re-reads a chunk's K/V rows once per
// query token; a 2048-token prompt spends more time there than in its linears.
//
// Design (FlashAttention-2's shape, mma.sync.m16n8k16 BF16 -> FP32):
// - Block (tile, KV head): 64 query rows, row r = (token t0 + r / group, q head kvh·group + r % group), so
//   the group's heads share every K/V tile; 4 warps of 16 rows. Keys 0 .. the tile's largest position,
//   64 at a time; each row masks the keys past its own position.
// - K and V tiles of the KV head pass through shared memory by cp.async: K double-buffered (the next tile
//   is fetched while the current one is used), V single (fetched while the next Q·Kᵀ runs). FP8 rows land
//   as bytes and are widened to BF16 in shared memory, exactly (every E4M3 value is a BF16 value). Rows are
//   padded by 16 bytes so that ldmatrix's 8 row reads fall on distinct banks. 85 KB (BF16, hd 128) or
//   92 KB (FP8): fits the 99 KB per block of sm_89 / sm_12x; two blocks per SM on sm_90.
// - Precision: q (FP32, scaled by log2(e) / sqrt(hd)) enters as two BF16 terms hi + lo (|q - hi - lo| <=
//   2^-17 |q|), K and V exactly; the probabilities p (FP32) as hi + lo too; products and sums in FP32.
//   Online softmax per row in the log2 domain (exp2f), as the split-KV kernel.
// - Per warp and key tile: S = Q·Kᵀ (16 rows × 64 keys, 8 n8 tiles), the row max over the quad of lanes
//   that share a row, P = exp2(S - max) taken from S's accumulator layout straight into the A fragments
//   of P·V (16 rows × hd), V's B fragments by ldmatrix.trans. Deterministic (fixed order everywhere).
#include <cuda_bf16.h>

#include <cmath>
#include <cstdlib>

#include "cuda/attention_prefill.h"
#include "cuda/kernel_util.cuh"
#include "cuda/kv_cache.cuh"

namespace nibble {

namespace {

constexpr int k_rows = 64;  // query rows per block
constexpr int k_warps = 4;
constexpr int k_threads = 32 * k_warps;
constexpr int k_keys = 64;  // keys per tile
constexpr int k_min_tokens = 64;
constexpr float k_log2e = 1.4426950408889634f;

// Shared-memory layout of the kernel for element type KV and head dim HD, in bytes from the start:
// Q hi [64][LD], Q lo [64][LD], K [2][64][LD], V [64][LD] (BF16); FP8 adds the raw byte tiles K [2][64][HD]
// and V [64][HD] after them (K and V above then hold the widened current tile, K one stage only).
template <class KV, int HD>
struct tc_layout {
    static constexpr int LD = HD + 8;  // BF16 per padded row
    static constexpr int TILE = k_keys * LD;
    static constexpr bool WIDEN = KV::bytes == 1;
    static constexpr int K_STAGES = WIDEN ? 1 : 2;
    static constexpr int CH = HD * KV::bytes / 16;  // 16-byte chunks per stored row
    static constexpr size_t q_off = 0, k_off = 2 * size_t(k_rows) * LD * 2;
    static constexpr size_t v_off = k_off + size_t(K_STAGES) * TILE * 2;
    static constexpr size_t raw_off = v_off + size_t(TILE) * 2;
    static constexpr size_t bytes = raw_off + (WIDEN ? 3 * size_t(k_keys) * HD : 0);
};

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return uint32_t(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p))
                 : "memory");
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p))
                 : "memory");
}

__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// A split in two terms against two n8 tiles of B (one ldmatrix x4): c0 += (hi + lo)·(b0, b1), c1 += (hi +
// lo)·(b2, b3).
__device__ __forceinline__ void mma_split_x2(float (&c0)[4], float (&c1)[4], const uint32_t (&hi)[4],
                                             const uint32_t (&lo)[4], const uint32_t (&b)[4]) {
    mma_bf16(c0, hi, b[0], b[1]);
    mma_bf16(c0, lo, b[0], b[1]);
    mma_bf16(c1, hi, b[2], b[3]);
    mma_bf16(c1, lo, b[2], b[3]);
}

// (x0, x1) -> BF16 pairs hi = bf16(x), lo = bf16(x - hi), element 0 in the low half.
__device__ __forceinline__ void split_bf16x2(float x0, float x1, uint32_t& hi, uint32_t& lo) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
    const float2 hf = __bfloat1622float2(h);
    const __nv_bfloat162 l = __floats2bfloat162_rn(x0 - hf.x, x1 - hf.y);
    hi = *reinterpret_cast<const uint32_t*>(&h);
    lo = *reinterpret_cast<const uint32_t*>(&l);
}

template <class KV, int HD>
__global__ void __launch_bounds__(k_threads, 2)
    prefill_kernel(const float* __restrict__ q, const typename KV::storage* __restrict__ kc,
                   const typename KV::storage* __restrict__ vc, const int32_t* __restrict__ slots,
                   const int32_t* __restrict__ positions, int T, int nh, int nkv, int group, int tt,
                   kv_pages pages, float qscale, float* __restrict__ out) {
    using Lay = tc_layout<KV, HD>;
    constexpr int LD = Lay::LD, TILE = Lay::TILE, CH = Lay::CH, EPC = 16 / KV::bytes;
    extern __shared__ __align__(16) uint8_t smem[];
    __shared__ int s_pos[k_rows];  // position of row r's token; -1: no row
    uint16_t* qh = reinterpret_cast<uint16_t*>(smem + Lay::q_off);
    uint16_t* ql = qh + k_rows * LD;
    uint16_t* kt = reinterpret_cast<uint16_t*>(smem + Lay::k_off);
    uint16_t* vt = reinterpret_cast<uint16_t*>(smem + Lay::v_off);
    uint8_t* raw = smem + Lay::raw_off;  // FP8: K [2][64][HD], V [64][HD] bytes

    kernel::grid_dependency_wait();  // q comes from the kernel before us
    const int t0 = int(blockIdx.x) * tt, kvh = int(blockIdx.y);
    if (!attention_tile_taken(slots, T, tt, t0)) return;  // the split-KV kernel takes these tokens
    const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
    const int slot = slots[t0], n_tok = min(tt, T - t0);
    const int64_t kv_dim = int64_t(nkv) * HD;
    if (threadIdx.x < k_rows) {
        const int i = int(threadIdx.x) / group;
        s_pos[threadIdx.x] = i < n_tok ? positions[t0 + i] : -1;
    }
    __syncthreads();
    int max_pos = max(s_pos[lane], s_pos[lane + 32]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) max_pos = max(max_pos, __shfl_xor_sync(0xffffffffu, max_pos, o));
    const int n_keys = max_pos + 1, n_kt = (n_keys + k_keys - 1) / k_keys;

    // The stored rows of keys [64 j, 64 j + 64) of K (or V) into their tile (zeros past n_keys).
    auto issue = [&](const typename KV::storage* base, int j, void* tile_bf16, uint8_t* tile_raw) {
        for (int c = int(threadIdx.x); c < k_keys * CH; c += k_threads) {
            const int kk = c / CH, part = c - kk * CH, key = j * k_keys + kk;
            const bool ok = key < n_keys;
            const typename KV::storage* src =
                base + pages.row(slot, ok ? key : 0, kv_dim) + int64_t(kvh) * HD + part * EPC;
            void* dst = Lay::WIDEN
                            ? static_cast<void*>(tile_raw + kk * HD + part * 16)
                            : static_cast<void*>(static_cast<uint16_t*>(tile_bf16) + kk * LD + part * 8);
            kernel::cp_async16(dst, src, ok);
        }
    };
    auto k_stage = [&](int j) { return kt + (Lay::K_STAGES == 2 ? (j & 1) * TILE : 0); };
    auto k_raw = [&](int j) { return raw + (j & 1) * k_keys * HD; };
    uint8_t* v_raw = raw + 2 * k_keys * HD;
    // FP8: raw bytes -> BF16 tile, 16 bytes per thread and step.
    auto widen = [&](const uint8_t* src, uint16_t* dst) {
        if constexpr (Lay::WIDEN) {
            for (int c = int(threadIdx.x); c < k_keys * (HD / 16); c += k_threads) {
                const int kk = c / (HD / 16), part = c - kk * (HD / 16);
                const uint4 v = *reinterpret_cast<const uint4*>(src + kk * HD + part * 16);
                const uint32_t w[4] = {v.x, v.y, v.z, v.w};
                uint32_t b[8];
#pragma unroll
                for (int p = 0; p < 8; ++p) {
                    const float2 f = KV::pair(w, p);
                    const __nv_bfloat162 h = __floats2bfloat162_rn(f.x, f.y);
                    b[p] = *reinterpret_cast<const uint32_t*>(&h);
                }
                uint4* d = reinterpret_cast<uint4*>(dst + kk * LD + part * 16);
                d[0] = make_uint4(b[0], b[1], b[2], b[3]);
                d[1] = make_uint4(b[4], b[5], b[6], b[7]);
            }
        }
    };

    issue(kc, 0, k_stage(0), k_raw(0));
    kernel::cp_async_commit();
    issue(vc, 0, vt, v_raw);
    kernel::cp_async_commit();

    // Q of the tile's rows, scaled and split, while the first tiles are in flight.
    for (int i = int(threadIdx.x); i < k_rows * (HD / 4); i += k_threads) {
        const int r = i / (HD / 4), d = (i - r * (HD / 4)) * 4;
        float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (s_pos[r] >= 0) {
            const int64_t tok = t0 + r / group, h = int64_t(kvh) * group + r % group;
            v = *reinterpret_cast<const float4*>(q + (tok * nh + h) * HD + d);
        }
        uint32_t h01, l01, h23, l23;
        split_bf16x2(v.x * qscale, v.y * qscale, h01, l01);
        split_bf16x2(v.z * qscale, v.w * qscale, h23, l23);
        *reinterpret_cast<uint2*>(qh + r * LD + d) = make_uint2(h01, h23);
        *reinterpret_cast<uint2*>(ql + r * LD + d) = make_uint2(l01, l23);
    }

    const int g = lane >> 2, t4 = lane & 3;
    const int pos0 = s_pos[warp * 16 + g], pos1 = s_pos[warp * 16 + g + 8];
    const uint16_t* qa_hi = qh + (warp * 16 + (lane & 15)) * LD + 8 * (lane >> 4);
    const uint16_t* qa_lo = ql + (warp * 16 + (lane & 15)) * LD + 8 * (lane >> 4);
    // ldmatrix row offsets: K (non-transposed B, two n8 tiles per x4), V (transposed B, two dim tiles).
    const int kb_row = (lane & 7) + 8 * (lane >> 4), kb_col = 8 * ((lane >> 3) & 1);
    const int vb_row = lane & 15, vb_col = 8 * (lane >> 4);

    float o[HD / 8][4] = {};
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    for (int j = 0; j < n_kt; ++j) {
        // Groups in flight: K(j), V(j) (issued last iteration), then K(j + 1) (empty past the end).
        if (j + 1 < n_kt) issue(kc, j + 1, k_stage(j + 1), k_raw(j + 1));
        kernel::cp_async_commit();
        kernel::cp_async_wait<2>();  // K(j) landed (this thread's copies)
        __syncthreads();             // ... every thread's; Q written
        if constexpr (Lay::WIDEN) {
            widen(k_raw(j), kt);
            __syncthreads();
        }
        const uint16_t* K = k_stage(j);
        float s[k_keys / 8][4] = {};
#pragma unroll
        for (int kk = 0; kk < HD / 16; ++kk) {
            uint32_t ah[4], al[4];
            ldsm_x4(ah, qa_hi + 16 * kk);
            ldsm_x4(al, qa_lo + 16 * kk);
#pragma unroll
            for (int np = 0; np < k_keys / 16; ++np) {
                uint32_t b[4];
                ldsm_x4(b, K + (16 * np + kb_row) * LD + 16 * kk + kb_col);
                mma_split_x2(s[2 * np], s[2 * np + 1], ah, al, b);
            }
        }
        // Causal mask, row max over the quad of lanes holding the row, online-softmax rescale.
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < k_keys / 8; ++nt)
#pragma unroll
            for (int c = 0; c < 2; ++c) {
                const int key = j * k_keys + 8 * nt + 2 * t4 + c;
                if (key > pos0) s[nt][c] = -INFINITY;
                if (key > pos1) s[nt][2 + c] = -INFINITY;
                mx0 = fmaxf(mx0, s[nt][c]);
                mx1 = fmaxf(mx1, s[nt][2 + c]);
            }
#pragma unroll
        for (int off = 1; off <= 2; off <<= 1) {
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
        }
        const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
        const float mu0 = n0 == -INFINITY ? 0.0f : n0, mu1 = n1 == -INFINITY ? 0.0f : n1;
        const float a0 = exp2f(m0 - mu0), a1 = exp2f(m1 - mu1);  // 0 while the row had no key
        m0 = n0, m1 = n1;
        l0 *= a0, l1 *= a1;
#pragma unroll
        for (int dt = 0; dt < HD / 8; ++dt) {
            o[dt][0] *= a0, o[dt][1] *= a0;
            o[dt][2] *= a1, o[dt][3] *= a1;
        }

        kernel::cp_async_wait<1>();  // V(j) landed
        __syncthreads();
        if constexpr (Lay::WIDEN) {
            widen(v_raw, vt);
            __syncthreads();
        }
#pragma unroll
        for (int kk = 0; kk < k_keys / 16; ++kk) {
            // P of keys [16 kk, 16 kk + 16): S's n8 tiles 2 kk, 2 kk + 1 are A's columns 0-7, 8-15.
            uint32_t ph[4], pl[4];
            float p[2][4];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
#pragma unroll
                for (int c = 0; c < 2; ++c) {
                    p[h][c] = exp2f(s[2 * kk + h][c] - mu0);
                    p[h][2 + c] = exp2f(s[2 * kk + h][2 + c] - mu1);
                    l0 += p[h][c];
                    l1 += p[h][2 + c];
                }
            }
            split_bf16x2(p[0][0], p[0][1], ph[0], pl[0]);
            split_bf16x2(p[0][2], p[0][3], ph[1], pl[1]);
            split_bf16x2(p[1][0], p[1][1], ph[2], pl[2]);
            split_bf16x2(p[1][2], p[1][3], ph[3], pl[3]);
#pragma unroll
            for (int dp = 0; dp < HD / 16; ++dp) {
                uint32_t b[4];
                ldsm_x4_trans(b, vt + (16 * kk + vb_row) * LD + 16 * dp + vb_col);
                mma_split_x2(o[2 * dp], o[2 * dp + 1], ph, pl, b);
            }
        }
        __syncthreads();  // every warp is done with V(j) (and K(j)) before they are refilled
        if (j + 1 < n_kt) issue(vc, j + 1, vt, v_raw);
        kernel::cp_async_commit();
    }
    kernel::cp_async_wait<0>();

#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
        l0 += __shfl_xor_sync(0xffffffffu, l0, off);
        l1 += __shfl_xor_sync(0xffffffffu, l1, off);
    }
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        const int r = warp * 16 + g + 8 * half;
        if ((half ? pos1 : pos0) < 0) continue;
        const float inv = 1.0f / (half ? l1 : l0);
        const int64_t tok = t0 + r / group, h = int64_t(kvh) * group + r % group;
        float* dst = out + (tok * nh + h) * HD + 2 * t4;
#pragma unroll
        for (int dt = 0; dt < HD / 8; ++dt)
            *reinterpret_cast<float2*>(dst + 8 * dt) =
                make_float2(o[dt][2 * half] * inv, o[dt][2 * half + 1] * inv);
    }
}

template <class KV, int HD>
cudaError_t launch(const float* q, const cuda_kv_cache& kv, const int32_t* slots, const int32_t* positions,
                   int64_t T, int64_t nh, int64_t layer, int tt, float* out, cudaStream_t st) {
    using Lay = tc_layout<KV, HD>;
    auto kernel = prefill_kernel<KV, HD>;
    static bool attr_set = false;  // per instantiation; setting it twice is harmless
    if (!attr_set) {
        const cudaError_t e =
            cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Lay::bytes));
        if (e != cudaSuccess) return e;
        attr_set = true;
    }
    const int group = int(nh / kv.n_kv);
    const dim3 grid(unsigned((T + tt - 1) / tt), unsigned(kv.n_kv));
    return launch_pdl(
        kernel, grid, dim3(k_threads), Lay::bytes, st, q, static_cast<const typename KV::storage*>(kv.k),
        static_cast<const typename KV::storage*>(kv.v), slots, positions, int(T), int(nh), int(kv.n_kv),
        group, tt,
        kv_pages{kv.tables, kv.max_blocks, layer * kv.n_blocks << kv.block_shift, int(kv.block_shift)},
        k_log2e / sqrtf(float(HD)), out);
}

template <class KV>
size_t layout_bytes(int64_t hd) {
    return hd == 32   ? tc_layout<KV, 32>::bytes
           : hd == 64 ? tc_layout<KV, 64>::bytes
                      : tc_layout<KV, 128>::bytes;
}

template <class KV>
cudaError_t launch_hd(const float* q, const cuda_kv_cache& kv, const int32_t* slots, const int32_t* positions,
                      int64_t T, int64_t nh, int64_t layer, int tt, float* out, cudaStream_t st) {
    switch (kv.head_dim) {
        case 32:
            return launch<KV, 32>(q, kv, slots, positions, T, nh, layer, tt, out, st);
        case 64:
            return launch<KV, 64>(q, kv, slots, positions, T, nh, layer, tt, out, st);
        case 128:
            return launch<KV, 128>(q, kv, slots, positions, T, nh, layer, tt, out, st);
    }
    return cudaErrorInvalidValue;
}

// -1: not looked up yet; else on unless NIBBLE_TC_ATTENTION=0 (set_prefill overrides).
int g_enabled = -1;

bool enabled() {
    if (g_enabled < 0) {
        const char* v = std::getenv("NIBBLE_TC_ATTENTION");
        g_enabled = v && v[0] == '0' ? 0 : 1;
    }
    return g_enabled == 1;
}

}  // namespace

void cuda_attention_set_prefill(bool on) {
    g_enabled = on ? 1 : 0;
}

bool cuda_attention_prefill_enabled() {
    return enabled();
}

int cuda_attention_prefill_tile(int64_t T, int64_t nh, const cuda_kv_cache& kv) {
    if (!enabled() || T < k_min_tokens || kv.n_kv <= 0 || nh % kv.n_kv) return 0;
    if (kv.type != cuda_kv_bf16 && kv.type != cuda_kv_fp8) return 0;
    if (kv.head_dim != 32 && kv.head_dim != 64 && kv.head_dim != 128) return 0;
    const int64_t group = nh / kv.n_kv;
    if (group > k_rows) return 0;
    static int major = -1, optin = 0;
    if (major < 0) {
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
            major = 0;
            return 0;
        }
    }
    if (major < 8) return 0;
    const size_t need =
        kv.type == cuda_kv_fp8 ? layout_bytes<kv_fp8>(kv.head_dim) : layout_bytes<kv_bf16>(kv.head_dim);
    if (need > size_t(optin)) return 0;
    return int(k_rows / group);
}

cudaError_t cuda_attention_prefill(const float* q, const cuda_kv_cache& kv, const int32_t* slots,
                                   const int32_t* positions, int64_t T, int64_t nh, int64_t layer, int tt,
                                   float* out, cudaStream_t st) {
    const int64_t hd = kv.head_dim;
    if (T <= 0 || tt <= 0 || kv.n_kv <= 0 || nh % kv.n_kv || (nh / kv.n_kv) * tt > k_rows ||
        (hd != 32 && hd != 64 && hd != 128) || layer < 0 || layer >= kv.n_layers || T > INT32_MAX)
        return cudaErrorInvalidValue;
    if (kv.type == cuda_kv_bf16)
        return launch_hd<kv_bf16>(q, kv, slots, positions, T, nh, layer, tt, out, st);
    if (kv.type == cuda_kv_fp8) return launch_hd<kv_fp8>(q, kv, slots, positions, T, nh, layer, tt, out, st);
    return cudaErrorInvalidValue;
}

}  // namespace nibble
