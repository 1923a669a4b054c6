// Decode-linear kernel benchmark: the NVFP4 weight-only kernel (cuda_nvfp4_linear) and cuBLASLt BF16 on
// the same shapes, against the device-to-device copy bandwidth measured in the same run.
//
// Method (performance.md): weights filled with random bytes (never zeros) and rotated across enough copies
// that the footprint is >= 4x L2, so every launch reads HBM; each timing is one CUDA-graph replay of one
// launch per copy, timed with events; medians of the replays. Bytes counted: NVFP4 packed + scales + x + y
// (BF16: weight + x + y); copy bandwidth counts read + write.
//
// Usage: bench_linear [--reps N]
#include <cublasLt.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/device.h"
#include "cuda/linear_nvfp4.h"

using namespace nibble;

namespace {

#define CUBLAS_CHECK(expr)                                                              \
    do {                                                                                \
        cublasStatus_t s_ = (expr);                                                     \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                \
            ::nibble::fail("{}:{}: {} failed: {}", __FILE__, __LINE__, #expr, int(s_)); \
    } while (0)

__global__ void fill_random_bytes(uint32_t* p, size_t n_words, uint32_t seed) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n_words;
         i += size_t(gridDim.x) * blockDim.x) {
        uint32_t h = uint32_t(i) * 0x9E3779B1u ^ seed ^ uint32_t(i >> 32) * 0x85EBCA77u;
        h ^= h >> 16;
        h *= 0x7FEB352Du;
        h ^= h >> 15;
        h *= 0x846CA68Bu;
        h ^= h >> 16;
        p[i] = h;
    }
}
// E4M3 scales: random, non-negative, non-NaN (0x00..0x7E).
__global__ void fix_scales(uint8_t* p, size_t n) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
         i += size_t(gridDim.x) * blockDim.x) {
        uint8_t b = p[i] & 0x7F;
        p[i] = b == 0x7F ? 0x7E : b;
    }
}
// Random bits -> finite values in [-1, 1): floats or BF16.
__global__ void fix_floats(float* p, size_t n) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
        p[i] = float(int32_t(__float_as_uint(p[i]))) * 4.6566129e-10f;
}
__global__ void fix_bf16(__nv_bfloat16* p, size_t n) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
        p[i] = __float2bfloat16(float(int16_t(__bfloat16_as_ushort(p[i]))) * 3.0517578e-5f);
}

void fill(void* p, size_t bytes, uint32_t seed) {
    fill_random_bytes<<<1024, 256>>>(static_cast<uint32_t*>(p), bytes / 4, seed);
    NIBBLE_CUDA_CHECK(cudaGetLastError());
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Captures `body(copy)` for copy = 0..n_copies-1 into one graph; returns the median time per launch (s).
template <class F>
double time_rotated(int n_copies, int reps, cudaStream_t st, F body) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    NIBBLE_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int c = 0; c < n_copies; ++c) body(c);
    NIBBLE_CUDA_CHECK(cudaStreamEndCapture(st, &g));
    NIBBLE_CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t a, b;
    NIBBLE_CUDA_CHECK(cudaEventCreate(&a));
    NIBBLE_CUDA_CHECK(cudaEventCreate(&b));
    for (int i = 0; i < 3; ++i) NIBBLE_CUDA_CHECK(cudaGraphLaunch(ge, st));  // warm-up
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
        NIBBLE_CUDA_CHECK(cudaEventRecord(a, st));
        NIBBLE_CUDA_CHECK(cudaGraphLaunch(ge, st));
        NIBBLE_CUDA_CHECK(cudaEventRecord(b, st));
        NIBBLE_CUDA_CHECK(cudaEventSynchronize(b));
        float ms = 0;
        NIBBLE_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms * 1e-3 / n_copies);
    }
    NIBBLE_CUDA_CHECK(cudaEventDestroy(a));
    NIBBLE_CUDA_CHECK(cudaEventDestroy(b));
    NIBBLE_CUDA_CHECK(cudaGraphExecDestroy(ge));
    NIBBLE_CUDA_CHECK(cudaGraphDestroy(g));
    return median(t);
}

