// The model forward, written once over backend ops: embeddings, then per layer RMSNorm -> attention
// (q/k/v projections, Qwen3 q/k norms, RoPE, KV cache, GQA) -> residual -> RMSNorm -> SwiGLU MLP or
// routed experts -> residual; final norm and lm_head. Prefill chunks and decode tokens of several
// sequences go through the same step.
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

    const model_config& config() const { return c_; }
    int32_t max_tokens() const { return max_tokens_; }
    int32_t max_logit_rows() const { return max_logit_rows_; }

  private:
    const model_config& c_;
    const model_weights& w_;
    backend& b_;
    int32_t max_tokens_, max_logit_rows_;
    float *x_, *h_, *q_, *k_, *v_, *attn_, *gate_, *up_, *mlp_, *router_, *last_, *logits_;
};

}  // namespace nibble
