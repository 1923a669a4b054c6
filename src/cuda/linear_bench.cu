// linear_bench_parts.h, the nvcc half: random data, the graph timing and the cuBLASLt references, plus
// the kernel names of linear_bench.h. Plain C++17 (nvcc's dialect here).
#include <cublasLt.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <string>
#include <utility>

#include "core/error.h"
#include "cuda/cuda_check.h"
#include "cuda/linear_bench_parts.h"

// Like NIBBLE_CUDA_CHECK, for cuBLAS(Lt) statuses.
#define NIBBLE_CUBLAS_CHECK(expr)                                             \
    do {                                                                      \
        cublasStatus_t nibble_st_ = (expr);                                   \
        if (nibble_st_ != CUBLAS_STATUS_SUCCESS)                              \
            ::nibble::fail("{}:{}: {} failed: {}", __FILE__, __LINE__, #expr, \
                           cublasLtGetStatusString(nibble_st_));              \
    } while (0)

namespace nibble {

namespace {

constexpr int k_warmup_replays = 3;
constexpr int k_max_copies = 512;               // tiny weights: the graph stays small (footprint < 4x L2)
constexpr size_t k_workspace_bytes = 32 << 20;  // cuBLASLt split-K workspace
constexpr float k_e4m3_unit = 1.0f / 448.0f;    // per-tensor FP8 scale: full-range E4M3 -> [-1, 1]

// --- random data, never zeros

__device__ uint32_t random_word(size_t i, uint32_t seed) {
    uint64_t z = (uint64_t(i) + (uint64_t(seed) << 40)) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return uint32_t((z ^ (z >> 31)) >> 16);
}

// n elements of the kind's type (1, 2 or 4 bytes).
__global__ void fill_random(void* p, size_t n, uint32_t seed, int kind) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
         i += size_t(gridDim.x) * blockDim.x) {
        const uint32_t h = random_word(i, seed);
        switch (kind) {
            case linear_bench_fill_bytes:
                static_cast<uint8_t*>(p)[i] = uint8_t(h);
                break;
            case linear_bench_fill_e4m3: {
                const uint8_t b = uint8_t(h);
                static_cast<uint8_t*>(p)[i] = (b & 0x7F) == 0x7F ? uint8_t(b ^ 1) : b;
                break;
            }
            case linear_bench_fill_e4m3_scale: {
                const uint8_t b = uint8_t(h) & 0x7F;
                static_cast<uint8_t*>(p)[i] = b == 0x7F ? 0x7E : b;
                break;
            }
            case linear_bench_fill_bf16:
                static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(float(int16_t(h)) * (1.0f / 32768.0f));
                break;
            default:
                static_cast<float*>(p)[i] = float(int32_t(h)) * (1.0f / 2147483648.0f);
                break;
        }
    }
}

size_t kind_size(linear_bench_fill kind) {
    return kind == linear_bench_fill_f32 ? 4 : kind == linear_bench_fill_bf16 ? 2 : 1;
}

// --- owners (release on every path, also when a check throws)

struct device_buffer {
    void* p = nullptr;
    explicit device_buffer(size_t bytes) { NIBBLE_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(bytes, 16))); }
    device_buffer(device_buffer&& o) noexcept : p(std::exchange(o.p, nullptr)) {}
    device_buffer(const device_buffer&) = delete;
    device_buffer& operator=(const device_buffer&) = delete;
    ~device_buffer() {
        if (p) cudaFree(p);
    }
};
struct stream_owner {
    cudaStream_t s = nullptr;
    stream_owner() { NIBBLE_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); }
    ~stream_owner() {
        if (s) cudaStreamDestroy(s);
    }
};
struct event_owner {
    cudaEvent_t e = nullptr;
    event_owner() { NIBBLE_CUDA_CHECK(cudaEventCreate(&e)); }
    ~event_owner() {
        if (e) cudaEventDestroy(e);
    }
};
struct graph_owner {
    cudaGraph_t g = nullptr;
    cudaGraphExec_t exec = nullptr;
    ~graph_owner() {
        if (exec) cudaGraphExecDestroy(exec);
        if (g) cudaGraphDestroy(g);
    }
};

// --- cuBLASLt references
//
// Row-major y[m, n] = x[m, k] · W[n, k]ᵀ is, column-major, y (n x m) = op(A) · B with A = W seen as
// k x n (lda = k) transposed, B = x seen as k x m (ldb = k), C = D = y (ldc = n): the TN form, which
// cuBLASLt's FP8 kernels require on Hopper. FP8: A and B E4M3 with per-tensor scales (device floats,
// CUBLASLT_MATMUL_DESC_A/B_SCALE_POINTER), C and D BF16; BF16: everything BF16. FP32 accumulation.