double copy_bandwidth(cudaStream_t st) {
    const size_t bytes = size_t(1) << 30;
    void *a, *b;
    NIBBLE_CUDA_CHECK(cudaMalloc(&a, bytes));
    NIBBLE_CUDA_CHECK(cudaMalloc(&b, bytes));
    fill(a, bytes, 1);
    fill(b, bytes, 2);
    cudaEvent_t e0, e1;
    NIBBLE_CUDA_CHECK(cudaEventCreate(&e0));
    NIBBLE_CUDA_CHECK(cudaEventCreate(&e1));
    std::vector<double> t;
    for (int i = 0; i < 12; ++i) {
        NIBBLE_CUDA_CHECK(cudaEventRecord(e0, st));
        NIBBLE_CUDA_CHECK(cudaMemcpyAsync(i % 2 ? a : b, i % 2 ? b : a, bytes, cudaMemcpyDeviceToDevice, st));
        NIBBLE_CUDA_CHECK(cudaEventRecord(e1, st));
        NIBBLE_CUDA_CHECK(cudaEventSynchronize(e1));
        float ms = 0;
        NIBBLE_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 2) t.push_back(ms * 1e-3);
    }
    NIBBLE_CUDA_CHECK(cudaEventDestroy(e0));
    NIBBLE_CUDA_CHECK(cudaEventDestroy(e1));
    NIBBLE_CUDA_CHECK(cudaFree(a));
    NIBBLE_CUDA_CHECK(cudaFree(b));
    return 2.0 * double(bytes) / median(t);
}

struct row {
    int64_t n, k, m;
    double fp4_gbs, fp4_us, bf16_gbs, bf16_us;
};

int copies_for(size_t bytes, size_t l2) {
    return int(std::max<size_t>(2, (4 * l2 + bytes - 1) / bytes));
}

struct cublas_gemm {
    cublasLtHandle_t lt;
    void* workspace = nullptr;
    size_t ws_bytes = 32 << 20;
    cublas_gemm() {
        CUBLAS_CHECK(cublasLtCreate(&lt));
        NIBBLE_CUDA_CHECK(cudaMalloc(&workspace, ws_bytes));
    }
    ~cublas_gemm() {
        cudaFree(workspace);
        cublasLtDestroy(lt);
    }
    // y[m, n] = x[m, k] · W[n, k]ᵀ in BF16 with FP32 accumulation (torch F.linear), as column-major
    // y^T[n, m] = op(W^T[k, n])ᵀ · x^T[k, m].
    struct plan {
        cublasLtMatmulDesc_t op;
        cublasLtMatrixLayout_t a, b, c;
        cublasLtMatmulAlgo_t algo;
    };
    plan make(int64_t m, int64_t n, int64_t k) {
        plan p;
        CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        cublasOperation_t t = CUBLAS_OP_T;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof(t)));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, uint64_t(k), uint64_t(n), k));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, uint64_t(k), uint64_t(m), k));
        CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_16BF, uint64_t(n), uint64_t(m), n));
        cublasLtMatmulPreference_t pref;
        CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
        CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                          &ws_bytes, sizeof(ws_bytes)));
        cublasLtMatmulHeuristicResult_t h;
        int found = 0;
        CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt, p.op, p.a, p.b, p.c, p.c, pref, 1, &h, &found));
        if (found == 0) fail("cuBLASLt: no algorithm for m={} n={} k={}", m, n, k);
        p.algo = h.algo;
        cublasLtMatmulPreferenceDestroy(pref);
        return p;
    }
    void run(const plan& p, const void* w, const void* x, void* y, cudaStream_t st) {
        const float one = 1.0f, zero = 0.0f;
        CUBLAS_CHECK(cublasLtMatmul(lt, p.op, &one, w, p.a, x, p.b, &zero, y, p.c, y, p.c, &p.algo, workspace,
                                    ws_bytes, st));
    }
    void destroy(plan& p) {
        cublasLtMatmulDescDestroy(p.op);
        cublasLtMatrixLayoutDestroy(p.a);
        cublasLtMatrixLayoutDestroy(p.b);
        cublasLtMatrixLayoutDestroy(p.c);
    }
};

}  // namespace

