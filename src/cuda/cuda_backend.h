// The CUDA backend: the Backend interface (core/backend.h) on one GPU, tested op by op and end to end
// against the CPU backend (tests/cuda/test_cuda_backend.cpp). First working slice: correct on every
// scheme, not yet tuned.
//
// Memory: activations are float32 device buffers from alloc(); the KV cache is float32 with the CPU's
// layout ([slot][layer][pos][n_kv·hd] for K and for V). Weights are uploaded once, lazily on first use,
// keyed by the host view's data pointer: packed formats (NVFP4, MXFP4, FP8) stay packed; dense
// BF16/F16/F32 weights (and norms, biases, FP8 scales) are converted once to float32 on the device.
//
// Linear (interim paths, stated): NVFP4 with rows <= 16 runs cuda_nvfp4_linear (W4A4: activations
// fake-quantized first, exactly as core/quant.cpp); every other case decodes the weight to a float32
// scratch (exact dequantized values, the CPU's order) and multiplies with cublasSgemm (FP32, no TF32).
// FP8 activations are fake-quantized on the device exactly as cpu_quantize_activations.
//
// MoE: routing is computed on the host from the copied router logits (the CPU's exact code), then each
// expert runs over its tokens with linear(); this synchronizes the stream, so it is not graph-capturable.
//
// Every op is issued on the backend's own stream; to_host synchronizes it.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "core/backend.h"

namespace nibble {

class cuda_backend : public backend {
  public:
    // Uses CUDA device `device`; fails when there is none.
    explicit cuda_backend(int device = 0);
    ~cuda_backend() override;
    cuda_backend(const cuda_backend&) = delete;
    cuda_backend& operator=(const cuda_backend&) = delete;

    const char* name() const override { return "cuda"; }
    float* alloc(size_t n) override;
    void to_host(const float* src, size_t n, float* dst) override;
    void kv_init(const model_config& c, int32_t n_slots, int32_t max_ctx, kv_cache_dtype dt) override;
    kv_cache_dtype kv_dtype() const override { return kv_dtype_; }

    void embed(const tensor_view& table, const step_tokens& s, float* out) override;
    void rms_norm(const float* x, const tensor_view& w, int64_t rows, int64_t cols, float eps,
                  float* out) override;
    void add(float* x, const float* y, int64_t n) override;
    void linear(const float* x, int64_t rows, const linear_weight& w, float* out) override;
    void silu_mul(const float* gate, const float* up, int64_t n, float* out) override;
    void gather_rows(const float* src, int64_t cols, std::span<const int32_t> rows, float* dst) override;
    void rope_and_cache(const model_config& c, int32_t layer, const layer_weights& l, const step_tokens& s,
                        float* q, float* k, const float* v) override;
    void attention(const model_config& c, int32_t layer, const step_tokens& s, const float* q,
                   float* out) override;
    void moe(const model_config& c, const layer_weights& l, const float* x, const float* router_logits,
             int64_t rows, float* out) override;

    // Host <-> device helpers for tests and tools (synchronous).
    void upload(const float* host, size_t n, float* dst);
    // Bytes of weights uploaded so far (packed as stored, dense as float32).
    uint64_t uploaded_weight_bytes() const { return uploaded_bytes_; }
    cudaStream_t stream() const { return stream_; }

  private:
    // Device copy of a view's raw bytes (uploaded on first use).
    const void* raw(const tensor_view& v);
    // Device float32 copy of a BF16/F16/F32 view (converted on first use).
    const float* f32(const tensor_view& v);
    // Device copy of a host float vector that lives as long as the weights (FP8 scales).
    const float* f32_vector(const std::vector<float>& v);
    // Growable scratch buffers (contents not kept across calls).
    float* scratch(int which, size_t n);
    // Device int32 copy of a host span in one of a few staging slots.
    const int32_t* ints(int which, std::span<const int32_t> v);
    void check_tokens(const step_tokens& s) const;

    int device_ = 0;
    cudaStream_t stream_ = nullptr;
    cublasHandle_t cublas_ = nullptr;
    std::vector<void*> owned_;
    std::unordered_map<const void*, const void*> raw_;
    std::unordered_map<const void*, const float*> f32_;
    uint64_t uploaded_bytes_ = 0;
    struct growable {
        void* p = nullptr;
        size_t bytes = 0;
    };
    growable scratch_[6], ints_[4];
    float *k_cache_ = nullptr, *v_cache_ = nullptr, *inv_freq_ = nullptr;
    int32_t n_slots_ = 0, max_ctx_ = 0, n_layers_ = 0;
    kv_cache_dtype kv_dtype_ = kv_cache_f32;
    int64_t kv_dim_ = 0;
};

}  // namespace nibble
