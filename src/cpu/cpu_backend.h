// The CPU backend: the reference every other backend is tested against. Float32 activations and
// accumulation, exact scheme semantics (formats.md), packed weights read in place, OpenMP over output
// features. Each output is computed by one thread in a fixed order, so results do not depend on the
// thread count.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "core/backend.h"
#include "core/kv_tables.h"

namespace nibble {

class cpu_backend : public backend {
  public:
    const char* name() const override { return "cpu"; }
    float* alloc(size_t n) override;
    void to_host(const float* src, size_t n, float* dst) override;
    void top_k_rows(const float* logits, int64_t rows, int64_t vocab, int32_t k, float* values, int32_t* ids,
                    float* lse) override;
    using backend::kv_init;
    void kv_init(const model_config& c, const kv_cache_shape& shape, kv_cache_dtype dt) override;
    void set_block_table(int32_t slot, std::span<const int32_t> blocks) override {
        tables_.set(slot, blocks);
    }
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

    // Calibration: when set, every linear layer's input absmax is folded into the observer
    // (name -> running max), for `nibble quantize --calib`.
    void set_input_observer(std::function<void(const linear_weight&, float amax)> f) {
        observer_ = std::move(f);
    }

    // Writes k and v [T, n_kv·hd] into the KV cache at each token's (slot, position), each value rounded
    // to the cache dtype as the CUDA cache stores it (rope_and_cache's last step; public so that tests can
    // fill the cache with given rows). Fails for a slot or position outside its block table.
    void kv_store(int32_t layer, const step_tokens& s, const float* k, const float* v);

  private:
    float* kv_row(bool value, int32_t slot, int32_t layer, int32_t pos);
    std::vector<std::unique_ptr<float[]>> buffers_;
    // KV cache, K and V each [layer][block][block_size][n_kv·hd] floats (position p of slot s in block
    // tables_.block_of(s, p)). With a bf16 or fp8 dtype every value is
    // stored already rounded through that format (BF16 RNE; E4M3 RNE saturating at ±448, scale 1: the
    // core/formats.h encoders), so attention reads exactly what the CUDA cache holds; memory stays 4
    // bytes per value whatever the dtype.
    std::vector<float> k_cache_, v_cache_;
    std::vector<float> inv_freq_;
    kv_tables tables_;
    int32_t n_layers_ = 0;
    kv_cache_dtype kv_dtype_ = kv_cache_f32;
    int64_t kv_dim_ = 0;
    std::function<void(const linear_weight&, float)> observer_;
};

// Decodes row r of a linear weight into k floats (exact dequantized values, formats.md 8.5.9 order).
void cpu_decode_row(const linear_weight& w, int64_t r, float* out);
// The activations a linear layer actually multiplies: x itself (weight-only) or x quantized and
// dequantized per the layer's activation scheme (W4A4 per-16, FP8 per token / per 128-group / static).
void cpu_quantize_activations(const linear_weight& w, const float* x, int64_t rows, float* out);
// backend::top_k_rows on host memory (the reference; cpu_sampling.cpp): a k-entry heap per row, and the
// log-sum-exp as sampler's logsumexp computes it (float exp, double sum), NaN counted as -inf.
void cpu_top_k_rows(const float* logits, int64_t rows, int64_t vocab, int32_t k, float* values, int32_t* ids,
                    float* lse);
// RoPE inverse frequencies (default or Llama-3 scaling), as transformers computes them.
std::vector<float> rope_inv_freq(const model_config& c);

}  // namespace nibble
