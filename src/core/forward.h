// The model forward, written once over backend ops: embeddings, then per layer RMSNorm -> attention
// (q/k/v projections, Qwen3 q/k norms, RoPE, KV cache, GQA) -> residual -> RMSNorm -> SwiGLU MLP or
// routed experts -> residual; final norm and lm_head. Prefill chunks and decode tokens of several
// sequences go through the same step. Where the backend fuses norms for a step (backend::fuses_norms),
// each RMSNorm goes into the linears after it and each residual add into the linear before it.
//
// Step recording: a step's ops depend only on its shape (tokens T, logit rows R) once the backend has
// staged its ids, slots, positions and logit rows (begin_step), so a backend that records steps (CUDA
// graphs) replays one recording per (T, R) instead of issuing the ops again. Models with routed experts
// are never recorded (their routing runs on the host).
//
// Logits stay in backend memory ([R, vocab], logits()) from one step until the next: step() copies them
// all to the host; run() leaves them there, for top_k() (the sampler's candidate lists) and logits_row()
// (the full rows of the sequences that still need them).
#pragma once

#include <vector>

#include "core/backend.h"

namespace nibble {

class model_forward {
  public:
    // Scratch buffers are sized for up to max_tokens tokens per step, of which up to max_logit_rows
    // need logits.
    model_forward(const model_config& c, const model_weights& w, backend& b, int32_t max_tokens,
                  int32_t max_logit_rows);

    // Runs one step; computes logits only for the tokens listed in logit_rows (indices into the step),
    // written to host memory as [logit_rows.size(), vocab].
    void step(const step_tokens& s, std::span<const int32_t> logit_rows, float* logits_host);
    // Runs one step and leaves its logits in backend memory (until the next step).
    void run(const step_tokens& s, std::span<const int32_t> logit_rows);
    // The last step's logit rows: backend::top_k_rows of each (values, ids [R, k], lse [R], host memory).
    void top_k(int32_t k, float* values, int32_t* ids, float* lse);
    // Copies logit row r (< R) of the last step to the host ([vocab]).
    void logits_row(int32_t r, float* dst);
    // Logit rows the last step left in backend memory (R).
    int32_t n_logit_rows() const { return n_rows_; }

    const model_config& config() const { return c_; }
    int32_t max_tokens() const { return max_tokens_; }
    int32_t max_logit_rows() const { return max_logit_rows_; }
    // Step recording on (default) or off (eager: every op issued each step).
    void set_step_graphs(bool on) { graphs_ = on; }
    bool step_graphs() const { return graphs_; }

  private:
    // The ops of one step, from the staged tokens to the logits in backend memory.
    void issue(const step_tokens& s, std::span<const int32_t> logit_rows);
    // The final norm and lm_head over the logit rows of x_.
    void finish(std::span<const int32_t> logit_rows);

    const model_config& c_;
    const model_weights& w_;
    backend& b_;
    int32_t max_tokens_, max_logit_rows_;
    int32_t n_rows_ = 0;
    bool graphs_ = true, recordable_ = true;
    float *x_, *h_, *q_, *k_, *v_, *attn_, *gate_, *up_, *mlp_, *router_, *last_, *logits_;
};

}  // namespace nibble