struct lt_handle {
    cublasLtHandle_t h = nullptr;
    lt_handle() { NIBBLE_CUBLAS_CHECK(cublasLtCreate(&h)); }
    ~lt_handle() {
        if (h) cublasLtDestroy(h);
    }
};

struct lt_plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    cublasLtMatmulAlgo_t algo{};
    ~lt_plan() {
        if (pref) cublasLtMatmulPreferenceDestroy(pref);
        if (c) cublasLtMatrixLayoutDestroy(c);
        if (b) cublasLtMatrixLayoutDestroy(b);
        if (a) cublasLtMatrixLayoutDestroy(a);
        if (op) cublasLtMatmulDescDestroy(op);
    }
};

// Fails with the reason when cuBLASLt has no algorithm for the shape.
void make_plan(lt_plan& p, cublasLtHandle_t h, bool fp8, int64_t m, int64_t n, int64_t k,
               const float* scales) {
    NIBBLE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    NIBBLE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    NIBBLE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    if (fp8) {
        const float* a_scale = scales;
        const float* b_scale = scales + 1;
        NIBBLE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                           &a_scale, sizeof(a_scale)));
        NIBBLE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                           &b_scale, sizeof(b_scale)));
    }
    const cudaDataType_t in = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
    NIBBLE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, in, uint64_t(k), uint64_t(n), k));
    NIBBLE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, in, uint64_t(k), uint64_t(m), k));
    NIBBLE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_16BF, uint64_t(n), uint64_t(m), n));
    NIBBLE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&p.pref));
    const size_t ws = k_workspace_bytes;
    NIBBLE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                             &ws, sizeof(ws)));
    cublasLtMatmulHeuristicResult_t r{};
    int found = 0;
    const cublasStatus_t s =
        cublasLtMatmulAlgoGetHeuristic(h, p.op, p.a, p.b, p.c, p.c, p.pref, 1, &r, &found);
    if (s != CUBLAS_STATUS_SUCCESS || found == 0)
        fail("cuBLASLt has no {} algorithm for m={} n={} k={} ({})", fp8 ? "FP8 E4M3" : "BF16", m, n, k,
             s != CUBLAS_STATUS_SUCCESS ? cublasLtGetStatusString(s) : "the heuristic returned none");
    p.algo = r.algo;
}

}  // namespace

void linear_bench_fill_device(void* p, size_t bytes, uint32_t seed, linear_bench_fill kind, cudaStream_t st) {
    fill_random<<<1024, 256, 0, st>>>(p, bytes / kind_size(kind), seed, int(kind));
    NIBBLE_CUDA_CHECK(cudaGetLastError());
}

std::vector<uint8_t> linear_bench_random_host(size_t bytes, uint32_t seed, linear_bench_fill kind) {
    device_buffer d(bytes);
    linear_bench_fill_device(d.p, bytes, seed, kind, nullptr);
    std::vector<uint8_t> h(bytes);
    NIBBLE_CUDA_CHECK(cudaMemcpy(h.data(), d.p, bytes, cudaMemcpyDeviceToHost));
    return h;
}

int linear_bench_copies(double bytes, size_t l2_bytes) {
    const double c = std::ceil(4.0 * double(l2_bytes) / std::max(bytes, 1.0));
    return int(std::min(std::max(c, 2.0), double(k_max_copies)));
}

