// The Backend interface: the ops the model forward is written over (core/forward.h), implemented once
// per device (src/cpu: the reference; src/cuda: the fast path). Activations are float32 row-major
// matrices in backend memory; weights are the views of core/weights.h (the backend may upload them).
//
// KV cache (per backend, allocated by kv_init): a pool of n_blocks blocks of block_size positions (vLLM's
// paged KV cache); each block holds, per layer and position, K and V rows of n_kv_heads × head_dim values,
// stored as kv_cache_dtype says. Each slot (a sequence of a step) has a block table: position p of slot s
// lives in block table[s][p / block_size] at offset p % block_size. The engine's block manager decides the
// tables (engine/block_manager.h) and sets them with set_block_table; without one (run, bench, perplexity)
// every slot owns its own max_ctx positions.
//
// Step recording (CUDA graphs): model_forward calls begin_step() before a step's ops, so that a backend
// can stage the step's token ids, slots, positions and logit rows once in its own memory, where the ops
// read them. A backend that can record a step's ops and replay them (cuda_backend) answers
// step_replay / step_record_begin / step_record_end; the defaults record nothing. A recorded step may
// depend on the step's shape (its key) only, never on the staged values.
//
// Sampling support: top_k_rows reduces logit rows in backend memory to their largest entries and their
// log-sum-exp, so that the sampler reads k values per row instead of copying the whole vocabulary to the
// host (engine/sampler.h, sample_top). It runs after a step, never inside a recorded one.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "core/config.h"
#include "core/weights.h"

namespace nibble {

// Where each token of a step goes: its sequence slot and its position in that sequence. Tokens of one
// sequence in a step are consecutive and in increasing position (a prefill chunk or a decode token).
// How the KV cache stores K and V: auto is the backend's default (float32 on the CPU, BF16 on CUDA);
// FP8 is E4M3 with a scale of 1 (saturating at ±448), as vLLM's fp8 cache without calibrated scales.
enum kv_cache_dtype : uint8_t { kv_cache_auto, kv_cache_f32, kv_cache_bf16, kv_cache_fp8 };
// "auto" | "f32" | "bf16" | "fp8" (vLLM's --kv-cache-dtype also accepts "fp8_e4m3"); fails otherwise.
kv_cache_dtype kv_cache_dtype_parse(const std::string& s);
const char* kv_cache_dtype_name(kv_cache_dtype d);
// Bytes per stored K or V element (auto must be resolved first).
int kv_cache_dtype_bytes(kv_cache_dtype d);

// The KV pool: n_slots tables of up to ceil(max_ctx / block_size) blocks, over n_blocks blocks. n_blocks
// = 0: n_slots × ceil(max_ctx / block_size) blocks, slot s's table preset to its own blocks s · bps ..
// (s + 1) · bps - 1 (bps blocks per slot); otherwise every table starts empty. block_size: a power of two.
struct kv_cache_shape {
    int32_t n_slots = 1;
    int32_t max_ctx = 1;
    int32_t block_size = 16;
    int32_t n_blocks = 0;
};
// Blocks a sequence of n positions needs.
inline int32_t kv_blocks_for(int32_t n, int32_t block_size) {
    return (n + block_size - 1) / block_size;
}
// The largest k backend::top_k_rows takes.
constexpr int32_t top_k_rows_max = 256;

struct step_tokens {
    std::span<const int32_t> ids;        // [T]
    std::span<const int32_t> slots;      // [T]
    std::span<const int32_t> positions;  // [T]
};

class backend {
  public:
    virtual ~backend() = default;
    virtual const char* name() const = 0;

