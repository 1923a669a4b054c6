// What the two halves of the kernel benchmark share (linear_bench.h states the method): linear_bench.cu
// (kernels and cuBLASLt, compiled by nvcc as C++17) provides random data, the graph timing and the
// cuBLASLt reference rows; linear_bench_nibble.cpp (C++20, it includes cuda_backend.h) measures
// nibble's layers and runs the whole benchmark. Every function throws nibble::error on a CUDA or cuBLAS
// error (with the call, the file and the line).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "cuda/linear_bench.h"

namespace nibble {

// Random contents, never zeros: each element from a hash of (index, seed).
enum linear_bench_fill : int {
    linear_bench_fill_bytes,       // any byte (E2M1 pairs: every code is valid)
    linear_bench_fill_e4m3,        // E4M3 without NaN (0x7F, 0xFF)
    linear_bench_fill_e4m3_scale,  // E4M3 block scales: non-negative, not NaN (0x00..0x7E)
    linear_bench_fill_bf16,        // finite BF16 in [-1, 1)
    linear_bench_fill_f32,         // finite float in [-1, 1)
};

// Fills `bytes` of device memory (a whole number of the kind's elements) on stream st.
void linear_bench_fill_device(void* p, size_t bytes, uint32_t seed, linear_bench_fill kind, cudaStream_t st);
// The same contents in host memory (made on the device, copied back; synchronous).
std::vector<uint8_t> linear_bench_random_host(size_t bytes, uint32_t seed, linear_bench_fill kind);

// Copies of a weight of `bytes` so that all of them cover >= 4x L2: at least 2, at most 512 (tiny
// weights then stay partly L2-resident; the row's copy count shows it).
int linear_bench_copies(double bytes, size_t l2_bytes);

// Captures launch(c) for c = 0..n_copies-1 on st into one CUDA graph, replays it 3 times (warm-up),
// then times `reps` replays with events; returns the median replay time / n_copies, in seconds. A launch
// that throws ends the capture, and its error propagates.
double linear_bench_time_rotated(int n_copies, int reps, cudaStream_t st,
                                 const std::function<void(int)>& launch);

// Appends one row per batch of cuBLASLt BF16 (fp8 false) or FP8 (fp8 true) on W [n, k]: the first
// configuration cuBLASLt runs (its note says how it differs from the nominal one), or, when it rejects
// them all, an error naming every configuration's layout and cuBLASLt's statuses.
void linear_bench_cublaslt(bool fp8, int64_t n, int64_t k, const std::vector<int64_t>& batches, int reps,
                           size_t l2_bytes, std::vector<linear_bench_result>& out);

}  // namespace nibble