double linear_bench_time_rotated(int n_copies, int reps, cudaStream_t st,
                                 const std::function<void(int)>& launch) {
    graph_owner graph;
    NIBBLE_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    try {
        for (int c = 0; c < n_copies; ++c) launch(c);
    } catch (...) {
        cudaStreamEndCapture(st, &graph.g);
        cudaGetLastError();
        throw;
    }
    NIBBLE_CUDA_CHECK(cudaStreamEndCapture(st, &graph.g));
    NIBBLE_CUDA_CHECK(cudaGraphInstantiate(&graph.exec, graph.g, 0));
    event_owner a, b;
    for (int i = 0; i < k_warmup_replays; ++i) NIBBLE_CUDA_CHECK(cudaGraphLaunch(graph.exec, st));
    NIBBLE_CUDA_CHECK(cudaStreamSynchronize(st));
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
        NIBBLE_CUDA_CHECK(cudaEventRecord(a.e, st));
        NIBBLE_CUDA_CHECK(cudaGraphLaunch(graph.exec, st));
        NIBBLE_CUDA_CHECK(cudaEventRecord(b.e, st));
        NIBBLE_CUDA_CHECK(cudaEventSynchronize(b.e));
        float ms = 0;
        NIBBLE_CUDA_CHECK(cudaEventElapsedTime(&ms, a.e, b.e));
        t.push_back(double(ms) * 1e-3 / n_copies);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

void linear_bench_cublaslt(bool fp8, int64_t n, int64_t k, const std::vector<int64_t>& batches, int reps,
                           size_t l2_bytes, std::vector<linear_bench_result>& out) {
    const linear_bench_kernel kernel = fp8 ? linear_bench_cublaslt_fp8 : linear_bench_cublaslt_bf16;
    const int64_t m_max = *std::max_element(batches.begin(), batches.end());
    const size_t elem = fp8 ? 1 : 2;
    const size_t wbytes = size_t(n) * size_t(k) * elem;
    const int copies = linear_bench_copies(double(wbytes), l2_bytes);
    const linear_bench_fill kind = fp8 ? linear_bench_fill_e4m3 : linear_bench_fill_bf16;
    const size_t first_row = out.size();
    try {
        lt_handle lt;
        stream_owner st;
        device_buffer workspace(k_workspace_bytes), x(size_t(m_max * k) * elem), y(size_t(m_max * n) * 2),
            scales(2 * sizeof(float));
        std::vector<device_buffer> w;
        w.reserve(size_t(copies));
        for (int c = 0; c < copies; ++c) {
            w.emplace_back(wbytes);
            linear_bench_fill_device(w.back().p, wbytes, 300 + uint32_t(c), kind, st.s);
        }
        linear_bench_fill_device(x.p, size_t(m_max * k) * elem, 8, kind, st.s);
        const float unit[2] = {k_e4m3_unit, k_e4m3_unit};
        NIBBLE_CUDA_CHECK(cudaMemcpyAsync(scales.p, unit, sizeof(unit), cudaMemcpyHostToDevice, st.s));
        NIBBLE_CUDA_CHECK(cudaStreamSynchronize(st.s));
        const float* scale_ptr = static_cast<const float*>(scales.p);
        for (int64_t m : batches) {
            linear_bench_result r;
            r.n = n, r.k = k, r.m = m, r.kernel = kernel, r.copies = copies;
            r.bytes = double(wbytes) + double(m * k) * double(elem) + double(m * n) * 2.0 +
                      (fp8 ? 2.0 * sizeof(float) : 0.0);
            try {
                lt_plan p;
                make_plan(p, lt.h, fp8, m, n, k, scale_ptr);
                auto launch = [&](int c) {
                    const float one = 1.0f, zero = 0.0f;
                    NIBBLE_CUBLAS_CHECK(cublasLtMatmul(lt.h, p.op, &one, w[size_t(c)].p, p.a, x.p, p.b, &zero,
                                                       y.p, p.c, y.p, p.c, &p.algo, workspace.p,
                                                       k_workspace_bytes, st.s));
                };
                for (int c = 0; c < copies; ++c) launch(c);
                NIBBLE_CUDA_CHECK(cudaStreamSynchronize(st.s));
                r.seconds = linear_bench_time_rotated(copies, reps, st.s, launch);
                r.ok = true;
            } catch (const std::exception& e) {
                r.error = e.what();
            }
            out.push_back(std::move(r));
        }
    } catch (const std::exception& e) {
        for (size_t i = out.size() - first_row; i < batches.size(); ++i) {
            linear_bench_result r;
            r.n = n, r.k = k, r.m = batches[i], r.kernel = kernel, r.copies = copies;
            r.error = e.what();
            out.push_back(std::move(r));
        }
    }
}

const char* linear_bench_kernel_name(linear_bench_kernel k) {
    switch (k) {
        case linear_bench_nibble_nvfp4_w4a16:
            return "nibble nvfp4 w4a16";
        case linear_bench_nibble_nvfp4_w4a4:
            return "nibble nvfp4 w4a4";
        case linear_bench_nibble_fp8_w8a16:
            return "nibble fp8 w8a16";
        case linear_bench_nibble_fp8_w8a8:
            return "nibble fp8 w8a8";
        case linear_bench_nibble_bf16:
            return "nibble bf16";
        case linear_bench_cublaslt_bf16:
            return "cublaslt bf16";
        case linear_bench_cublaslt_fp8:
            return "cublaslt fp8";
        default:
            return "?";
    }
}

const char* linear_bench_kernel_format(linear_bench_kernel k) {
    switch (k) {
        case linear_bench_nibble_nvfp4_w4a16:
        case linear_bench_nibble_nvfp4_w4a4:
            return "nvfp4";
        case linear_bench_nibble_fp8_w8a16:
        case linear_bench_nibble_fp8_w8a8:
        case linear_bench_cublaslt_fp8:
            return "fp8";
        default:
            return "bf16";
    }
}

bool linear_bench_is_nibble(linear_bench_kernel k) {
    return k != linear_bench_cublaslt_bf16 && k != linear_bench_cublaslt_fp8;
}

}  // namespace nibble
