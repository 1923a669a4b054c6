// linear_bench_parts.h, the nvcc half: random data, the graph timing and the cuBLASLt references, plus
// the kernel names of linear_bench.h. Plain C++17 (nvcc's dialect here).
#include <cublasLt.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "cuda/cuda_check.h"
#include "cuda/linear_bench_parts.h"

// Like NIBBLE_CUDA_CHECK, for cuBLAS(Lt) statuses: the status's name and cuBLASLt's text for it.
#define NIBBLE_CUBLAS_CHECK(expr)                                                                   \
    do {                                                                                            \
        cublasStatus_t nibble_st_ = (expr);                                                         \
        if (nibble_st_ != CUBLAS_STATUS_SUCCESS)                                                    \
            ::nibble::fail("{}:{}: {} failed: {} ({})", __FILE__, __LINE__, #expr,                  \
                           cublasLtGetStatusName(nibble_st_), cublasLtGetStatusString(nibble_st_)); \
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
// k x n (lda = k) transposed, B = x seen as k x m (ldb = k), D = y (ldd = n): the TN form, which
// cuBLASLt's FP8 kernels require on Hopper (cuBLAS m = n, n = m, k = k). FP8: A and B E4M3 with
// per-tensor scales (device floats, each its own allocation, CUBLASLT_MATMUL_DESC_A/B_SCALE_POINTER),
// D BF16; BF16: everything BF16. FP32 accumulation (CUBLAS_COMPUTE_32F, scale type CUDA_R_32F), host
// alpha = 1 and beta = 0, no epilogue.
//
// With beta = 0 C is never read, so FP8's first configuration passes C = nullptr: XLA found that since
// CUDA 13.0 cublasLtMatmul rejects a C that aliases D unless its descriptor matches D's, and passes
// C = nullptr when beta = 0 (openxla/xla PR 34912). C = D in place (one descriptor for both, as in
// BF16's first configuration) is the fallback. The heuristic is asked for up to k_algo_requests algorithms
// (its first answer is no guarantee: an algorithm cublasLtMatmul rejects is skipped); each is tried once
// outside any graph. When no algorithm of a configuration runs, the next configuration is tried (FP8): C = D,
// FP32 output, fast accumulation, then all of that again with the batch padded to a multiple of 16 (the row's
// note says which one ran and what the ones before it said). A row cuBLASLt rejects in every configuration
// says, per configuration, the layout, the heuristic's answer and every status (cublasLtMatmulAlgoCheck and
// cublasLtMatmul, by name), the pointers' alignment and cuBLASLt's own error log.

constexpr int k_algo_requests = 16;
constexpr int64_t k_batch_pad = 16;  // FP8 fallback: the batch rounded up to a multiple of 16

std::string status_text(cublasStatus_t s) {
    return std::string(cublasLtGetStatusName(s)) + " (" + cublasLtGetStatusString(s) + ")";
}

const char* type_name(cudaDataType_t t) {
    switch (t) {
        case CUDA_R_8F_E4M3:
            return "e4m3";
        case CUDA_R_16BF:
            return "bf16";
        case CUDA_R_32F:
            return "f32";
        default:
            return "?";
    }
}

size_t type_size(cudaDataType_t t) {
    return t == CUDA_R_32F ? 4 : t == CUDA_R_16BF ? 2 : 1;
}

// The largest power of two (up to 256) dividing the address.
unsigned alignment_of(const void* p) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    unsigned al = 256;
    while (al > 1 && a % al != 0) al /= 2;
    return al;
}

// cuBLASLt's error log (mask 1), captured while configurations are made and tried (never while timing)
// so that a rejection's row carries what cuBLASLt said. Left alone when the user set CUBLASLT_LOG_LEVEL
// or CUBLASLT_LOG_MASK (their own logging wins).
std::mutex g_lt_log_mutex;
std::vector<std::string> g_lt_log;