    // Memory for n floats, owned by the backend until it is destroyed.
    virtual float* alloc(size_t n) = 0;
    // Copies n floats from backend memory to the host.
    virtual void to_host(const float* src, size_t n, float* dst) = 0;
    // For each row r of logits [rows, vocab] in backend memory, into host memory: values / ids [rows, k]
    // the row's k largest entries, by value descending then id ascending, NaN counted as -inf (entries
    // past the vocabulary, when k > vocab: -inf and id -1); lse [rows] log Σ exp(row) (NaN as -inf; -inf
    // for a row without a finite or +inf entry, +inf for a row holding +inf). 1 <= k <= top_k_rows_max,
    // vocab >= 1; fails otherwise. Synchronizes the backend.
    virtual void top_k_rows(const float* logits, int64_t rows, int64_t vocab, int32_t k, float* values,
                            int32_t* ids, float* lse) = 0;

    // Allocates the KV pool (see kv_cache_shape; any earlier one is dropped). Fails for a block size that
    // is not a power of two or a pool smaller than one table.
    virtual void kv_init(const model_config& c, const kv_cache_shape& shape, kv_cache_dtype dt) = 0;
    // The same with the preset tables: n_slots sequences of up to max_ctx positions each.
    void kv_init(const model_config& c, int32_t n_slots, int32_t max_ctx, kv_cache_dtype dt) {
        kv_init(c, kv_cache_shape{n_slots, max_ctx}, dt);
    }
    // Sets slot's block table (block ids in position order, at most ceil(max_ctx / block_size), each in
    // [0, n_blocks)); positions at or past blocks.size() × block_size are then outside the slot. Takes
    // effect from the next step.
    virtual void set_block_table(int32_t slot, std::span<const int32_t> blocks) = 0;
    // The dtype the KV cache was allocated with (auto resolved).
    virtual kv_cache_dtype kv_dtype() const = 0;

    // Moves every weight the model's ops will read into backend memory now, not on first use (the CUDA
    // backend uploads them as stored); the default does nothing. Returns the backend-memory bytes in use.
    virtual uint64_t prepare(const model_weights& w) { return 0; }

    // The device's free and total memory in bytes (false: not a device with its own memory, the CPU).
    virtual bool memory_info(uint64_t& free_bytes, uint64_t& total_bytes) { return false; }
    // Backend memory in use (weights, KV cache, buffers); 0 where not tracked.
    virtual uint64_t device_bytes() const { return 0; }

    // See "Step recording" above.
    virtual void begin_step(const step_tokens& s, std::span<const int32_t> logit_rows) {}
    // Replays the step recorded under `key` and returns true, or returns false when there is none.
    virtual bool step_replay(uint64_t key) { return false; }
    // Starts recording the ops that follow under `key` and returns true, or returns false (the ops then
    // run as they are issued). step_record_end finishes the recording and runs the recorded step once.
    virtual bool step_record_begin(uint64_t key) { return false; }
    virtual void step_record_end(uint64_t key) {}
    // Abandons a recording begun by step_record_begin (an op failed); the backend stays usable.
    virtual void step_record_abort() {}

