// Tensor-core decode linear for batches m = 1..16: NVFP4 or FP8 (tensor / channel scales) weights,
// dequantized in registers to exact FP16 fragments, times FP32 activations scaled per row and 128-k span
// by a power of two and rounded to FP16 (2^-11 relative per activation; exact_x or NIBBLE_MMA_SPLIT=1: hi +
// lo parts, two mma.sync per step, ~2^-21), FP32 accumulation.
//
//   parts[i].y[m, n_i] = x[m, k] · W_iᵀ · multiplier (+ bias)
//
// Weight layouts as linear_stream.h (the checkpoint's own). Contract: 1 <= m <= 16; 1 <= n_parts <= 3 parts
// sharing format, k and FP8 granularity; nvfp4: k % 128 == 0; fp8: k % 64 == 0 and tensor or channel
// scales (block scales are not taken); pointers 16-byte aligned (NVFP4 scales: 2-byte); otherwise
// cudaErrorInvalidValue. `workspace` must hold cuda_linear_mma_workspace_bytes(...) bytes (x's prepared
// fragments, 32 or 64 bytes per k, and split-K partial sums) and be zeroed once when allocated: its start
// holds split-K counters that every launch leaves zero again, whatever its shapes (so one workspace serves
// every layer). Two launches (x prep, then the linear, with programmatic dependent launch) on `stream`; calls
// sharing a workspace must be ordered on one stream. Deterministic.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/linear_stream.h"

namespace nibble {

bool cuda_linear_mma_supports(const cuda_stream_weight& w);
// Blocks per SM of the linear kernel: 2 (weights prefetched 4 items ahead in 64 registers), or 3 with
// NIBBLE_MMA_OCC=3 (prefetched 2 items ahead, 72-80 registers: 24 warps per SM instead of 16 to cover the
// shared-memory fragment loads the kernel waits on), or as last set (tests run both). The workspace size
// depends on it. Measured (H200, 2026-12-01, NVFP4 W4A16 8B): 3 blocks took batch 4 from 4.475 to 4.334 ms
// before the pair layout, batch 16 unchanged; by shape it wins on 24576 x 4096 and up and loses on 4096 x
// 4096 (finer split-K); with the pair layout, 3 only where a matrix has the rows made no difference.
int cuda_linear_mma_blocks_per_sm();
void cuda_linear_mma_set_blocks_per_sm(int blocks);  // 2 or 3
// Workspace bytes: split-K counters, x's prepared fragments and split-K partial sums.
// exact_x: x as FP16 hi + lo (~2^-21, two mma per step) instead of hi only (2^-11), for fake-quantized
// activations. The workspace size depends on it.
size_t cuda_linear_mma_workspace_bytes(int64_t m, const cuda_stream_part* parts, int n_parts, bool exact_x);
cudaError_t cuda_linear_mma_parts(const float* x, int64_t m, const cuda_stream_part* parts, int n_parts,
                                  bool exact_x, void* workspace, size_t workspace_bytes, cudaStream_t stream);

}  // namespace nibble
