// cuda_fp8_gemm (fp8_gemm.h): cuBLASLt descriptors, the heuristic and the algorithm choice per shape.
#include "cuda/fp8_gemm.h"

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <vector>

#include "core/error.h"

namespace nibble {

namespace {

constexpr int k_algo_requests = 8;

std::string status_text(cublasStatus_t s) {
    return fmt::format("{} ({})", cublasLtGetStatusName(s), cublasLtGetStatusString(s));
}

// The largest power of two, from 16 up to 256, dividing every address (cuBLASLt's heuristic assumes 256
// unless told less; an algorithm chosen for 256 refuses a pointer that is only 16-byte aligned).
unsigned common_alignment(std::initializer_list<const void*> ps) {
    unsigned al = 256;
    for (const void* p : ps)
        while (al > 16 && reinterpret_cast<uintptr_t>(p) % al != 0) al /= 2;
    return al;
}

}  // namespace

struct cuda_fp8_gemm::plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t w = nullptr, a = nullptr, d = nullptr;  // cuBLAS's A, B and C = D
    std::vector<cublasLtMatmulHeuristicResult_t> algos;            // the heuristic's usable answers
    int chosen = -1;                                               // the algorithm that ran, once one has
    bool c_in_place = false;                                       // it ran with C = D (else C = nullptr)
    std::string rejected;                                          // why none runs, once known
    plan() = default;
    plan(const plan&) = delete;
    plan& operator=(const plan&) = delete;
    ~plan() {
        if (d) cublasLtMatrixLayoutDestroy(d);
        if (a) cublasLtMatrixLayoutDestroy(a);
        if (w) cublasLtMatrixLayoutDestroy(w);
        if (op) cublasLtMatmulDescDestroy(op);
    }
};

cuda_fp8_gemm::cuda_fp8_gemm() {
    const cublasStatus_t s = cublasLtCreate(&h_);
    if (s != CUBLAS_STATUS_SUCCESS) fail("cublasLtCreate failed: {}", status_text(s));
}

cuda_fp8_gemm::~cuda_fp8_gemm() {
    plans_.clear();
    if (h_) cublasLtDestroy(h_);
}

std::string cuda_fp8_gemm::unmet(const void* a, const void* w, const float* d, int64_t rows, int64_t n,
                                 int64_t k, int64_t ldd, const void* workspace) {
    if (rows <= 0 || n <= 0 || k <= 0 || rows > INT32_MAX || n > INT32_MAX || k > INT32_MAX ||
        ldd > INT32_MAX)
        return fmt::format("sizes {} x {} x {} (ldd {}) outside cuBLASLt's int32 dimensions", rows, n, k,
                           ldd);
    if (k % 16) return fmt::format("k = {} is not a multiple of 16 (E4M3 rows of 16-byte multiples)", k);
    if (ldd < n || ldd % 4)
        return fmt::format("output row stride {} is below n = {} or not a multiple of 4 floats", ldd, n);
    for (const void* p : {a, w, static_cast<const void*>(d), workspace})
        if (reinterpret_cast<uintptr_t>(p) % 16)
            return fmt::format("a pointer ({}) is not 16-byte aligned", p);
    return "";
}

bool cuda_fp8_gemm::known_not_to_run(const void* a, const void* w, const float* d, int64_t rows, int64_t n,
                                     int64_t k, int64_t ldd, const void* workspace) const {
    if (!unmet(a, w, d, rows, n, k, ldd, workspace).empty()) return true;
    const auto it = plans_.find(key{rows, n, k, ldd, common_alignment({a, w, d})});
    return it != plans_.end() && !it->second->rejected.empty();
}

