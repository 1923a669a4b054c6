// Linear-layer kernels for cuda_backend: activation fake quantization (W4A4, FP8), bit-exact with
// core/quant.cpp and cpu_quantize_activations; the BF16 and E4M3 operands and the epilogue of the
// tensor-core linear. The GEMMs are in cuda_backend.cpp and fp8_gemm.cpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>

#include "cuda/act_quant.cuh"
#include "cuda/backend_ops.h"

namespace nibble {

namespace {

constexpr int k_threads = 256;

unsigned blocks_for(int64_t n) {
    return unsigned(std::min<int64_t>((n + k_threads - 1) / k_threads, int64_t(1) << 20));
}

// The maximum of every thread's v over the block (blockDim.x a multiple of 32, <= 1024; NaN ignored, as
// fmaxf does); every thread gets it. Called once per kernel (its shared slots are not reused).
__device__ __forceinline__ float block_max(float v) {
    __shared__ float part[32];
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    v = part[0];
    for (int i = 1; i < int(blockDim.x >> 5); ++i) v = fmaxf(v, part[i]);
    return v;
}

// One thread per 16-block: core/quant.cpp nvfp4_fake_quantize_activation, operation for operation.
__global__ void nvfp4_fake_quantize_kernel(const float* x, int64_t n_blocks, float global, float* out) {
    for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < n_blocks;
         b += int64_t(gridDim.x) * blockDim.x) {
        const float* xb = x + b * 16;
        float amax = 0;
        for (int j = 0; j < 16; ++j) amax = fmaxf(amax, fabsf(xb[j]));
        const float eff = actq::nvfp4_block_scale(amax, global);
        for (int j = 0; j < 16; ++j) out[b * 16 + j] = actq::nvfp4_fake(xb[j], eff);
    }
}

// One block per (row, group): s = amax/448 (1 for an all-zero group), x' = e4m3_sat(x / s) · s.
__global__ void fp8_fake_quantize_kernel(const float* x, int64_t k, int64_t group, float* out) {
    const int64_t g0 = int64_t(blockIdx.y) * group, len = min(group, k - g0);
    const float* xr = x + blockIdx.x * k + g0;
    float a = 0;
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x) a = fmaxf(a, fabsf(xr[j]));
    a = block_max(a);
    const float s = actq::fp8_scale(a);
    for (int64_t j = threadIdx.x; j < len; j += blockDim.x)
        out[blockIdx.x * k + g0 + j] = actq::fp8_fake(xr[j], s);
}

__global__ void fp8_static_fake_quantize_kernel(const float* x, int64_t n, float scale, float* out) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x)
        out[i] = actq::fp8_fake(x[i], scale);
}

__global__ void scale_to_bf16_kernel(const float* x, int64_t n, float mul, __nv_bfloat16* out) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x)
        out[i] = __float2bfloat16_rn(x[i] * mul);
}

__global__ void scale_to_e4m3_kernel(const float* x, int64_t n, float mul, uint8_t* out) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x)
        out[i] = uint8_t(actq::e4m3_from_float_sat(x[i] * mul));
}

// One block per row: the row's absolute max (NaN ignored, as fmaxf does), then x / s rounded to BF16.
__global__ void row_normalize_bf16_kernel(const float* x, int64_t k, float target, __nv_bfloat16* out,
                                          float* row_scale) {
    const float* xr = x + blockIdx.x * k;
    float a = 0;
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x) a = fmaxf(a, fabsf(xr[j]));
    a = block_max(a);
    const float s = a > 0 ? a / target : 1.0f;
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x)
        out[blockIdx.x * k + j] = __float2bfloat16_rn(xr[j] / s);
    if (threadIdx.x == 0) row_scale[blockIdx.x] = s;
}

// As row_normalize_bf16_kernel with target 448, the quotient stored as its E4M3 byte (RNE, saturating).
__global__ void row_quantize_e4m3_kernel(const float* x, int64_t k, uint8_t* out, float* row_scale) {
    const float* xr = x + blockIdx.x * k;
    float a = 0;
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x) a = fmaxf(a, fabsf(xr[j]));
    a = block_max(a);
    const float s = actq::fp8_scale(a);
    for (int64_t j = threadIdx.x; j < k; j += blockDim.x)
        out[blockIdx.x * k + j] = uint8_t(actq::e4m3_from_float_sat(xr[j] / s));
    if (threadIdx.x == 0) row_scale[blockIdx.x] = s;
}

