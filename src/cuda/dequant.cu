#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "cuda/dequant.h"
#include "cuda/kernel_util.cuh"

namespace nibble {

namespace {

// The 8 E2M1 codes of a pair-layout word (nvfp4_layout.h) as floats, exact: the half2 decode (e2m1 × 2^-14,
// kernel_util.cuh) times 2^14. Why not a table: a dynamically indexed local array went to local memory and
// left the decode at ~45 % of the copy bandwidth (H200).
__device__ __forceinline__ void e2m1x8(uint32_t w, float (&v)[8]) {
    kernel::e2m1x8_scaled(w, v);
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] *= 16384.0f;
}

__device__ __forceinline__ float e4m3_value(uint32_t b) {
    uint32_t e = (b >> 3) & 0xF, m = b & 7;
    float v = e == 0 ? __int2float_rn(int(m)) * 0.001953125f  // m × 2^-9, exact
                     : __int_as_float(int(((e + 120u) << 23) | (m << 20)));
    if (e == 0xF && m == 7) v = __int_as_float(0x7FC00000);
    return (b & 0x80) ? -v : v;
}

__device__ __forceinline__ uint16_t bf16_bits(float x) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(x));
}

// The output element's bits: BF16 or (F16) FP16, round to nearest even.
template <bool F16>
__device__ __forceinline__ uint16_t out_bits(float x) {
    if constexpr (F16)
        return __half_as_ushort(__float2half_rn(x));
    else
        return bf16_bits(x);
}

// One thread per 16-element block: 8 packed bytes (one 8-byte load) and one scale -> 16 BF16 (two 16-byte
// stores).
template <bool F16>
__global__ void nvfp4_dequant_kernel(const uint8_t* __restrict__ packed, const uint8_t* __restrict__ scales,
                                     int64_t n_blocks, float global, bool divide,
                                     uint16_t* __restrict__ out) {
    int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (b >= n_blocks) return;
    float s = e4m3_value(scales[b]);
    float eff = divide ? __fdiv_rn(s, global) : __fmul_rn(s, global);
    uint2 q = reinterpret_cast<const uint2*>(packed)[b];
    uint32_t words[2] = {q.x, q.y};
    alignas(16) uint16_t v[16];
#pragma unroll
    for (int w = 0; w < 2; ++w) {
        float e[8];
        e2m1x8(words[w], e);
#pragma unroll
        for (int j = 0; j < 8; ++j) v[w * 8 + j] = out_bits<F16>(__fmul_rn(e[j], eff));
    }
    uint4* o = reinterpret_cast<uint4*>(out + b * 16);
    o[0] = reinterpret_cast<const uint4*>(v)[0];
    o[1] = reinterpret_cast<const uint4*>(v)[1];
}

__global__ void mxfp4_dequant_kernel(const uint8_t* __restrict__ packed, const uint8_t* __restrict__ scales,
                                     int64_t n_blocks, uint16_t* __restrict__ out) {
    int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (b >= n_blocks) return;
    // 2^(sb - 127) from its bits (exact for every byte; 2^-127 is the float32 subnormal 0x00400000).
    uint32_t sb = scales[b];
    float s = sb == 255 ? __int_as_float(0x7FC00000) : __uint_as_float(sb == 0 ? 0x00400000u : sb << 23);
    uint4 q = reinterpret_cast<const uint4*>(packed)[b];
    uint32_t words[4] = {q.x, q.y, q.z, q.w};
    alignas(16) uint16_t v[32];
#pragma unroll
    for (int w = 0; w < 4; ++w) {
        float e[8];
        e2m1x8(words[w], e);
#pragma unroll
        for (int j = 0; j < 8; ++j) v[w * 8 + j] = bf16_bits(__fmul_rn(e[j], s));
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
        reinterpret_cast<uint4*>(out + b * 32)[i] = reinterpret_cast<const uint4*>(v)[i];
}

// One thread per 16 bytes (one 16-byte load, two 16-byte stores); the last thread also takes the n % 16
// tail one element at a time.
template <bool F16>
__global__ void fp8_dequant_kernel(const uint8_t* __restrict__ q, int64_t n, uint16_t* __restrict__ out) {
    int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t full = n / 16;
    if (c < full) {
        uint4 in = reinterpret_cast<const uint4*>(q)[c];
        uint32_t words[4] = {in.x, in.y, in.z, in.w};
        alignas(16) uint16_t v[16];
#pragma unroll
        for (int w = 0; w < 4; ++w)
#pragma unroll
            for (int j = 0; j < 4; ++j)
                v[w * 4 + j] = out_bits<F16>(e4m3_value((words[w] >> (8 * j)) & 0xFF));
        uint4* o = reinterpret_cast<uint4*>(out + c * 16);
        o[0] = reinterpret_cast<const uint4*>(v)[0];
        o[1] = reinterpret_cast<const uint4*>(v)[1];
    }
    if (c == full - (full > 0 ? 1 : 0))
        for (int64_t i = full * 16; i < n; ++i) out[i] = out_bits<F16>(e4m3_value(q[i]));
}

__global__ void e2m1_pair_layout_kernel(uint32_t* __restrict__ words, int64_t n) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) words[i] = nvfp4_pair_word(words[i]);
}

