// Device helpers shared by the linear kernels: exact E2M1 (pair layout, nvfp4_layout.h) / E4M3 decoding,
// programmatic dependent launch and async copies. Header-only, for .cu files.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <utility>

#include "cuda/nvfp4_layout.h"

namespace nibble::kernel {

// Pair q of a pair-layout NVFP4 word (nvfp4_layout.h: how the GPU stores NVFP4 codes) -> the codes
// (c_q, c_q+4) × 2^-14 as floats, exact.
__device__ __forceinline__ float2 e2m1_pair_scaled(uint32_t w, int q) {
    const uint32_t h = nvfp4_pair_bits(w, q);
    return __half22float2(*reinterpret_cast<const __half2*>(&h));
}

// The 8 E2M1 codes of a pair-layout word -> their values × 2^-14, in k order.
__device__ __forceinline__ void e2m1x8_scaled(uint32_t word, float (&v)[8]) {
#pragma unroll
    for (int q = 0; q < 4; ++q) {
        const float2 p = e2m1_pair_scaled(word, q);
        v[q] = p.x, v[q + 4] = p.y;
    }
}

// E4M3 byte (low 8 bits of b) -> float. Its exponent and mantissa placed under FP32's give e4m3 × 2^-120
// for normals and subnormals alike (an FP32 subnormal for the latter); × 2^120 is exact. Needs FTZ off.
// NaN (0x7F / 0xFF) is not decoded as NaN: callers never pass it (the loader rejects NaN scales).
__device__ __forceinline__ float e4m3_value(uint32_t b) {
    return __uint_as_float(((b & 0x7Fu) << 20) | ((b & 0x80u) << 24)) * 0x1p120f;
}

// The 4 E4M3 bytes of a 32-bit word (k order, low byte first) -> floats, exact.
__device__ __forceinline__ void e4m3x4_value(uint32_t w, float (&v)[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    uint32_t h01, h23;
    asm("{\n\t.reg .b16 lo, hi;\n\tmov.b32 {lo, hi}, %2;\n\tcvt.rn.f16x2.e4m3x2 %0, lo;\n\t"
        "cvt.rn.f16x2.e4m3x2 %1, hi;\n\t}"
        : "=r"(h01), "=r"(h23)
        : "r"(w));
    const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&h01));
    const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&h23));
    v[0] = a.x, v[1] = a.y, v[2] = b.x, v[3] = b.y;
#else
    for (int i = 0; i < 4; ++i) v[i] = e4m3_value(w >> (8 * i));
#endif
}

// The 2 E4M3 bytes in the low 16 bits of b (low byte -> .x) -> floats, exact: one conversion instruction
// for both on sm_89+ (NVFP4 block scales: two per 16-byte unit).
__device__ __forceinline__ float2 e4m3x2_value(uint32_t b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    uint32_t h;
    asm("{\n\t.reg .b16 lo;\n\tcvt.u16.u32 lo, %1;\n\tcvt.rn.f16x2.e4m3x2 %0, lo;\n\t}" : "=r"(h) : "r"(b));
    return __half22float2(*reinterpret_cast<const __half2*>(&h));
#else
    return make_float2(e4m3_value(b), e4m3_value(b >> 8));
#endif
}

// Programmatic dependent launch (sm_90+): let the next kernel on the stream start its prologue as our blocks
// retire, and wait for the previous one only where we read what it wrote. No-ops on older GPUs.
__device__ __forceinline__ void grid_dependency_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Asynchronous global -> shared copies (sm_80+), bypassing registers; zero-filled when !valid.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
    const uint32_t s = uint32_t(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem),
                 "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem, bool valid) {
    const uint32_t s = uint32_t(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(s), "l"(gmem), "r"(valid ? 4 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

}  // namespace nibble::kernel

namespace nibble {

// NIBBLE_NO_PDL=1 turns programmatic dependent launch off (for A/B measurements).
inline bool pdl_disabled() {
    static const bool off = [] {
        const char* v = std::getenv("NIBBLE_NO_PDL");
        return v && v[0] == '1';
    }();
    return off;
}

// Launches `kernel` on `stream`, with programmatic dependent launch allowed (the kernel may start while the
// one before it on the stream finishes; it must griddepcontrol.wait before reading what that one wrote) on
// sm_90+ unless NIBBLE_NO_PDL=1.
template <class... P, class... A>
cudaError_t launch_pdl(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                       A&&... args) {
    int dev = 0, major = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    if (e != cudaSuccess) return e;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = major >= 9 && !pdl_disabled() ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...);
}

}  // namespace nibble
