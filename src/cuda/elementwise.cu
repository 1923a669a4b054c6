// Elementwise and data-movement kernels for cuda_backend (backend_ops.h).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "cuda/backend_ops.h"
#include "cuda/kernel_util.cuh"

namespace nibble {

namespace {

constexpr int k_threads = 256;

unsigned blocks_for(int64_t n) {
    return unsigned(std::min<int64_t>((n + k_threads - 1) / k_threads, int64_t(1) << 20));
}

__device__ __forceinline__ float load_dense(const void* p, cuda_dense_type t, int64_t i) {
    if (t == cuda_dense_bf16) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    if (t == cuda_dense_f16) return __half2float(static_cast<const __half*>(p)[i]);
    return static_cast<const float*>(p)[i];
}

__global__ void convert_f32_kernel(const void* src, cuda_dense_type t, int64_t n, float* dst) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x)
        dst[i] = load_dense(src, t, i);
}

// x = hi + lo + e with hi = bf16(x), lo = bf16(x - hi): |e| <= 2^-17 |x| (both RNE).
__global__ void split_bf16_kernel(const float* x, int64_t n, __nv_bfloat16* hi, __nv_bfloat16* lo) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x) {
        const float v = x[i];
        const __nv_bfloat16 h = __float2bfloat16_rn(v);
        hi[i] = h;
        lo[i] = __float2bfloat16_rn(v - __bfloat162float(h));
    }
}

__global__ void embed_kernel(const void* table, cuda_dense_type t, int64_t hidden, const int32_t* ids,
                             float* out) {
    kernel::grid_dependency_wait();  // PDL: what the kernel before wrote is visible from here
    kernel::grid_dependency_trigger();
    const int64_t row = int64_t(ids[blockIdx.x]) * hidden;
    for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x)
        out[blockIdx.x * hidden + j] = load_dense(table, t, row + j);
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
    kernel::grid_dependency_wait();  // PDL: what the kernel before wrote is visible from here
    kernel::grid_dependency_trigger();
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x)
        x[i] += y[i];
}

// One block per row: x += y, then out = w · x / rms(x) (the CPU's formula, the row sum in another order).
// The new x row is kept in registers between the two passes (cols <= k_add_norm_threads · 16).
constexpr int k_add_norm_threads = 512;
constexpr int k_add_norm_per_thread = 16;

__global__ void __launch_bounds__(k_add_norm_threads)
    add_rms_norm_kernel(float* x, const float* y, const float* w, int64_t cols, float eps, float* out) {
    kernel::grid_dependency_wait();  // PDL: what the kernel before wrote is visible from here
    kernel::grid_dependency_trigger();
    __shared__ float part[32];
    float* xr = x + blockIdx.x * cols;
    const float* yr = y + blockIdx.x * cols;
    float v[k_add_norm_per_thread];
    float ss = 0;
#pragma unroll
    for (int i = 0; i < k_add_norm_per_thread; ++i) {
        const int64_t j = threadIdx.x + int64_t(i) * k_add_norm_threads;
        v[i] = 0.0f;
        if (j < cols) {
            v[i] = xr[j] + yr[j];
            xr[j] = v[i];
            ss += v[i] * v[i];
        }
    }
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
    __syncthreads();
    ss = 0;
    for (int i = 0; i < k_add_norm_threads / 32; ++i) ss += part[i];
    const float inv = 1.0f / sqrtf(ss / float(cols) + eps);
#pragma unroll
    for (int i = 0; i < k_add_norm_per_thread; ++i) {
        const int64_t j = threadIdx.x + int64_t(i) * k_add_norm_threads;
        if (j < cols) out[blockIdx.x * cols + j] = w[j] * (v[i] * inv);
    }
}

__global__ void silu_mul_kernel(const float* gate, const float* up, int64_t n, float* out) {
    kernel::grid_dependency_wait();  // PDL: what the kernel before wrote is visible from here
    kernel::grid_dependency_trigger();
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
         i += int64_t(gridDim.x) * blockDim.x) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

__global__ void gather_rows_kernel(const float* src, int64_t cols, const int32_t* rows, float* dst) {
    kernel::grid_dependency_wait();  // PDL: what the kernel before wrote is visible from here
    kernel::grid_dependency_trigger();
    const float* s = src + int64_t(rows[blockIdx.x]) * cols;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) dst[blockIdx.x * cols + j] = s[j];
}

