// Prefill attention on tensor cores (attention_prefill.cu), the part of cuda_attention (backend_ops.h)
// that takes query tiles of one sequence: same result contract as cuda_attention, for the tiles it takes.
//
// A step's tokens are cut into tiles of tt consecutive tokens (tile i: tokens [i·tt, min(T, (i+1)·tt)));
// a tile whose tokens all have the same slot is "taken": the tensor-core kernel computes its outputs, and
// the split-KV kernel (attention.cu) skips its tokens. Positions within a tile need not be consecutive:
// each query row is masked by its own position. Both kernels decide from the slots on the device, so the
// launch depends on T and static sizes only (CUDA-graph safe).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/backend_ops.h"

namespace nibble {

// Whether the tensor-core path is on: on unless NIBBLE_TC_ATTENTION=0 is in the environment, or as last set
// (tests, A/B runs).
bool cuda_attention_prefill_enabled();
void cuda_attention_set_prefill(bool on);

// Tokens per tile when the tensor-core path serves a step of T tokens with nh q heads over kv: 64 query
// rows (token, q head of the KV head's group) per block, so tt = 64 / group; 0 (the split-KV kernel takes
// every token) when the path is off, for T < 64, a KV cache other than BF16 / FP8, head_dim other than
// 32 / 64 / 128, a group above 64, a GPU before sm_80 or one without the kernel's shared memory.
int cuda_attention_prefill_tile(int64_t T, int64_t nh, const cuda_kv_cache& kv);

// The tensor-core kernel over the taken tiles of a step (tt from cuda_attention_prefill_tile, > 0):
// writes out rows of their tokens only.
cudaError_t cuda_attention_prefill(const float* q, const cuda_kv_cache& kv, const int32_t* slots,
                                   const int32_t* positions, int64_t T, int64_t nh, int64_t layer, int tt,
                                   float* out, cudaStream_t st);

#ifdef __CUDACC__
// Whether token t's tile is taken (every token of the tile has t's tile's first slot). Warp-uniform: call
// with all 32 lanes of the warp.
__device__ __forceinline__ bool attention_tile_taken(const int32_t* slots, int T, int tt, int t) {
    const int t0 = t / tt * tt, n = min(tt, T - t0), s0 = slots[t0];
    bool same = true;
    for (int i = int(threadIdx.x & 31); i < n; i += 32) same = same && slots[t0 + i] == s0;
    return __all_sync(0xffffffffu, same);
}
#endif

}  // namespace nibble