std::unique_ptr<cuda_fp8_gemm::plan> cuda_fp8_gemm::make_plan(int64_t rows, int64_t n, int64_t k, int64_t ldd,
                                                              unsigned align) {
    auto p = std::make_unique<plan>();
    // Descriptor failures reject the shape (fall back) rather than throw: they say cuBLASLt does not take
    // it here.
    auto ok = [&](cublasStatus_t s, const char* what) {
        if (s == CUBLAS_STATUS_SUCCESS) return true;
        p->rejected = fmt::format("{} failed: {}", what, status_text(s));
        return false;
    };
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    const int8_t fast_accum = 0;  // FP32 promotion of the partial sums (torch._scaled_mm's default too)
    if (!ok(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate") ||
        !ok(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)), "TRANSA") ||
        !ok(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)), "TRANSB") ||
        !ok(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast_accum,
                                           sizeof(fast_accum)),
            "FAST_ACCUM") ||
        !ok(cublasLtMatrixLayoutCreate(&p->w, CUDA_R_8F_E4M3, uint64_t(k), uint64_t(n), k), "layout of W") ||
        !ok(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_8F_E4M3, uint64_t(k), uint64_t(rows), k),
            "layout of A") ||
        !ok(cublasLtMatrixLayoutCreate(&p->d, CUDA_R_32F, uint64_t(n), uint64_t(rows), ldd), "layout of D"))
        return p;
    cublasLtMatmulPreference_t pref = nullptr;
    if (!ok(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate")) return p;
    const size_t ws = workspace_bytes;
    const uint32_t al = align;
    bool set = ok(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
        "MAX_WORKSPACE_BYTES");
    for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
        set = set && ok(cublasLtMatmulPreferenceSetAttribute(pref, attr, &al, sizeof(al)), "MIN_ALIGNMENT");
    std::vector<cublasLtMatmulHeuristicResult_t> r(k_algo_requests);
    int found = 0;
    if (set) {
        const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(h_, p->op, p->w, p->a, p->d, p->d, pref,
                                                                k_algo_requests, r.data(), &found);
        if (s != CUBLAS_STATUS_SUCCESS) p->rejected = "cublasLtMatmulAlgoGetHeuristic: " + status_text(s);
    }
    cublasLtMatmulPreferenceDestroy(pref);
    for (int i = 0; i < std::min(found, k_algo_requests); ++i)
        if (r[size_t(i)].state == CUBLAS_STATUS_SUCCESS && r[size_t(i)].workspaceSize <= workspace_bytes)
            p->algos.push_back(r[size_t(i)]);
    if (p->rejected.empty() && p->algos.empty())
        p->rejected = fmt::format("the heuristic returned no usable algorithm ({} returned)", found);
    return p;
}

cuda_fp8_gemm::result cuda_fp8_gemm::run(const void* a, const void* w, float* d, int64_t rows, int64_t n,
                                         int64_t k, int64_t ldd, float alpha, void* workspace,
                                         cudaStream_t st) {
    result res;
    res.why = unmet(a, w, d, rows, n, k, ldd, workspace);
    if (!res.why.empty()) return res;
    const unsigned align = common_alignment({a, w, d});
    const key key_{rows, n, k, ldd, align};
    auto it = plans_.find(key_);
    const bool first = it == plans_.end();
    if (first) it = plans_.emplace(key_, make_plan(rows, n, k, ldd, align)).first;
    plan& p = *it->second;
    const float zero = 0.0f;
    auto matmul = [&](int algo, bool c_in_place) {
        return cublasLtMatmul(h_, p.op, &alpha, w, p.w, a, p.a, &zero, c_in_place ? d : nullptr, p.d, d, p.d,
                              &p.algos[size_t(algo)].algo, workspace, workspace_bytes, st);
    };
    if (p.chosen >= 0) {
        const cublasStatus_t s = matmul(p.chosen, p.c_in_place);
        if (s != CUBLAS_STATUS_SUCCESS)
            fail("cuBLASLt FP8 GEMM {} x {} x {} failed with the algorithm it took before: {}", rows, n, k,
                 status_text(s));
        res.ran = true;
        return res;
    }
    if (p.rejected.empty()) {
        // The first call of the shape: the heuristic's algorithms in order, each with C = nullptr then C = D,
        // until cublasLtMatmul accepts one (it validates on the host before launching; a rejected call
        // launches nothing).
        std::string seen;
        for (int i = 0; i < int(p.algos.size()) && p.chosen < 0; ++i)
            for (bool in_place : {false, true}) {
                const cublasStatus_t s = matmul(i, in_place);
                if (s == CUBLAS_STATUS_SUCCESS) {
                    p.chosen = i;
                    p.c_in_place = in_place;
                    break;
                }
                seen += fmt::format("{}algorithm {} C {}: {}", seen.empty() ? "" : "; ", i + 1,
                                    in_place ? "= D" : "null", cublasLtGetStatusName(s));
            }
        if (p.chosen >= 0) {
            res.ran = true;
            return res;
        }
        p.rejected = fmt::format("cublasLtMatmul took none of the heuristic's {} algorithms ({})",
                                 p.algos.size(), seen);
    }
    res.first_rejection = first && reported_.emplace(n, k, ldd).second;
    res.why = fmt::format("cuBLASLt FP8 E4M3 GEMM, TN m={} n={} k={} ldd={} alignment {} B, D f32: {}", n,
                          rows, k, ldd, align, p.rejected);
    return res;
}

}  // namespace nibble