__global__ void add_bias_kernel(float* y, const float* bias, int64_t total, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
         i += int64_t(gridDim.x) * blockDim.x)
        y[i] += bias[i % n];
}

__global__ void scatter_add_scaled_kernel(const float* y, const int32_t* tokens, const float* weights,
                                          int64_t h, float* out) {
    const float w = weights[blockIdx.x];
    float* o = out + int64_t(tokens[blockIdx.x]) * h;
    for (int64_t j = threadIdx.x; j < h; j += blockDim.x) o[j] += y[blockIdx.x * h + j] * w;
}

}  // namespace

cudaError_t cuda_convert_f32(const void* src, cuda_dense_type t, int64_t n, float* dst, cudaStream_t st) {
    if (n < 0) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    convert_f32_kernel<<<blocks_for(n), k_threads, 0, st>>>(src, t, n, dst);
    return cudaGetLastError();
}

cudaError_t cuda_embed(const void* table, cuda_dense_type ty, int64_t hidden, const int32_t* ids, int64_t T,
                       float* out, cudaStream_t st) {
    if (T < 0 || hidden <= 0 || T > INT32_MAX) return cudaErrorInvalidValue;
    if (T == 0) return cudaSuccess;
    return launch_pdl(embed_kernel, dim3(unsigned(T)), dim3(k_threads), 0, st, table, ty, hidden, ids, out);
}

cudaError_t cuda_add_rms_norm(float* x, const float* y, const float* w, int64_t rows, int64_t cols, float eps,
                              float* out, cudaStream_t st) {
    if (rows < 0 || cols <= 0 || rows > INT32_MAX ||
        cols > int64_t(k_add_norm_threads) * k_add_norm_per_thread)
        return cudaErrorInvalidValue;
    if (rows == 0) return cudaSuccess;
    return launch_pdl(add_rms_norm_kernel, dim3(unsigned(rows)), dim3(k_add_norm_threads), 0, st, x, y, w,
                      cols, eps, out);
}

cudaError_t cuda_split_bf16(const float* x, int64_t n, void* hi, void* lo, cudaStream_t st) {
    if (n < 0) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    split_bf16_kernel<<<blocks_for(n), k_threads, 0, st>>>(x, n, static_cast<__nv_bfloat16*>(hi),
                                                           static_cast<__nv_bfloat16*>(lo));
    return cudaGetLastError();
}

cudaError_t cuda_add(float* x, const float* y, int64_t n, cudaStream_t st) {
    if (n < 0) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    return launch_pdl(add_kernel, dim3(blocks_for(n)), dim3(k_threads), 0, st, x, y, n);
}

cudaError_t cuda_silu_mul(const float* gate, const float* up, int64_t n, float* out, cudaStream_t st) {
    if (n < 0) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    return launch_pdl(silu_mul_kernel, dim3(blocks_for(n)), dim3(k_threads), 0, st, gate, up, n, out);
}

cudaError_t cuda_gather_rows(const float* src, int64_t cols, const int32_t* rows, int64_t n, float* dst,
                             cudaStream_t st) {
    if (n < 0 || cols < 0 || n > INT32_MAX) return cudaErrorInvalidValue;
    if (n == 0 || cols == 0) return cudaSuccess;
    return launch_pdl(gather_rows_kernel, dim3(unsigned(n)), dim3(k_threads), 0, st, src, cols, rows, dst);
}

cudaError_t cuda_add_bias(float* y, const float* bias, int64_t rows, int64_t n, cudaStream_t st) {
    if (rows < 0 || n < 0) return cudaErrorInvalidValue;
    if (rows == 0 || n == 0) return cudaSuccess;
    add_bias_kernel<<<blocks_for(rows * n), k_threads, 0, st>>>(y, bias, rows * n, n);
    return cudaGetLastError();
}

cudaError_t cuda_scatter_add_scaled(const float* y, const int32_t* tokens, const float* weights, int64_t m,
                                    int64_t h, float* out, cudaStream_t st) {
    if (m < 0 || h < 0 || m > INT32_MAX) return cudaErrorInvalidValue;
    if (m == 0 || h == 0) return cudaSuccess;
    scatter_add_scaled_kernel<<<unsigned(m), k_threads, 0, st>>>(y, tokens, weights, h, out);
    return cudaGetLastError();
}

}  // namespace nibble