void lt_log_callback(int /*level*/, const char* function, const char* message) {
    std::lock_guard<std::mutex> lock(g_lt_log_mutex);
    if (g_lt_log.size() >= 16) return;
    std::string line = std::string(function ? function : "?") + ": " + (message ? message : "");
    if (line.size() > 300) line.resize(300);
    if (g_lt_log.empty() || g_lt_log.back() != line) g_lt_log.push_back(std::move(line));
}

struct lt_log_capture {
    bool active = false;
    lt_log_capture() {
        if (std::getenv("CUBLASLT_LOG_LEVEL") || std::getenv("CUBLASLT_LOG_MASK")) return;
        take();
        NIBBLE_CUBLAS_CHECK(cublasLtLoggerSetCallback(lt_log_callback));
        active = true;
        NIBBLE_CUBLAS_CHECK(cublasLtLoggerSetMask(1));
    }
    lt_log_capture(const lt_log_capture&) = delete;
    lt_log_capture& operator=(const lt_log_capture&) = delete;
    ~lt_log_capture() {
        if (!active) return;
        cublasLtLoggerSetMask(0);
        cublasLtLoggerSetCallback(nullptr);
    }
    // What was logged since the last take(), as "; cuBLASLt log: a | b", or "".
    static std::string take() {
        std::lock_guard<std::mutex> lock(g_lt_log_mutex);
        std::string s;
        for (const std::string& l : g_lt_log) s += (s.empty() ? "; cuBLASLt log: " : " | ") + l;
        g_lt_log.clear();
        return s;
    }
};

struct lt_handle {
    cublasLtHandle_t h = nullptr;
    lt_handle() { NIBBLE_CUBLAS_CHECK(cublasLtCreate(&h)); }
    ~lt_handle() {
        if (h) cublasLtDestroy(h);
    }
};

// One way of calling cublasLtMatmul for a row.
struct lt_config {
    int64_t m = 0;                     // rows of x and y the GEMM runs with: the batch, or it padded
    cudaDataType_t out = CUDA_R_16BF;  // D's type (C has D's layout)
    bool c_in_place = false;           // C = D (else C = nullptr: beta is 0, C is never read)
    bool fast_accum = false;           // FP8: CUBLASLT_MATMUL_DESC_FAST_ACCUM (no periodic FP32 promotion)
};

// The configurations to try, in order.
std::vector<lt_config> lt_configs(bool fp8, int64_t m) {
    if (!fp8) return {{m, CUDA_R_16BF, true}, {m, CUDA_R_16BF, false}};
    std::vector<lt_config> out;
    const int64_t padded = (m + k_batch_pad - 1) / k_batch_pad * k_batch_pad;
    for (int64_t mm : {m, padded}) {
        if (mm == padded && padded == m && !out.empty()) break;
        out.push_back({mm, CUDA_R_16BF, false, false});
        out.push_back({mm, CUDA_R_16BF, true, false});
        out.push_back({mm, CUDA_R_32F, false, false});
        out.push_back({mm, CUDA_R_16BF, false, true});
    }
    return out;
}

std::string config_name(const lt_config& c) {
    return fmt::format("m={} D {} C {}{}", c.m, type_name(c.out), c.c_in_place ? "= D" : "null",
                       c.fast_accum ? " fast-accum" : "");
}

std::string layout_text(bool fp8, const lt_config& c, int64_t n, int64_t k) {
    const char* in = fp8 ? "e4m3" : "bf16";
    return fmt::format(
        "cuBLAS TN m={} n={} k={}: A {} {}x{} lda={} op T, B {} {}x{} ldb={} op N, C {}, D {} {}x{} ldd={}",
        n, c.m, k, in, k, n, k, in, k, c.m, k, c.c_in_place ? "= D (D's layout)" : "nullptr (D's layout)",
        type_name(c.out), n, c.m, n);
}

