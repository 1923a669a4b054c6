// Device-side element types of the KV cache (backend_ops.h: cuda_kv_cache), shared by the writer
// (norm_rope.cu: RoPE fused with the append) and the reader (attention.cu). One place says how a value
// is stored and how it is read back:
//   f32:  the float itself.
//   bf16: RNE (__float2bfloat16_rn), read back exactly by a 16-bit shift.
//   fp8:  E4M3 "fn" with a scale of 1, RNE saturating at ±448 (cvt.rn.satfinite, vLLM's fp8 cache
//         without calibrated scales; core/formats.h e4m3_from_float_sat on the CPU), read back exactly
//         through half precision (every E4M3 value is a half).
// Each type also reads pairs of elements out of raw 32-bit words as a 16-byte or 2-element load left
// them (element i of a row at byte i·bytes, little-endian).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

namespace nibble {

// Where a position's K/V row lives in the paged cache (backend_ops.h, cuda_kv_cache), for kernels.
struct kv_pages {
    const int32_t* tables;           // [n_slots][max_blocks]
    int64_t max_blocks, layer_rows;  // layer_rows = layer · n_blocks · block_size
    int shift;
    // First element of the row of position pos of slot (rows of kv_dim elements).
    __device__ __forceinline__ int64_t row(int slot, int pos, int64_t kv_dim) const {
        const int64_t b = tables[int64_t(slot) * max_blocks + (pos >> shift)];
        return (layer_rows + (b << shift) + (pos & ((1 << shift) - 1))) * kv_dim;
    }
};

struct kv_f32 {
    using storage = float;
    static constexpr int bytes = 4;
    __device__ static storage encode(float x) { return x; }
    // Elements 2p and 2p + 1 of raw words w.
    __device__ static float2 pair(const uint32_t* w, int p) {
        return make_float2(__uint_as_float(w[2 * p]), __uint_as_float(w[2 * p + 1]));
    }
};

struct kv_bf16 {
    using storage = uint16_t;
    static constexpr int bytes = 2;
    __device__ static storage encode(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
    __device__ static float2 pair(const uint32_t* w, int p) {
        return make_float2(__uint_as_float(w[p] << 16), __uint_as_float(w[p] & 0xFFFF0000u));
    }
};

struct kv_fp8 {
    using storage = uint8_t;
    static constexpr int bytes = 1;
    __device__ static storage encode(float x) {
        return storage(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3));
    }
    __device__ static float2 pair(const uint32_t* w, int p) {
        const uint32_t word = w[p >> 1];
        const auto two = __nv_fp8x2_storage_t((p & 1) ? word >> 16 : word & 0xFFFFu);
        return __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(two, __NV_E4M3)));
    }
};

}  // namespace nibble
