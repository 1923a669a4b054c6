// Decode-linear kernel benchmark behind `nibble bench --kernels`: nibble's own linear layers (exactly what
// cuda_backend::linear dispatches to) and the cuBLASLt references (BF16, and FP8 E4M3 with per-tensor
// scales) on one weight shape W [n, k] (n outputs, k inputs; y[m, n] = x[m, k] · Wᵀ) at several batches m.
// Plain C++17 types only: the CLI includes this header without the CUDA toolkit's, and nvcc compiles the
// .cu side as C++17. Files: linear_bench.cu (random data, graph timing, the cuBLASLt references) and
// linear_bench_nibble.cpp (nibble's layers, and linear_bench_run), sharing linear_bench_parts.h.
//
// Method (performance.md): every buffer holds random data, never zeros (E4M3 bytes without NaN, block
// scales non-negative, BF16 and float values finite in [-1, 1)); each kernel's weights are rotated over
// enough copies that their footprint is >= 4x L2, so every launch reads HBM (2..512 copies: tiny weights
// stay partly in L2, the row's copy count shows it); a timing is one CUDA-graph replay of one launch per
// copy, timed with events, divided by the number of copies; the result is the median of `reps` replays
// after 3 warm-up replays. nibble's layers are linear_weight views over host
// buffers on a fresh cuda_backend per format (freed afterwards); each copy is run once outside the graph
// first (weight upload, scratch growth), at every batch, before it is captured.
//
// Bytes per launch: the weight as stored plus its scales (linear_weight::bytes() for nibble's layers)
// plus x and y in the kernel's own types (nibble: float32 x and y; cuBLASLt BF16: BF16 x and y; cuBLASLt
// FP8: E4M3 x, BF16 y, two float scales).
//
// cuBLASLt rows try several configurations (linear_bench.cu says which, in order) and report the first
// that runs; when that is not the nominal one (FP8: FP32 output instead of BF16, or the batch padded to
// a multiple of 16 because cuBLASLt rejects the batch itself) the row's note says so, and its time and
// bytes are those of the GEMM that ran (the padded batch's x and y, FP32 y).
//
// Contract: n >= 1, k >= 32 with k % 32 == 0, every m >= 1, reps >= 1, and a CUDA device (device 0).
// Failures (a shape cuBLASLt rejects, a nibble layer that throws, an allocation that fails) come back
// as rows with ok = false and the reason; only a broken contract throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace nibble {

enum linear_bench_kernel : uint8_t {
    linear_bench_nibble_nvfp4_w4a16,  // NVFP4 (CT global scale), activations as they are
    linear_bench_nibble_nvfp4_w4a4,   // NVFP4 with W4A4 activations (static input global scale)
    linear_bench_nibble_fp8_w8a16,    // FP8 E4M3, per-channel scales, weight-only
    linear_bench_nibble_fp8_w8a8,     // FP8 E4M3, per-channel scales, dynamic per-token FP8 activations
    linear_bench_nibble_bf16,         // dense BF16
    linear_bench_cublaslt_bf16,       // cuBLASLt BF16 x BF16 -> BF16, FP32 accumulation
    linear_bench_cublaslt_fp8,        // cuBLASLt E4M3 x E4M3 -> BF16, per-tensor scales, TN (see note)
    linear_bench_kernel_count,
};

// "nibble nvfp4 w4a16", ..., "cublaslt fp8".
const char* linear_bench_kernel_name(linear_bench_kernel k);
// The weight format the kernel reads: "nvfp4", "fp8" or "bf16".
const char* linear_bench_kernel_format(linear_bench_kernel k);
// True for nibble's own layers (cuda_backend::linear), false for the cuBLASLt references.
bool linear_bench_is_nibble(linear_bench_kernel k);

struct linear_bench_result {
    int64_t n = 0, k = 0, m = 0;
    linear_bench_kernel kernel = linear_bench_nibble_nvfp4_w4a16;
    bool ok = false;
    std::string error;   // why there is no time (ok = false)
    std::string note;    // ok rows: how a cuBLASLt row differs from its nominal form (padded batch, ...)
    double seconds = 0;  // median time per launch
    double bytes = 0;    // bytes one launch has to move (see above)
    int copies = 0;      // weight copies rotated
};

// Measures every kernel of `kernels` at every batch of `batches` on W [n, k]; l2_bytes is the device's
// L2 size (cuda_device_query). Rows come in the order of `kernels`, then of `batches`.
std::vector<linear_bench_result> linear_bench_run(int64_t n, int64_t k, const std::vector<int64_t>& batches,
                                                  const std::vector<linear_bench_kernel>& kernels, int reps,
                                                  size_t l2_bytes);

}  // namespace nibble