struct lt_plan {
    lt_config cfg;
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;  // C is given D's layout
    cublasLtMatmulPreference_t pref = nullptr;
    std::vector<cublasLtMatmulHeuristicResult_t> algos;  // the heuristic's usable answers, best first
    int chosen = -1;                                     // the one that ran
    lt_plan() = default;
    lt_plan(const lt_plan&) = delete;
    lt_plan& operator=(const lt_plan&) = delete;
    ~lt_plan() {
        if (pref) cublasLtMatmulPreferenceDestroy(pref);
        if (d) cublasLtMatrixLayoutDestroy(d);
        if (b) cublasLtMatrixLayoutDestroy(b);
        if (a) cublasLtMatrixLayoutDestroy(a);
        if (op) cublasLtMatmulDescDestroy(op);
    }
};

// Descriptors and the heuristic's algorithms for one configuration; fails with the reason when cuBLASLt
// has none.
void make_plan(lt_plan& p, cublasLtHandle_t h, bool fp8, const lt_config& cfg, int64_t n, int64_t k,
               const float* a_scale, const float* b_scale) {
    p.cfg = cfg;
    NIBBLE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    NIBBLE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    NIBBLE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    if (fp8) {
        NIBBLE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                           &a_scale, sizeof(a_scale)));
        NIBBLE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                           &b_scale, sizeof(b_scale)));
        const int8_t fast_accum = cfg.fast_accum ? 1 : 0;  // off first: torch._scaled_mm's default
        NIBBLE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast_accum,
                                                           sizeof(fast_accum)));
    }
    const cudaDataType_t in = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
    NIBBLE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, in, uint64_t(k), uint64_t(n), k));
    NIBBLE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, in, uint64_t(k), uint64_t(cfg.m), k));
    NIBBLE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.d, cfg.out, uint64_t(n), uint64_t(cfg.m), n));
    NIBBLE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&p.pref));
    const size_t ws = k_workspace_bytes;
    NIBBLE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                             &ws, sizeof(ws)));
    std::vector<cublasLtMatmulHeuristicResult_t> r(k_algo_requests);
    int found = 0;
    const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(h, p.op, p.a, p.b, p.d, p.d, p.pref,
                                                            k_algo_requests, r.data(), &found);
    if (s != CUBLAS_STATUS_SUCCESS) fail("cublasLtMatmulAlgoGetHeuristic failed: {}", status_text(s));
    int unusable = 0;
    for (int i = 0; i < std::min(found, k_algo_requests); ++i) {
        if (r[size_t(i)].state == CUBLAS_STATUS_SUCCESS && r[size_t(i)].workspaceSize <= k_workspace_bytes)
            p.algos.push_back(r[size_t(i)]);
        else
            ++unusable;
    }
    if (p.algos.empty())
        fail(
            "cublasLtMatmulAlgoGetHeuristic returned no usable algorithm ({} returned, {} with a failed "
            "state or a workspace over {} MiB)",
            found, unusable, k_workspace_bytes >> 20);
}

cublasStatus_t lt_matmul(const lt_plan& p, int algo, cublasLtHandle_t h, const void* w, const void* x,
                         void* y, void* workspace, cudaStream_t st) {
    const float one = 1.0f, zero = 0.0f;
    return cublasLtMatmul(h, p.op, &one, w, p.a, x, p.b, &zero, p.cfg.c_in_place ? y : nullptr, p.d, y, p.d,
                          &p.algos[size_t(algo)].algo, workspace, k_workspace_bytes, st);
}

