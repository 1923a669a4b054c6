// Device helpers shared by the linear kernels: exact E2M1 / E4M3 decoding, programmatic dependent launch
// and async copies. Header-only, for .cu files.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <utility>

namespace nibble::kernel {

// Two E2M1 codes at bits 15:12 and 31:28 of q -> (e2m1_lo, e2m1_hi) × 2^-14, exact (as half2 bits, or as
// floats). The sign moves to
// bit 15 and (e1 e0 m) to bits 11:9 of each half: E2M1's exponent bias 1 becomes fp16's 15, and the E2M1
// subnormal (0.5) lands on the fp16 subnormal 2^-15, so one shift serves every code.
__device__ __forceinline__ uint32_t e2m1x2_half2_bits(uint32_t q) {
    return (q & 0x80008000u) | ((q & 0x70007000u) >> 3);
}
__device__ __forceinline__ float2 e2m1x2_scaled(uint32_t q) {
    const uint32_t h = e2m1x2_half2_bits(q);
    return __half22float2(*reinterpret_cast<const __half2*>(&h));
}

// The 8 E2M1 codes of a 32-bit word (k order: byte b holds k = 2b in its low nibble, 2b + 1 in its high
// one) -> their values × 2^-14.
__device__ __forceinline__ void e2m1x8_scaled(uint32_t word, float (&v)[8]) {
    const float2 p0 = e2m1x2_scaled(word << 12), p1 = e2m1x2_scaled(word << 8);
    const float2 p2 = e2m1x2_scaled(word << 4), p3 = e2m1x2_scaled(word);
    v[0] = p0.x, v[4] = p0.y, v[1] = p1.x, v[5] = p1.y;
    v[2] = p2.x, v[6] = p2.y, v[3] = p3.x, v[7] = p3.y;
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