// One block per row: the row's absolute max, then x · 2^-e rounded once to FP16 (8 values per 16-byte store).
__global__ void row_scale_f16_kernel(const float* x, int64_t k, __half* out, float* row_scale) {
    const float* xr = x + blockIdx.x * k;
    float a = 0;
    for (int64_t j = threadIdx.x * 4; j < k; j += blockDim.x * 4) {
        const float4 v = *reinterpret_cast<const float4*>(xr + j);
        a = fmaxf(a, fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w))));
    }
    a = block_max(a);
    // A finite amax goes to [2^14, 2^15) (e <= 113); e >= -100 keeps 2^-e finite for rows of tiny values.
    const int e = a > 0 && a <= 3.4e38f ? max(ilogbf(a) - 14, -100) : 0;
    const float inv = ldexpf(1.0f, -e);
    __half* orow = out + blockIdx.x * k;
    for (int64_t j = threadIdx.x * 4; j < k; j += blockDim.x * 4) {
        const float4 v = *reinterpret_cast<const float4*>(xr + j);
        __half2 h[2] = {__floats2half2_rn(v.x * inv, v.y * inv), __floats2half2_rn(v.z * inv, v.w * inv)};
        *reinterpret_cast<uint2*>(orow + j) = *reinterpret_cast<const uint2*>(h);
    }
    if (threadIdx.x == 0) row_scale[blockIdx.x] = ldexpf(1.0f, e);
}

__global__ void split_bf16_block_scaled_kernel(const float* x, int64_t rows, int64_t k, const float* scales,
                                               int64_t scale_stride, int64_t groups, __nv_bfloat16* out) {
    const int64_t per_group = rows * k;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < groups * per_group;
         i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t g = i / per_group, e = i % per_group, j = e % k;
        const float v = x[e] * scales[g * scale_stride + j / 128];
        const __nv_bfloat16 h = __float2bfloat16_rn(v);
        out[g * 2 * per_group + e] = h;
        out[g * 2 * per_group + per_group + e] = __float2bfloat16_rn(v - __bfloat162float(h));
    }
}

__global__ void linear_epilogue_kernel(const float* y, int parts, int64_t rows, int64_t n, int64_t block_cols,
                                       const float* row_scale, const float* col_scale, const float* bias,
                                       float* out) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows * n;
         i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = i / n, c = i % n;
        const int64_t at = (c / block_cols) * block_cols * parts * rows + r * block_cols + c % block_cols;
        float v = y[at];
        for (int p = 1; p < parts; ++p) v += y[at + p * rows * block_cols];
        if (row_scale) v *= row_scale[r];
        if (col_scale) v *= col_scale[c];
        if (bias) v += bias[c];
        out[i] = v;
    }
}

}  // namespace

cudaError_t cuda_nvfp4_fake_quantize(const float* x, int64_t rows, int64_t k, float input_global, float* out,
                                     cudaStream_t st) {
    if (rows < 0 || k <= 0 || k % 16) return cudaErrorInvalidValue;
    if (rows == 0) return cudaSuccess;
    const int64_t nb = rows * k / 16;
    nvfp4_fake_quantize_kernel<<<blocks_for(nb), k_threads, 0, st>>>(x, nb, input_global, out);
    return cudaGetLastError();
}

cudaError_t cuda_fp8_fake_quantize(const float* x, int64_t rows, int64_t k, int64_t group, float* out,
                                   cudaStream_t st) {
    if (rows < 0 || k <= 0 || group <= 0 || rows > INT32_MAX || (k + group - 1) / group > 65535)
        return cudaErrorInvalidValue;
    if (rows == 0) return cudaSuccess;
    fp8_fake_quantize_kernel<<<dim3(unsigned(rows), unsigned((k + group - 1) / group)), k_threads, 0, st>>>(
        x, k, group, out);
    return cudaGetLastError();
}