int main(int argc, char** argv) {
    int reps = 25;
    for (int i = 1; i < argc; ++i)
        if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
    if (cuda_device_count() == 0) {
        std::printf("SKIPPED: no CUDA device\n");
        return 0;
    }
    const cuda_device_info dev = cuda_device_query(0);
    cudaStream_t st;
    NIBBLE_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    const double copy_bw = copy_bandwidth(st);
    std::printf("device: %s, %d SMs, L2 %.0f MiB\n", dev.name.c_str(), dev.n_sms, dev.l2_bytes / 1048576.0);
    std::printf("device-to-device copy, 1 GiB, read + write, median of 10: %.1f GB/s\n", copy_bw / 1e9);

    const std::vector<std::pair<int64_t, int64_t>> shapes = {{4096, 4096},  {6144, 4096},  {4096, 12288},
                                                             {12288, 4096}, {24576, 4096}, {151936, 4096}};
    const std::vector<int64_t> ms = {1, 4, 16};
    std::vector<row> rows;
    cublas_gemm blas;
    for (auto [n, k] : shapes) {
        const size_t pb = size_t(n * k / 2), sb = size_t(n * k / 16), wb = size_t(n * k * 2);
        const int c4 = copies_for(pb + sb, dev.l2_bytes), c16 = copies_for(wb, dev.l2_bytes);
        std::vector<uint8_t*> packed(c4), scales(c4);
        std::vector<void*> wbf(c16);
        for (int c = 0; c < c4; ++c) {
            NIBBLE_CUDA_CHECK(cudaMalloc(&packed[c], pb));
            NIBBLE_CUDA_CHECK(cudaMalloc(&scales[c], sb));
            fill(packed[c], pb, 100 + c);
            fill(scales[c], sb, 200 + c);
            fix_scales<<<1024, 256>>>(scales[c], sb);
        }
        float *x, *y;
        void *xb, *yb;
        NIBBLE_CUDA_CHECK(cudaMalloc(&x, 16 * k * 4));
        NIBBLE_CUDA_CHECK(cudaMalloc(&y, 16 * n * 4));
        NIBBLE_CUDA_CHECK(cudaMalloc(&xb, 16 * k * 2));
        NIBBLE_CUDA_CHECK(cudaMalloc(&yb, 16 * n * 2));
        fill(x, 16 * k * 4, 7);
        fix_floats<<<256, 256>>>(x, 16 * k);
        fill(xb, 16 * k * 2, 8);
        fix_bf16<<<256, 256>>>(static_cast<__nv_bfloat16*>(xb), 16 * k);
        NIBBLE_CUDA_CHECK(cudaDeviceSynchronize());
        std::vector<double> fp4_t;
        for (int64_t m : ms) {
            const double t = time_rotated(c4, reps, st, [&](int c) {
                NIBBLE_CUDA_CHECK(
                    cuda_nvfp4_linear(x, m, packed[c], scales[c], n, k, 1.0f / 3584, nullptr, y, st));
            });
            fp4_t.push_back(t);
        }
        for (int c = 0; c < c4; ++c) {
            NIBBLE_CUDA_CHECK(cudaFree(packed[c]));
            NIBBLE_CUDA_CHECK(cudaFree(scales[c]));
        }
        for (int c = 0; c < c16; ++c) {
            NIBBLE_CUDA_CHECK(cudaMalloc(&wbf[c], wb));
            fill(wbf[c], wb, 300 + c);
            fix_bf16<<<1024, 256>>>(static_cast<__nv_bfloat16*>(wbf[c]), wb / 2);
        }
        NIBBLE_CUDA_CHECK(cudaDeviceSynchronize());
        for (size_t i = 0; i < ms.size(); ++i) {
            const int64_t m = ms[i];
            auto p = blas.make(m, n, k);
            const double t = time_rotated(c16, reps, st, [&](int c) { blas.run(p, wbf[c], xb, yb, st); });
            blas.destroy(p);
            const double fp4_bytes = double(pb + sb) + double(m * k * 4) + double(m * n * 4);
            const double bf_bytes = double(wb) + double(m * k * 2) + double(m * n * 2);
            rows.push_back(
                {n, k, m, fp4_bytes / fp4_t[i] / 1e9, fp4_t[i] * 1e6, bf_bytes / t / 1e9, t * 1e6});
        }
        for (int c = 0; c < c16; ++c) NIBBLE_CUDA_CHECK(cudaFree(wbf[c]));
        NIBBLE_CUDA_CHECK(cudaFree(x));
        NIBBLE_CUDA_CHECK(cudaFree(y));
        NIBBLE_CUDA_CHECK(cudaFree(xb));
        NIBBLE_CUDA_CHECK(cudaFree(yb));
        std::fflush(stdout);
    }

    std::printf(
        "\n%s, copy bandwidth %.1f GB/s (roofline); CUDA-graph replays, weights rotated, median of %d\n",
        dev.name.c_str(), copy_bw / 1e9, reps);
    std::printf("%-14s %3s | %9s %9s %7s | %9s %9s %7s | %s\n", "n x k", "m", "nvfp4 us", "GB/s", "% copy",
                "bf16 us", "GB/s", "% copy", "speedup");
    for (const row& r : rows) {
        char shape[32];
        std::snprintf(shape, sizeof(shape), "%lldx%lld", (long long)r.n, (long long)r.k);
        std::printf("%-14s %3lld | %9.2f %9.0f %6.1f%% | %9.2f %9.0f %6.1f%% | %.2fx\n", shape,
                    (long long)r.m, r.fp4_us, r.fp4_gbs, 100 * r.fp4_gbs * 1e9 / copy_bw, r.bf16_us,
                    r.bf16_gbs, 100 * r.bf16_gbs * 1e9 / copy_bw, r.bf16_us / r.fp4_us);
    }
    NIBBLE_CUDA_CHECK(cudaStreamDestroy(st));
    return 0;
}