template <bool F16>
cudaError_t nvfp4_dequantize(const uint8_t* packed, const uint8_t* scales, int64_t n, int64_t k, float global,
                             bool divide_global, uint16_t* out, cudaStream_t stream) {
    if (k % 16) return cudaErrorInvalidValue;
    int64_t n_blocks = n * k / 16;
    if (n_blocks == 0) return cudaSuccess;
    const int threads = 256;
    nvfp4_dequant_kernel<F16><<<unsigned((n_blocks + threads - 1) / threads), threads, 0, stream>>>(
        packed, scales, n_blocks, global, divide_global, out);
    return cudaGetLastError();
}

template <bool F16>
cudaError_t fp8_dequantize(const uint8_t* q, int64_t n, uint16_t* out, cudaStream_t stream) {
    if (n < 0) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    const int64_t threads_needed = std::max<int64_t>(n / 16, 1);
    const int threads = 256;
    fp8_dequant_kernel<F16>
        <<<unsigned((threads_needed + threads - 1) / threads), threads, 0, stream>>>(q, n, out);
    return cudaGetLastError();
}

}  // namespace

cudaError_t cuda_e2m1_to_pair_layout(uint8_t* codes, int64_t n_bytes, cudaStream_t stream) {
    if (n_bytes < 0 || n_bytes % 4 || reinterpret_cast<uintptr_t>(codes) % 4) return cudaErrorInvalidValue;
    const int64_t n = n_bytes / 4;
    if (n == 0) return cudaSuccess;
    const int threads = 256;
    e2m1_pair_layout_kernel<<<unsigned((n + threads - 1) / threads), threads, 0, stream>>>(
        reinterpret_cast<uint32_t*>(codes), n);
    return cudaGetLastError();
}

cudaError_t cuda_nvfp4_dequantize_bf16(const uint8_t* packed, const uint8_t* scales, int64_t n, int64_t k,
                                       float global, bool divide_global, uint16_t* out, cudaStream_t stream) {
    return nvfp4_dequantize<false>(packed, scales, n, k, global, divide_global, out, stream);
}

cudaError_t cuda_nvfp4_dequantize_f16(const uint8_t* packed, const uint8_t* scales, int64_t n, int64_t k,
                                      float global, bool divide_global, uint16_t* out, cudaStream_t stream) {
    return nvfp4_dequantize<true>(packed, scales, n, k, global, divide_global, out, stream);
}

cudaError_t cuda_mxfp4_dequantize_bf16(const uint8_t* packed, const uint8_t* scales, int64_t n, int64_t k,
                                       uint16_t* out, cudaStream_t stream) {
    if (k % 32) return cudaErrorInvalidValue;
    int64_t n_blocks = n * k / 32;
    if (n_blocks == 0) return cudaSuccess;
    const int threads = 256;
    mxfp4_dequant_kernel<<<unsigned((n_blocks + threads - 1) / threads), threads, 0, stream>>>(packed, scales,
                                                                                               n_blocks, out);
    return cudaGetLastError();
}

cudaError_t cuda_fp8_dequantize_bf16(const uint8_t* q, int64_t n, uint16_t* out, cudaStream_t stream) {
    return fp8_dequantize<false>(q, n, out, stream);
}

cudaError_t cuda_fp8_dequantize_f16(const uint8_t* q, int64_t n, uint16_t* out, cudaStream_t stream) {
    return fp8_dequantize<true>(q, n, out, stream);
}

}  // namespace nibble
