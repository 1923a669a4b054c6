// The model forward's fused-norm sequence (backend::fuses_norms: norm_linear_qkv, linear_add,
// norm_linear_swiglu) computes what the unfused sequence computes. On the CPU the fused ops are the
// backend defaults, which compose the same ops in the same order, so every bundled model's logits must be
// bit-identical over a prefill and decode steps; the CUDA backend's fused kernels are tested against these
// ops in tests/cuda (norms_and_residual_adds_fused_into_linears, cuda_end_to_end).
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/forward.h"
#include "cpu/cpu_backend.h"
#include "loader/checkpoint.h"
#include "loader/model_loader.h"

using namespace nibble;

namespace {

// The CPU backend, taking the fused sequence for every step and counting the fused ops it was given.
class fusing_cpu_backend : public cpu_backend {
  public:
    int n_qkv = 0, n_swiglu = 0, n_add = 0;
    bool fuses_norms(int64_t) const override { return true; }
    void norm_linear_qkv(const float* x, const tensor_view& norm, float eps, int64_t rows, float* h,
                         const linear_weight& q, const linear_weight& k, const linear_weight& v, float* out_q,
                         float* out_k, float* out_v) override {
        ++n_qkv;
        cpu_backend::norm_linear_qkv(x, norm, eps, rows, h, q, k, v, out_q, out_k, out_v);
    }
    void norm_linear_swiglu(const float* x, const tensor_view& norm, float eps, int64_t rows, float* h,
                            const linear_weight& gate, const linear_weight& up, float* out,
                            float* up_scratch) override {
        ++n_swiglu;
        cpu_backend::norm_linear_swiglu(x, norm, eps, rows, h, gate, up, out, up_scratch);
    }
    void linear_add(const float* in, int64_t rows, const linear_weight& w, float* x,
                    float* scratch) override {
        ++n_add;
        cpu_backend::linear_add(in, rows, w, x, scratch);
    }
};

// Logits of a prefill of `ids`, then of 4 greedy decode steps.
std::vector<std::vector<float>> run(const loaded_model& m, backend& b, const std::vector<int32_t>& ids) {
    b.kv_init(m.config, 1, 128, kv_cache_f32);
    model_forward f(m.config, m.weights, b, 64, 64);
    const size_t V = size_t(m.config.vocab_size);
    std::vector<std::vector<float>> out;
    std::vector<int32_t> slots(ids.size(), 0), pos(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) pos[i] = int32_t(i);
    const int32_t last = int32_t(ids.size()) - 1;
    std::vector<float> lg(V);
    f.step(step_tokens{ids, slots, pos}, std::span<const int32_t>(&last, 1), lg.data());
    out.push_back(lg);
    for (int i = 0; i < 4; ++i) {
        const int32_t tok = int32_t(std::max_element(lg.begin(), lg.end()) - lg.begin());
        const int32_t slot = 0, p = int32_t(ids.size()) + i, row = 0;
        f.step(step_tokens{std::span<const int32_t>(&tok, 1), std::span<const int32_t>(&slot, 1),
                           std::span<const int32_t>(&p, 1)},
               std::span<const int32_t>(&row, 1), lg.data());
        out.push_back(lg);
    }
    return out;
}

}  // namespace

TEST(fused_norms, forward_matches_the_unfused_sequence_bit_for_bit) {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(std::string(NIBBLE_SOURCE_DIR) + "/models", ec))
        if (std::filesystem::exists(e.path() / "golden.json")) names.push_back(e.path().filename().string());
    ASSERT_FALSE(names.empty());
    for (const std::string& n : names) {
        const std::string dir = std::string(NIBBLE_SOURCE_DIR) + "/models/" + n;
        const loaded_model m = load_model(dir);
        const nlohmann::json g = nlohmann::json::parse(read_text_file(dir + "/golden.json"));
        const std::vector<int32_t> ids = g["prompts"][0]["ids"].get<std::vector<int32_t>>();
        cpu_backend plain;
        fusing_cpu_backend fusing;
        const auto want = run(m, plain, ids), got = run(m, fusing, ids);
        ASSERT_EQ(got.size(), want.size()) << n;
        for (size_t s = 0; s < want.size(); ++s) EXPECT_EQ(got[s], want[s]) << n << ": step " << s;
        const int L = int(m.weights.layers.size()), steps = int(want.size());
        int dense = 0;
        for (const layer_weights& l : m.weights.layers) dense += l.moe ? 0 : 1;
        EXPECT_EQ(fusing.n_qkv, L * steps) << n;
        EXPECT_EQ(fusing.n_add, (L + dense) * steps) << n;
        EXPECT_EQ(fusing.n_swiglu, dense * steps) << n;
    }
}