    // out[t] = table[ids[t]] (table [vocab, hidden]).
    virtual void embed(const tensor_view& table, const step_tokens& s, float* out) = 0;
    // out = x / rms(x) * w per row (x and out may alias).
    virtual void rms_norm(const float* x, const tensor_view& w, int64_t rows, int64_t cols, float eps,
                          float* out) = 0;
    // x += y.
    virtual void add(float* x, const float* y, int64_t n) = 0;
    // The residual add fused with the next norm: x += y, then out = rms_norm(x) · w (out may not alias
    // x or y).
    virtual void add_rms_norm(float* x, const float* y, const tensor_view& w, int64_t rows, int64_t cols,
                              float eps, float* out) {
        add(x, y, rows * cols);
        rms_norm(x, w, rows, cols, eps, out);
    }
    // out [rows, w.n] = x [rows, w.k] · Wᵀ (+ bias), with the layer's exact scheme semantics
    // (activation quantization for W4A4 / FP8 included).
    virtual void linear(const float* x, int64_t rows, const linear_weight& w, float* out) = 0;
    // The q, k and v projections of one input: linear() three times, or one launch where the backend can.
    virtual void linear_qkv(const float* x, int64_t rows, const linear_weight& q, const linear_weight& k,
                            const linear_weight& v, float* out_q, float* out_k, float* out_v) {
        linear(x, rows, q, out_q);
        linear(x, rows, k, out_k);
        linear(x, rows, v, out_v);
    }
    // SwiGLU MLP input half: out [rows, gate.n] = silu(x · gateᵀ) · (x · upᵀ); up_scratch [rows, up.n] may
    // be overwritten.
    virtual void linear_swiglu(const float* x, int64_t rows, const linear_weight& gate,
                               const linear_weight& up, float* out, float* up_scratch) {
        linear(x, rows, gate, out);
        linear(x, rows, up, up_scratch);
        silu_mul(out, up_scratch, rows * gate.n, out);
    }
    // Norms and residual adds fused into the linears around them: model_forward issues a step of `rows`
    // tokens through the three ops below where fuses_norms(rows) says so (the default: never). Each has
    // the semantics of the unfused sequence, which the defaults compose; a backend overrides them where
    // it can fuse (cuda_backend: the weight-streaming GEMV normalizes x as it stages it, and adds its
    // result to the residual in place).
    virtual bool fuses_norms(int64_t rows) const { return false; }
    // h = rms_norm(x) · norm (h [rows, q.k]: scratch, written or not), then linear_qkv(h, ...).
    virtual void norm_linear_qkv(const float* x, const tensor_view& norm, float eps, int64_t rows, float* h,
                                 const linear_weight& q, const linear_weight& k, const linear_weight& v,
                                 float* out_q, float* out_k, float* out_v) {
        rms_norm(x, norm, rows, q.k, eps, h);
        linear_qkv(h, rows, q, k, v, out_q, out_k, out_v);
    }
    // h = rms_norm(x) · norm (scratch, as above), then linear_swiglu(h, ...).
    virtual void norm_linear_swiglu(const float* x, const tensor_view& norm, float eps, int64_t rows,
                                    float* h, const linear_weight& gate, const linear_weight& up, float* out,
                                    float* up_scratch) {
        rms_norm(x, norm, rows, gate.k, eps, h);
        linear_swiglu(h, rows, gate, up, out, up_scratch);
    }
    // x [rows, w.n] += linear(in) (scratch [rows, w.n], written or not).
    virtual void linear_add(const float* in, int64_t rows, const linear_weight& w, float* x, float* scratch) {
        linear(in, rows, w, scratch);
        add(x, scratch, rows * w.n);
    }
    // out = silu(gate) * up, elementwise over n values (out may alias gate).
    virtual void silu_mul(const float* gate, const float* up, int64_t n, float* out) = 0;
    // dst[i] = src[rows[i]] for rows of `cols` floats.
    virtual void gather_rows(const float* src, int64_t cols, std::span<const int32_t> rows, float* dst) = 0;
    // Per-head RMSNorm (Qwen3 q_norm/k_norm, when the tensors are non-empty) then RoPE, in place, on
    // q [T, n_heads·hd] and k [T, n_kv·hd]; then appends k and v [T, n_kv·hd] to the KV cache.
    virtual void rope_and_cache(const model_config& c, int32_t layer, const layer_weights& l,
                                const step_tokens& s, float* q, float* k, const float* v) = 0;
    // Causal attention of q [T, n_heads·hd] over each token's sequence up to its position (GQA).
    virtual void attention(const model_config& c, int32_t layer, const step_tokens& s, const float* q,
                           float* out) = 0;
    // Routed experts: out [T, hidden] = Σ_topk weight · expert(x), from router logits [T, n_experts]
    // (softmax, top-k, optional renormalisation: Qwen3-MoE semantics).
    virtual void moe(const model_config& c, const layer_weights& l, const float* x,
                     const float* router_logits, int64_t rows, float* out) = 0;
};

}  // namespace nibble
