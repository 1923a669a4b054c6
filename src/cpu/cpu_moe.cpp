// Routed experts on the CPU (Qwen3-MoE): routing as transformers does it, then each expert runs once
// over the tokens routed to it and its weighted output is added back, experts in index order.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/cpu_backend.h"

namespace nibble {

void cpu_backend::moe(const model_config& c, const layer_weights& l, const float* x,
                      const float* router_logits, int64_t rows, float* out) {
    const int64_t E = c.n_experts, K = c.n_experts_per_token, H = c.hidden_size;
    // Routing (Qwen3-MoE): softmax over all experts in float, top-k (ties: lower index), optional renorm.
    std::vector<std::vector<std::pair<int64_t, float>>> by_expert(
        static_cast<size_t>(E));  // expert -> (token, weight)
    std::vector<float> p(static_cast<size_t>(E));
    for (int64_t t = 0; t < rows; ++t) {
        const float* lg = router_logits + t * E;
        float m = -INFINITY, sum = 0;
        for (int64_t e = 0; e < E; ++e) m = std::fmax(m, lg[e]);
        for (int64_t e = 0; e < E; ++e) sum += (p[size_t(e)] = std::exp(lg[e] - m));
        for (float& v : p) v /= sum;
        std::vector<int64_t> idx(static_cast<size_t>(E));
        for (int64_t e = 0; e < E; ++e) idx[size_t(e)] = e;
        std::partial_sort(idx.begin(), idx.begin() + K, idx.end(), [&](int64_t a, int64_t b) {
            return p[size_t(a)] > p[size_t(b)] || (p[size_t(a)] == p[size_t(b)] && a < b);
        });
        float norm = 0;
        for (int64_t i = 0; i < K; ++i) norm += p[size_t(idx[size_t(i)])];
        for (int64_t i = 0; i < K; ++i) {
            float w = p[size_t(idx[size_t(i)])];
            by_expert[size_t(idx[size_t(i)])].push_back({t, c.norm_topk_prob ? w / norm : w});
        }
    }
    std::fill(out, out + rows * H, 0.0f);
    const int64_t I = c.moe_intermediate_size;
    std::vector<float> xe, g, u, y;
    for (int64_t e = 0; e < E; ++e) {  // experts in index order, as transformers adds them
        const auto& toks = by_expert[size_t(e)];
        if (toks.empty()) continue;
        const int64_t m = int64_t(toks.size());
        xe.resize(size_t(m * H));
        for (int64_t i = 0; i < m; ++i)
            std::copy(x + toks[size_t(i)].first * H, x + (toks[size_t(i)].first + 1) * H, xe.begin() + i * H);
        g.resize(size_t(m * I));
        u.resize(size_t(m * I));
        y.resize(size_t(m * H));
        linear(xe.data(), m, l.expert_gate[size_t(e)], g.data());
        linear(xe.data(), m, l.expert_up[size_t(e)], u.data());
        silu_mul(g.data(), u.data(), m * I, g.data());
        linear(g.data(), m, l.expert_down[size_t(e)], y.data());
        for (int64_t i = 0; i < m; ++i) {
            float w = toks[size_t(i)].second;
            float* o = out + toks[size_t(i)].first * H;
            for (int64_t j = 0; j < H; ++j) o[j] += y[size_t(i * H + j)] * w;
        }
    }
}

}  // namespace nibble