cudaError_t cuda_fp8_static_fake_quantize(const float* x, int64_t n, float scale, float* out,
                                          cudaStream_t st) {
    if (n < 0) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    fp8_static_fake_quantize_kernel<<<blocks_for(n), k_threads, 0, st>>>(x, n, scale, out);
    return cudaGetLastError();
}

cudaError_t cuda_scale_to_bf16(const float* x, int64_t n, float mul, void* out, cudaStream_t st) {
    if (n < 0) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    scale_to_bf16_kernel<<<blocks_for(n), k_threads, 0, st>>>(x, n, mul, static_cast<__nv_bfloat16*>(out));
    return cudaGetLastError();
}

cudaError_t cuda_scale_to_e4m3(const float* x, int64_t n, float mul, void* out, cudaStream_t st) {
    if (n < 0) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    scale_to_e4m3_kernel<<<blocks_for(n), k_threads, 0, st>>>(x, n, mul, static_cast<uint8_t*>(out));
    return cudaGetLastError();
}

cudaError_t cuda_row_normalize_bf16(const float* x, int64_t rows, int64_t k, float target, void* out,
                                    float* row_scale, cudaStream_t st) {
    if (rows < 0 || k <= 0 || rows > INT32_MAX || !(target > 0)) return cudaErrorInvalidValue;
    if (rows == 0) return cudaSuccess;
    row_normalize_bf16_kernel<<<unsigned(rows), k_threads, 0, st>>>(
        x, k, target, static_cast<__nv_bfloat16*>(out), row_scale);
    return cudaGetLastError();
}

cudaError_t cuda_row_quantize_e4m3(const float* x, int64_t rows, int64_t k, void* out, float* row_scale,
                                   cudaStream_t st) {
    if (rows < 0 || k <= 0 || rows > INT32_MAX) return cudaErrorInvalidValue;
    if (rows == 0) return cudaSuccess;
    row_quantize_e4m3_kernel<<<unsigned(rows), k_threads, 0, st>>>(x, k, static_cast<uint8_t*>(out),
                                                                   row_scale);
    return cudaGetLastError();
}

cudaError_t cuda_row_scale_f16(const float* x, int64_t rows, int64_t k, void* out, float* row_scale,
                               cudaStream_t st) {
    if (rows < 0 || k <= 0 || k % 4 || rows > INT32_MAX || reinterpret_cast<uintptr_t>(x) % 16)
        return cudaErrorInvalidValue;
    if (rows == 0) return cudaSuccess;
    row_scale_f16_kernel<<<unsigned(rows), k_threads, 0, st>>>(x, k, static_cast<__half*>(out), row_scale);
    return cudaGetLastError();
}

cudaError_t cuda_split_bf16_block_scaled(const float* x, int64_t rows, int64_t k, const float* scales,
                                         int64_t scale_stride, int64_t groups, void* out, cudaStream_t st) {
    if (rows < 0 || k <= 0 || groups < 0 || scale_stride < (k + 127) / 128) return cudaErrorInvalidValue;
    if (rows == 0 || groups == 0) return cudaSuccess;
    split_bf16_block_scaled_kernel<<<blocks_for(groups * rows * k), k_threads, 0, st>>>(
        x, rows, k, scales, scale_stride, groups, static_cast<__nv_bfloat16*>(out));
    return cudaGetLastError();
}

cudaError_t cuda_linear_epilogue(const float* y, int parts, int64_t rows, int64_t n, int64_t block_cols,
                                 const float* row_scale, const float* col_scale, const float* bias,
                                 float* out, cudaStream_t st) {
    if (parts < 1 || rows < 0 || n < 0 || block_cols <= 0) return cudaErrorInvalidValue;
    if (rows == 0 || n == 0) return cudaSuccess;
    linear_epilogue_kernel<<<blocks_for(rows * n), k_threads, 0, st>>>(y, parts, rows, n, block_cols,
                                                                       row_scale, col_scale, bias, out);
    return cudaGetLastError();
}

}  // namespace nibble
