// FP8 E4M3 GEMMs on the tensor cores through cuBLASLt, for the W8A8 path of the tensor-core linear
// (cuda_backend::linear_tensor_core): D[rows, n] = alpha · A[rows, k] · W[n, k]ᵀ, A and W E4M3 bytes
// row-major, D float32 row-major with row stride ldd. FP32 accumulation with CUBLASLT_MATMUL_DESC_FAST_ACCUM
// off (cuBLASLt promotes the tensor cores' partial sums to FP32 registers at intervals; the products of two
// E4M3 values are exact, the sums inside one promotion interval are not: Hopper's FP8 MMA accumulates in a
// narrower format than FP32, so results are not the float32 sums of the BF16 path, see
// tests/cuda/test_prefill_linear.cpp for the bound); unit A/B scales, alpha and beta = 0 on the host.
//
// Layout: row-major D[rows, n] = A · Wᵀ is, column-major, D (n × rows) = op(W-view) · A-view with W seen
// as k × n (ld k) transposed and A as k × rows (ld k): cuBLAS's "TN" form, the only one its FP8 kernels
// take on Ada and Hopper (cuBLAS m = n, n = rows, k = k). C is passed as nullptr with D's descriptor (beta
// = 0: never read; since CUDA 13.0 cublasLtMatmul rejects a C that aliases D unless its descriptor is D's,
// openxla/xla PR 34912), else C = D with the same descriptor.
//
// Plans: per (rows, n, k, ldd, pointer alignment) the descriptors and the heuristic's algorithms are made
// once, on the first call of that shape; that call runs the algorithms in the heuristic's order until
// cublasLtMatmul accepts one (its status check is on the host; nothing is synchronized) and keeps it. Later
// calls of the shape only launch: no allocation and no host synchronization, so they may be captured into
// a CUDA graph. A shape cuBLASLt takes no algorithm for is remembered as rejected.
//
// Host-only C++ (no device code); one object per backend (not thread-safe, like the backend).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>

namespace nibble {

class cuda_fp8_gemm {
  public:
    // The workspace every call is given (split-K and stream-K kernels): the caller allocates it once.
    static constexpr size_t workspace_bytes = size_t(32) << 20;

    cuda_fp8_gemm();
    ~cuda_fp8_gemm();
    cuda_fp8_gemm(const cuda_fp8_gemm&) = delete;
    cuda_fp8_gemm& operator=(const cuda_fp8_gemm&) = delete;

    // What cuBLASLt's FP8 kernels require of the call, checked before asking it: k % 16 == 0 (A and W rows
    // of 16-byte multiples), ldd >= n with ldd % 4 == 0 (D rows of 16-byte multiples), sizes that fit its
    // int32 dimensions, A, W, D and the workspace 16-byte aligned. "" when met, else what is not.
    static std::string unmet(const void* a, const void* w, const float* d, int64_t rows, int64_t n, int64_t k,
                             int64_t ldd, const void* workspace);

    struct result {
        bool ran = false;
        bool first_rejection = false;  // not ran, the first rejection of this (n, k, ldd) (to report once)
        std::string why;               // not ran: the requirement not met, or what cuBLASLt said
    };
    // Issues the GEMM on st (workspace: workspace_bytes of device memory). Does not run (ran = false, why
    // says why) when unmet() is not "" or cuBLASLt takes no algorithm for the shape; throws nibble::error
    // when an algorithm it took before fails.
    result run(const void* a, const void* w, float* d, int64_t rows, int64_t n, int64_t k, int64_t ldd,
               float alpha, void* workspace, cudaStream_t st);

    // Whether run() would not run this call because of unmet() or a rejection already seen (so that the
    // caller skips preparing its operands), without asking cuBLASLt.
    bool known_not_to_run(const void* a, const void* w, const float* d, int64_t rows, int64_t n, int64_t k,
                          int64_t ldd, const void* workspace) const;

    // Shapes planned so far (taken or rejected), for tests.
    size_t n_plans() const { return plans_.size(); }

  private:
    struct plan;
    using key = std::tuple<int64_t, int64_t, int64_t, int64_t, unsigned>;  // rows, n, k, ldd, alignment
    std::unique_ptr<plan> make_plan(int64_t rows, int64_t n, int64_t k, int64_t ldd, unsigned align);
    cublasLtHandle_t h_ = nullptr;
    std::map<key, std::unique_ptr<plan>> plans_;
    std::set<std::tuple<int64_t, int64_t, int64_t>> reported_;  // (n, k, ldd) with a rejection returned
};

}  // namespace nibble