// Runs the plan's algorithms in turn, once each, outside any graph, until one works (p.chosen); returns
// "" then, else every status seen, counted. A CUDA error after a launch cuBLASLt accepted throws.
std::string try_algorithms(lt_plan& p, cublasLtHandle_t h, const void* w, const void* x, void* y,
                           void* workspace, cudaStream_t st) {
    std::vector<std::pair<std::string, int>> seen;
    for (int i = 0; i < int(p.algos.size()); ++i) {
        cublasLtMatmulHeuristicResult_t check{};
        const cublasStatus_t c =
            cublasLtMatmulAlgoCheck(h, p.op, p.a, p.b, p.d, p.d, &p.algos[size_t(i)].algo, &check);
        const cublasStatus_t s = lt_matmul(p, i, h, w, x, y, workspace, st);
        if (s == CUBLAS_STATUS_SUCCESS) {
            NIBBLE_CUDA_CHECK(cudaStreamSynchronize(st));
            NIBBLE_CUDA_CHECK(cudaGetLastError());
            p.chosen = i;
            return "";
        }
        const std::string what = "cublasLtMatmulAlgoCheck " + std::string(cublasLtGetStatusName(c)) +
                                 ", cublasLtMatmul " + status_text(s);
        auto it = std::find_if(seen.begin(), seen.end(), [&](const auto& e) { return e.first == what; });
        if (it == seen.end())
            seen.emplace_back(what, 1);
        else
            ++it->second;
    }
    std::string out = fmt::format("{} algorithm(s) from the heuristic, none ran:", p.algos.size());
    for (const auto& e : seen) out += fmt::format(" [{}] x{}", e.first, e.second);
    return out;
}

