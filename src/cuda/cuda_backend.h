// The CUDA backend: the Backend interface (core/backend.h) on one GPU, tested op by op and end to end
// against the CPU backend (tests/cuda/test_cuda_backend.cpp).
//
// Memory: activations are float32 device buffers from alloc(); the KV cache is BF16 (auto), FP8 E4M3 or
// float32 with the CPU's paged layout ([layer][block][block_size][n_kv·hd] for K and for V; cuda_kv_cache
// in backend_ops.h); the block tables are mirrored on the device and uploaded by begin_step when changed.
// Weights are uploaded once (all of them by prepare() at load, else on first use), keyed by the host view's
// data pointer: packed formats (NVFP4, MXFP4, FP8) and BF16 weights stay as stored; F16/F32 weights, norms,
// biases and FP8 scales are converted once to float32 on the device.
//
// Linear: activations are fake-quantized for W4A4 / FP8 schemes, exactly as core/quant.cpp and
// cpu_quantize_activations: inside the weight-streaming kernel as it stages x where it runs (W4A4, FP8 per
// token or static; NIBBLE_FUSED_ACT=0 / set_fused_act(false): by a kernel before it), else by a kernel
// before the linear. Rows <= 16 (decode):
// NVFP4 and FP8 weights run on the tensor cores (cuda_linear_mma_parts) from 3 rows and dense BF16 weights on
// the BF16 GEMM below (the CUDA-core GEMV is FMA-bound there: BF16 batch 16 took 29.0 ms a step on CUDA
// cores, 9.5 ms on tensor cores, synthetic Qwen3-8B, H200, 2026-12-01); otherwise NVFP4, FP8 and BF16 weights
// stream through cuda_linear_stream on CUDA cores (cuda_nvfp4_linear for NVFP4 k that it does not take);
// q/k/v and gate/up share one launch. More rows, and what those do not take: FP8 W8A8 (per-token or static
// activations) with per-tensor or per-channel weight scales on the FP8 tensor cores through cuBLASLt
// (fp8_gemm.h: E4M3 activation codes and weight as stored, scales outside the GEMM; NIBBLE_FP8_GEMM=0 turns
// it off), everything else on BF16 tensor-core GEMMs with FP32 accumulation (linear_tensor_core: the weight
// exactly in BF16, its scales and the activations' scales outside the GEMM); F16/F32 weights: cublasSgemm
// (FP32, no TF32).
//
// MoE: routing is computed on the host from the copied router logits (the CPU's exact code), then each
// expert runs over its tokens with linear(); this synchronizes the stream, so it is not graph-capturable.
//
// Step staging and CUDA graphs: begin_step copies the step's ids, slots, positions and logit rows into
// one device buffer (through pinned host memory, one copy); the ops read them there. A step shape (key)
// seen for the second time, with at most k_max_graph_tokens tokens, is captured into a CUDA graph (the
// first run is the warm-up: weight uploads and scratch growth happen there) and replayed from then on.
// Anything that reallocates a buffer a graph points to (scratch or staging growth, kv_init) drops every
// graph. Inside a recording no op may synchronize, allocate or copy from the host: they fail instead.
//
// top_k_rows (after a step, not recordable): the kernels of sampling.cu write the small results to device
// memory, one async copy brings them to pinned host memory, then the stream is synchronized.
//
// Every op is issued on the backend's own stream; to_host and top_k_rows synchronize it.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/backend.h"
#include "core/kv_tables.h"
#include "cuda/backend_ops.h"
#include "cuda/fp8_gemm.h"
#include "cuda/linear_stream.h"

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
    void add_rms_norm(float* x, const float* y, const tensor_view& w, int64_t rows, int64_t cols, float eps,
                      float* out) override;
    uint64_t prepare(const model_weights& w) override;
    void begin_step(const step_tokens& s, std::span<const int32_t> logit_rows) override;
    bool step_replay(uint64_t key) override;
    bool step_record_begin(uint64_t key) override;
    void step_record_end(uint64_t key) override;
    void step_record_abort() override;
    // Graphs recorded so far (for tests and bench).
    size_t n_step_graphs() const { return graphs_.size(); }
    void linear(const float* x, int64_t rows, const linear_weight& w, float* out) override;
    void linear_qkv(const float* x, int64_t rows, const linear_weight& q, const linear_weight& k,
                    const linear_weight& v, float* out_q, float* out_k, float* out_v) override;
    void linear_swiglu(const float* x, int64_t rows, const linear_weight& gate, const linear_weight& up,
                       float* out, float* up_scratch) override;
    bool fuses_norms(int64_t rows) const override;
    void norm_linear_qkv(const float* x, const tensor_view& norm, float eps, int64_t rows, float* h,
                         const linear_weight& q, const linear_weight& k, const linear_weight& v, float* out_q,
                         float* out_k, float* out_v) override;
    void norm_linear_swiglu(const float* x, const tensor_view& norm, float eps, int64_t rows, float* h,
                            const linear_weight& gate, const linear_weight& up, float* out,
                            float* up_scratch) override;
    void linear_add(const float* in, int64_t rows, const linear_weight& w, float* x, float* scratch) override;
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
    // Bytes of weights uploaded so far (as stored; F16/F32 weights, norms, biases, FP8 scales as float32).
    uint64_t uploaded_weight_bytes() const { return uploaded_bytes_; }
    // Device memory this backend holds: weights, KV cache, activations and scratch.
    uint64_t device_bytes() const override;
    bool memory_info(uint64_t& free_bytes, uint64_t& total_bytes) override;
    cudaStream_t stream() const { return stream_; }

    // --- Tensor-core linear (linear_tensor_core), public part
    // Scratch bytes above which it cuts its work: GEMM outputs into row chunks (of at least 128 rows), FP8
    // block-scaled activations into groups of 128-row weight blocks. Default 512 MiB; tests make it small.
    void set_linear_scratch_limit(size_t bytes) { tc_scratch_limit_ = bytes; }
    // Weight-only NVFP4 / FP8 (tensor, channel) layers on FP16 operands (default) or the exact-ish BF16
    // split.
    void set_f16_prefill(bool on) { f16_prefill_ = on; }
    // FP8 W8A8 (per-token or static activations, per-tensor or per-channel weight scales) on the FP8 tensor
    // cores through cuBLASLt (on unless NIBBLE_FP8_GEMM=0; only on devices with them, sm_89+); off: the BF16
    // GEMMs as for the other formats. For A/B runs and tests; takes effect from the next linear.
    void set_fp8_gemm(bool on) { fp8_gemm_on_ = on; }
    // W4A4 / FP8 per-token / static activation fake quantization fused into the weight-streaming GEMV
    // (linear_stream.h, cuda_stream_act) instead of a separate launch before it: on unless
    // NIBBLE_FUSED_ACT=0; set_fused_act for tests and A/B runs; takes effect from the next linear.
    void set_fused_act(bool on) { fused_act_ = on; }
    bool fused_act() const { return fused_act_; }
    // Linears that ran on the FP8 GEMM so far (a shape cuBLASLt rejects runs on the BF16 GEMMs instead).
    uint64_t fp8_gemm_linears() const { return n_fp8_gemm_; }

  private:
    // --- Tensor-core linear (linear_tensor_core in cuda_backend.cpp)
    // out [rows, n] = xa · Wᵀ (+ bias) for every weight but dense F16/F32, xa already fake-quantized.
    void linear_tensor_core(const float* xa, int64_t rows, const linear_weight& w, const float* bias,
                            float* out);
    // The weight as exact BF16 values [n, k] for the GEMMs: the stored view (dense BF16), else decoded
    // into dst (n·k elements): NVFP4 e2m1 × e4m3 (global left out), MXFP4 as is, FP8 codes (scales left out);
    // f16: as exact FP16 values instead (NVFP4 and FP8 only).
    const void* bf16_weight(const linear_weight& w, uint16_t* dst, bool f16 = false);
    // Weight-only NVFP4 / FP8 (tensor, channel) prefill on FP16 operands (tc_input_f16); NIBBLE_PREFILL_F16=0
    // or set_f16_prefill(false): the BF16 hi + lo split instead (A/B runs, tests).
    bool f16_prefill_ = true;
    // The W8A8 case on cuda_fp8_gemm (codes and row scales, FP8 GEMM, cuda_linear_epilogue); false when the
    // layer is not that case or cuBLASLt does not take the shape (the BF16 path then writes all of out).
    bool linear_fp8(const float* xa, int64_t rows, const linear_weight& w, const float* bias, float* out);
    size_t tc_scratch_limit_ = size_t(512) << 20;
    bool fp8_gemm_on_ = true;        // NIBBLE_FP8_GEMM=0 / set_fp8_gemm(false): off
    bool fp8_tensor_cores_ = false;  // the device has them (sm_89+)
    uint64_t n_fp8_gemm_ = 0;
    std::unique_ptr<cuda_fp8_gemm> fp8_gemm_;  // made on first use (the cuBLASLt handle and plans)
    // --- end of the tensor-core linear

    // Uploads a linear layer's tensors exactly as linear() reads them.
    void upload_linear(const linear_weight& w);
    // Device copy of a view's raw bytes (uploaded on first use).
    const void* raw(const tensor_view& v);
    // Device copy of a linear layer's weight bytes: raw(w.weight), E2M1 codes (NVFP4, MXFP4) converted to
    // the pair layout the kernels read (nvfp4_layout.h) on first use. Every reader of those codes takes them
    // from here.
    const void* codes(const linear_weight& w);
    // Device float32 copy of a BF16/F16/F32 view (converted on first use).
    const float* f32(const tensor_view& v);
    // Device copy of a host float vector that lives as long as the weights (FP8 scales).
    const float* f32_vector(const std::vector<float>& v);
    // Reallocates g to at least `bytes` (zeroed when asked) when it is smaller; drops every step graph
    // unless the buffer is one no recorded step reads (graphed = false).
    struct growable;
    void grow(growable& g, size_t bytes, bool zero, bool graphed = true);
    // Growable scratch buffers (contents not kept across calls).
    float* scratch(int which, size_t n);
    // Device int32 copy of a host span in one of a few staging slots.
    const int32_t* ints(int which, std::span<const int32_t> v);
    // The staged device copy of a span begin_step saw (0 ids, 1 slots, 2 positions, 3 logit rows), else
    // a fresh upload through ints(which).
    const int32_t* step_ints(int which, std::span<const int32_t> v);
    void check_tokens(const step_tokens& s) const;
    // The activations a layer multiplies: x, or x fake-quantized per its scheme into scratch 0.
    const float* quantize_input(const float* x, int64_t rows, const linear_weight& w);
    // Fills the weight-streaming view of w (uploading it) when cuda_linear_stream takes it.
    bool stream_view(const linear_weight& w, cuda_stream_weight& out);
    // The activations the weight-streaming kernel takes for w's parts: x itself with the fake quantization
    // fused into the kernel (parts' act fields set) where it has that scheme (W4A4, FP8 per token or
    // static), else quantize_input(x, rows, w).
    const float* stream_input(const float* x, int64_t rows, const linear_weight& w, cuda_stream_part* parts,
                              int n_parts);
    // Whether a decode batch of `rows` over these parts goes to the tensor-core kernel (linear_mma.h).
    bool mma_takes(int64_t rows, const cuda_stream_part* parts) const;
    // The weight-streaming parts (views, biases, outputs) of q/k/v or gate/up for a decode batch of
    // `rows`, or false where those layers do not stream (more rows, BF16 on tensor cores, mixed schemes).
    bool qkv_parts(int64_t rows, const linear_weight& q, const linear_weight& k, const linear_weight& v,
                   float* out_q, float* out_k, float* out_v, cuda_stream_part* p);
    bool swiglu_parts(int64_t rows, const linear_weight& gate, const linear_weight& up, float* out,
                      float* up_scratch, cuda_stream_part* p);
    // A decode batch through the tensor-core kernel (linear_mma.h), for parts mma_takes() accepts.
    // exact_x: fake-quantized activations (kept to ~2^-21 there: the next layer quantizes what this one
    // outputs); weight-only: FP16 activations.
    void linear_mma(const float* x, int64_t rows, const cuda_stream_part* parts, int n_parts, bool exact_x);
    // Whether a decode batch of `rows` over w goes to the BF16 tensor-core GEMM (dense BF16 weights).
    bool bf16_on_tensor_cores(const linear_weight& w, int64_t rows) const;
    void not_recording(const char* what) const;
    void drop_graphs();

    int device_ = 0;
    cudaStream_t stream_ = nullptr;
    cublasHandle_t cublas_ = nullptr, cublas_tc_ = nullptr;
    std::vector<void*> owned_;
    std::unordered_map<const void*, const void*> raw_;
    std::unordered_map<const void*, const float*> f32_;
    std::unordered_set<const void*> pair_layout_;  // device copies codes() converted
    uint64_t uploaded_bytes_ = 0, device_bytes_ = 0;
    struct growable {
        void* p = nullptr;
        size_t bytes = 0;
    };
    growable scratch_[7], ints_[4];
    // top_k_rows: the kernels' scratch and their results ([values rows·k][ids rows·k][lse rows]) on the
    // device, and the pinned host copy of the results; never read by a recorded step.
    growable top_k_scratch_, top_k_out_;
    void* top_k_host_ = nullptr;
    size_t top_k_host_bytes_ = 0;
    // Step staging: [ids T][slots T][positions T][logit rows R] as int32, host side pinned.
    int32_t* step_host_ = nullptr;
    int32_t* step_dev_ = nullptr;
    size_t step_cap_ = 0;  // int32 elements of both
    cudaEvent_t step_copied_ = nullptr;
    const int32_t* staged_src_[4] = {};
    size_t staged_n_[4] = {};
    const int32_t* staged_dev_[4] = {};
    // Step graphs by key; how often each key was seen; whether a capture is in progress.
    std::unordered_map<uint64_t, cudaGraphExec_t> graphs_;
    std::unordered_map<uint64_t, int> seen_;
    bool recording_ = false;
    // Split-K workspace of the tensor-core linear (zeroed when allocated; its counters return to zero).
    growable mma_ws_;
    // cuda_fp8_gemm's workspace (cuda_fp8_gemm::workspace_bytes, allocated on the first FP8 GEMM).
    growable fp8_ws_;
    bool mma_off_ = false;      // NIBBLE_LINEAR=stream: CUDA-core kernels only (A/B runs)
    bool fused_act_ = true;     // set_fused_act
    bool fused_norm_ = true;    // fuses_norms: unless NIBBLE_FUSED_NORM=0
    bool gemv_trace_ = false;   // this backend began the GEMV trace (NIBBLE_GEMV_TRACE)
    int64_t mma_min_rows_ = 3;  // NIBBLE_LINEAR=mma: tensor cores from 1 row
    // Dense BF16 weights go to the BF16 tensor-core GEMM (linear_tensor_core) from this many rows
    // (NIBBLE_BF16_TC_MIN_ROWS for A/B runs; 17 = the CUDA-core GEMV for every decode batch).
    int64_t bf16_tc_min_rows_ = 3;
    bool fp16_x_ok_ = true;  // false inside moe(): stream_view's fp16_x
    // KV cache (layout in backend_ops.h, cuda_kv_cache), RoPE frequencies [hd/2], and the split-KV
    // attention's scratch (partial max, sum and output per split), all allocated by kv_init.
    cuda_kv_cache kv_;
    float* inv_freq_ = nullptr;
    float* attn_scratch_ = nullptr;
    int64_t attn_scratch_floats_ = 0;
    int n_sm_ = 0;  // SMs of the device, for cuda_attention_plan
    // The pool (K, V), the device block tables, RoPE frequencies and attention scratch, freed and
    // allocated again by each kv_init; the host tables (uploaded by begin_step while dirty).
    growable kv_k_, kv_v_, kv_tables_dev_, kv_freq_, kv_scratch_;
    kv_tables tables_;
    int32_t n_layers_ = 0;
    kv_cache_dtype kv_dtype_ = kv_cache_bf16;
    // Uploads the block tables begin_step found changed (stream ordered, before the step's ops).
    void upload_tables();
};

}  // namespace nibble
