#include "core/forward.h"

#include <algorithm>

#include "core/error.h"

namespace nibble {

model_forward::model_forward(const model_config& c, const model_weights& w, backend& b, int32_t max_tokens,
                             int32_t max_logit_rows)
    : c_(c), w_(w), b_(b), max_tokens_(max_tokens), max_logit_rows_(max_logit_rows) {
    const size_t t = size_t(max_tokens), hq = size_t(c.n_heads * c.head_dim),
                 hkv = size_t(c.n_kv_heads * c.head_dim);
    const size_t hid = size_t(c.hidden_size), inter = size_t(std::max<int64_t>(c.intermediate_size, 1));
    x_ = b.alloc(t * hid);
    h_ = b.alloc(t * std::max(hid, hq));
    q_ = b.alloc(t * hq);
    k_ = b.alloc(t * hkv);
    v_ = b.alloc(t * hkv);
    attn_ = b.alloc(t * hq);
    gate_ = b.alloc(t * inter);
    up_ = b.alloc(t * inter);
    mlp_ = b.alloc(t * hid);
    router_ = b.alloc(t * size_t(std::max<int64_t>(c.n_experts, 1)));
    last_ = b.alloc(size_t(max_logit_rows) * hid);
    logits_ = b.alloc(size_t(max_logit_rows) * size_t(c.vocab_size));
    for (const layer_weights& l : w.layers) recordable_ = recordable_ && !l.moe;
}

void model_forward::step(const step_tokens& s, std::span<const int32_t> logit_rows, float* logits_host) {
    run(s, logit_rows);
    if (n_rows_ > 0) b_.to_host(logits_, size_t(n_rows_) * size_t(c_.vocab_size), logits_host);
}

void model_forward::top_k(int32_t k, float* values, int32_t* ids, float* lse) {
    b_.top_k_rows(logits_, n_rows_, c_.vocab_size, k, values, ids, lse);
}

void model_forward::logits_row(int32_t r, float* dst) {
    if (r < 0 || r >= n_rows_) fail("logit row {} of the last step's {}", r, n_rows_);
    const size_t V = size_t(c_.vocab_size);
    b_.to_host(logits_ + size_t(r) * V, V, dst);
}

void model_forward::run(const step_tokens& s, std::span<const int32_t> logit_rows) {
    const int64_t T = int64_t(s.ids.size());
    n_rows_ = 0;
    if (T == 0) return;
    if (T > max_tokens_) fail("step of {} tokens exceeds the {} this engine was sized for", T, max_tokens_);
    if (int64_t(logit_rows.size()) > max_logit_rows_)
        fail("{} logit rows requested, at most {}", logit_rows.size(), max_logit_rows_);
    const int64_t R = int64_t(logit_rows.size());
    b_.begin_step(s, logit_rows);
    const uint64_t key = uint64_t(T) << 32 | uint64_t(R);
    const bool record = graphs_ && recordable_;
    if (!record || !b_.step_replay(key)) {
        const bool recording = record && b_.step_record_begin(key);
        try {
            issue(s, logit_rows);
        } catch (...) {
            if (recording) b_.step_record_abort();
            throw;
        }
        if (recording) b_.step_record_end(key);
    }
    n_rows_ = int32_t(R);
}

void model_forward::issue(const step_tokens& s, std::span<const int32_t> logit_rows) {
    const int64_t T = int64_t(s.ids.size()), H = c_.hidden_size;
    const int32_t L = int32_t(w_.layers.size());
    const float eps = c_.rms_norm_eps;
    b_.embed(w_.embed, s, x_);
    // Norms fused into the linears after them and residual adds into the linears before (backend.h).
    if (b_.fuses_norms(T)) {
        for (int32_t li = 0; li < L; ++li) {
            const layer_weights& l = w_.layers[size_t(li)];
            b_.norm_linear_qkv(x_, l.attn_norm, eps, T, h_, l.q, l.k, l.v, q_, k_, v_);
            b_.rope_and_cache(c_, li, l, s, q_, k_, v_);
            b_.attention(c_, li, s, q_, attn_);
            b_.linear_add(attn_, T, l.o, x_, mlp_);
            if (l.moe) {
                b_.rms_norm(x_, l.ffn_norm, T, H, eps, h_);
                b_.linear(h_, T, l.router, router_);
                b_.moe(c_, l, h_, router_, T, mlp_);
                b_.add(x_, mlp_, T * H);
            } else {
                b_.norm_linear_swiglu(x_, l.ffn_norm, eps, T, h_, l.gate, l.up, gate_, up_);
                b_.linear_add(gate_, T, l.down, x_, mlp_);
            }
        }
        finish(logit_rows);
        return;
    }
    if (L > 0) b_.rms_norm(x_, w_.layers[0].attn_norm, T, H, eps, h_);
    for (int32_t li = 0; li < L; ++li) {
        const layer_weights& l = w_.layers[size_t(li)];
        // h_ holds rms_norm(x) · attn_norm here.
        b_.linear_qkv(h_, T, l.q, l.k, l.v, q_, k_, v_);
        b_.rope_and_cache(c_, li, l, s, q_, k_, v_);
        b_.attention(c_, li, s, q_, attn_);
        b_.linear(attn_, T, l.o, mlp_);
        b_.add_rms_norm(x_, mlp_, l.ffn_norm, T, H, c_.rms_norm_eps, h_);
        if (l.moe) {
            b_.linear(h_, T, l.router, router_);
            b_.moe(c_, l, h_, router_, T, mlp_);
        } else {
            b_.linear_swiglu(h_, T, l.gate, l.up, gate_, up_);
            b_.linear(gate_, T, l.down, mlp_);
        }
        if (li + 1 < L)
            b_.add_rms_norm(x_, mlp_, w_.layers[size_t(li) + 1].attn_norm, T, H, c_.rms_norm_eps, h_);
        else
            b_.add(x_, mlp_, T * H);
    }
    finish(logit_rows);
}

void model_forward::finish(std::span<const int32_t> logit_rows) {
    if (logit_rows.empty()) return;
    const int64_t H = c_.hidden_size;
    const int64_t R = int64_t(logit_rows.size());
    b_.gather_rows(x_, H, logit_rows, last_);
    b_.rms_norm(last_, w_.final_norm, R, H, c_.rms_norm_eps, last_);
    b_.linear(last_, R, w_.lm_head, logits_);
}

}  // namespace nibble