// The short form of a configuration's failure, for a row that ran in a later configuration.
std::string short_failure(const std::string& why) {
    const size_t cut = why.find(';');
    return cut == std::string::npos ? why : why.substr(0, cut);
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
    const char* what = fp8 ? "FP8 E4M3" : "BF16";
    const int64_t m_max = *std::max_element(batches.begin(), batches.end());
    // Room for every configuration: the padded batch (FP8) and FP32 output.
    const int64_t m_alloc = fp8 ? (m_max + k_batch_pad - 1) / k_batch_pad * k_batch_pad : m_max;
    const size_t y_elem = fp8 ? 4 : 2;
    const size_t elem = fp8 ? 1 : 2;
    const size_t wbytes = size_t(n) * size_t(k) * elem;
    const int copies = linear_bench_copies(double(wbytes), l2_bytes);
    const linear_bench_fill kind = fp8 ? linear_bench_fill_e4m3 : linear_bench_fill_bf16;
    const size_t first_row = out.size();
    try {
        lt_handle lt;
        stream_owner st;
        device_buffer workspace(k_workspace_bytes), x(size_t(m_alloc * k) * elem),
            y(size_t(m_alloc * n) * y_elem), a_scale(sizeof(float)), b_scale(sizeof(float));
        std::vector<device_buffer> w;
        w.reserve(size_t(copies));
        for (int c = 0; c < copies; ++c) {
            w.emplace_back(wbytes);
            linear_bench_fill_device(w.back().p, wbytes, 300 + uint32_t(c), kind, st.s);
        }
        linear_bench_fill_device(x.p, size_t(m_alloc * k) * elem, 8, kind, st.s);
        const float unit = k_e4m3_unit;
        NIBBLE_CUDA_CHECK(cudaMemcpyAsync(a_scale.p, &unit, sizeof(unit), cudaMemcpyHostToDevice, st.s));
        NIBBLE_CUDA_CHECK(cudaMemcpyAsync(b_scale.p, &unit, sizeof(unit), cudaMemcpyHostToDevice, st.s));
        NIBBLE_CUDA_CHECK(cudaStreamSynchronize(st.s));
        const float* a_scale_ptr = static_cast<const float*>(a_scale.p);
        const float* b_scale_ptr = static_cast<const float*>(b_scale.p);
        int device = 0, sm_major = 0, sm_minor = 0;
        NIBBLE_CUDA_CHECK(cudaGetDevice(&device));
        NIBBLE_CUDA_CHECK(cudaDeviceGetAttribute(&sm_major, cudaDevAttrComputeCapabilityMajor, device));
        NIBBLE_CUDA_CHECK(cudaDeviceGetAttribute(&sm_minor, cudaDevAttrComputeCapabilityMinor, device));
        const std::string common = fmt::format(
            "COMPUTE_32F, scale type R_32F, alpha 1 beta 0 (host), {}workspace {} MiB; cuBLASLt {} (built "
            "against {}), sm_{}{}; alignment (bytes): W {} x {} y {} workspace {}{}",
            fp8 ? "per-tensor A/B scales (device floats), " : "", k_workspace_bytes >> 20,
            cublasLtGetVersion(), CUBLAS_VERSION, sm_major, sm_minor, alignment_of(w[0].p), alignment_of(x.p),
            alignment_of(y.p), alignment_of(workspace.p),
            fp8 ? fmt::format(" scales {} {}", alignment_of(a_scale.p), alignment_of(b_scale.p)) : "");
        for (int64_t m : batches) {
            linear_bench_result r;
            r.n = n, r.k = k, r.m = m, r.kernel = kernel, r.copies = copies;
            r.bytes = double(wbytes) + double(m * k) * double(elem) + double(m * n) * 2.0 +
                      (fp8 ? 2.0 * sizeof(float) : 0.0);
            try {
                // The first configuration whose algorithm runs; what the others said.
                std::unique_ptr<lt_plan> plan;
                std::vector<std::pair<lt_config, std::string>> rejected;
                {
                    lt_log_capture log;
                    for (const lt_config& cfg : lt_configs(fp8, m)) {
                        auto p = std::make_unique<lt_plan>();
                        std::string why;
                        try {
                            make_plan(*p, lt.h, fp8, cfg, n, k, a_scale_ptr, b_scale_ptr);
                        } catch (const error& e) {
                            why = e.what();
                        }
                        if (why.empty()) why = try_algorithms(*p, lt.h, w[0].p, x.p, y.p, workspace.p, st.s);
                        if (p->chosen >= 0) {
                            plan = std::move(p);
                            break;
                        }
                        rejected.emplace_back(cfg, why + lt_log_capture::take());
                    }
                }
                if (!plan) {
                    std::string msg =
                        fmt::format("cuBLASLt {} rejected every configuration at m={}:", what, m);
                    for (size_t i = 0; i < rejected.size(); ++i)
                        msg += fmt::format(" ({}) {}: {}.", i + 1, config_name(rejected[i].first),
                                           rejected[i].second);
                    fail("{} Layout of (1) [the others differ only as named]: {}. Common: {}", msg,
                         layout_text(fp8, rejected.front().first, n, k), common);
                }
                const lt_plan& p = *plan;
                std::string note;
                auto add = [&](const std::string& s) { note += (note.empty() ? "" : "; ") + s; };
                if (p.cfg.m != m)
                    add(fmt::format("padded to m={} (time and bytes are the m={} GEMM's)", p.cfg.m, p.cfg.m));
                if (p.cfg.out != CUDA_R_16BF) add(fmt::format("D {}", type_name(p.cfg.out)));
                if (p.cfg.c_in_place && fp8) add("C = D in place");
                if (p.cfg.fast_accum) add("fast accumulation");
                if (p.chosen > 0)
                    add(fmt::format("heuristic's algorithm {} of {} (the first {} rejected)", p.chosen + 1,
                                    p.algos.size(), p.chosen));
                for (const auto& [cfg, why] : rejected)
                    add(fmt::format("{} rejected: {}", config_name(cfg), short_failure(why)));
                r.note = note;
                r.bytes = double(wbytes) + double(p.cfg.m * k) * double(elem) +
                          double(p.cfg.m * n) * double(type_size(p.cfg.out)) +
                          (fp8 ? 2.0 * sizeof(float) : 0.0);
                auto launch = [&](int c) {
                    const cublasStatus_t s =
                        lt_matmul(p, p.chosen, lt.h, w[size_t(c)].p, x.p, y.p, workspace.p, st.s);
                    if (s != CUBLAS_STATUS_SUCCESS)
                        fail("cublasLtMatmul ({} {}, algorithm {} of {}, copy {}) failed: {} [{}]; {}", what,
                             config_name(p.cfg), p.chosen + 1, p.algos.size(), c, status_text(s),
                             layout_text(fp8, p.cfg, n, k), common);
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
