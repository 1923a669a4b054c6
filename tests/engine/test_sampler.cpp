// The sampler: greedy, seeded determinism, distributions under temperature / min_p / top_k /
// top_p (empirical frequencies over seeded draws, with stated tolerances), penalties on
// hand-computed logits, min_tokens masking, logit_bias, logprobs.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <vector>

#include "engine/sampler.h"

using namespace nibble;

namespace {

sampling_params make_params(double temperature, uint64_t seed = 1234) {
    sampling_params p;
    p.temperature = temperature;
    p.seed = int64_t(seed);
    return p;
}

std::vector<float> log_probs(const std::vector<double>& p) {
    std::vector<float> l;
    for (double x : p) l.push_back(float(std::log(x)));
    return l;
}

// Frequencies of each token over n draws; the sampler is fresh (no penalties apply anyway).
std::map<int32_t, double> frequencies(const sampling_params& p, const std::vector<float>& logits, int n) {
    sampler s(p, {});
    std::map<int32_t, double> f;
    std::vector<float> scratch;
    for (int i = 0; i < n; i++) {
        scratch = logits;
        f[s.sample(scratch)] += 1.0;
    }
    for (auto& [id, x] : f) x /= n;
    return f;
}

double at(const std::map<int32_t, double>& f, int32_t id) {
    auto it = f.find(id);
    return it == f.end() ? 0.0 : it->second;
}

// With n = 20000 draws a frequency's standard deviation is at most 0.0036; 0.02 is > 5 sigma.
constexpr int n_draws = 20000;
constexpr double tol = 0.02;

}  // namespace

TEST(Sampler, GreedyPicksMaxLowestIdOnTies) {
    sampler s(make_params(0.0), {});
    EXPECT_TRUE(s.greedy());
    std::vector<float> l = {1.0f, 3.0f, 2.0f, 3.0f};
    EXPECT_EQ(s.sample(l), 1);
    l = {-INFINITY, -5.0f, -INFINITY};
    EXPECT_EQ(s.sample(l), 1);
    // Below 1e-5 is greedy too; 1e-3 is not (raised to 0.01, as vLLM).
    EXPECT_TRUE(sampler(make_params(1e-6), {}).greedy());
    EXPECT_FALSE(sampler(make_params(1e-3), {}).greedy());
    std::vector<float> empty;
    EXPECT_EQ(s.sample(empty), -1);
}

TEST(Sampler, TinyTemperatureIsNearlyGreedy) {
    // T = 1e-3 -> 0.01: logits 1 apart give odds e^-100.
    auto f = frequencies(make_params(1e-3), {0.0f, 1.0f, 0.5f}, 1000);
    EXPECT_EQ(at(f, 1), 1.0);
}

TEST(Sampler, SeededDeterminism) {
    std::mt19937 gen(7);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    std::vector<std::vector<float>> steps(200, std::vector<float>(1000));
    for (auto& v : steps)
        for (float& x : v) x = nd(gen);
    auto run = [&](uint64_t seed) {
        sampling_params p = make_params(1.0, seed);
        p.top_p = 0.9;
        p.top_k = 50;
        sampler s(p, {});
        std::vector<int32_t> out;
        for (auto v : steps) out.push_back(s.sample(v));
        return out;
    };
    EXPECT_EQ(run(42), run(42));
    EXPECT_NE(run(42), run(43));
    // Unseeded samplers draw from the process RNG: two of them differ.
    sampling_params p;
    sampler a(p, {}), b(p, {});
    std::vector<int32_t> ta, tb;
    for (auto v : steps) {
        auto w = v;
        ta.push_back(a.sample(v));
        tb.push_back(b.sample(w));
    }
    EXPECT_NE(ta, tb);
}

TEST(Sampler, TemperatureOneMatchesSoftmax) {
    auto f = frequencies(make_params(1.0), log_probs({0.1, 0.2, 0.3, 0.4}), n_draws);
    for (int i = 0; i < 4; i++) EXPECT_NEAR(at(f, i), 0.1 * (i + 1), tol) << i;
}

TEST(Sampler, TemperatureSharpensAndFlattens) {
    // p = (0.6, 0.4). T = 0.5: p^2 normalized = 0.36/0.52 = 0.6923. T = 2: sqrt(p) normalized =
    // 0.7746/1.4071 = 0.5505.
    auto logits = log_probs({0.6, 0.4});
    EXPECT_NEAR(at(frequencies(make_params(0.5), logits, n_draws), 0), 0.6923, tol);
    EXPECT_NEAR(at(frequencies(make_params(1.0), logits, n_draws), 0), 0.6, tol);
    EXPECT_NEAR(at(frequencies(make_params(2.0), logits, n_draws), 0), 0.5505, tol);
}

TEST(Sampler, TopKNeverLeavesTheTopK) {
    sampling_params p = make_params(1.0);
    p.top_k = 2;
    // Ids 3 and 7 are the top 2; the rest together hold most of the mass.
    std::vector<float> l(50, 1.0f);
    l[3] = 2.0f;
    l[7] = 1.5f;
    auto f = frequencies(p, l, n_draws);
    EXPECT_EQ(f.size(), 2u);
    // e^2 / (e^2 + e^1.5) = 0.6225
    EXPECT_NEAR(at(f, 3), 0.6225, tol);
    EXPECT_NEAR(at(f, 7), 0.3775, tol);
    // top_k = 1 is greedy; top_k >= vocab and -1 are off.
    p.top_k = 1;
    EXPECT_EQ(at(frequencies(p, l, 500), 3), 1.0);
    p.top_k = 50;
    EXPECT_EQ(frequencies(p, l, 5000).size(), 50u);
    p.top_k = -1;
    EXPECT_EQ(frequencies(p, l, 5000).size(), 50u);
}

TEST(Sampler, TopKKeepsTiesWithTheKth) {
    sampling_params p = make_params(1.0);
    p.top_k = 2;
    auto f = frequencies(p, {0.0f, 3.0f, 2.0f, 2.0f, 1.0f}, 6000);
    EXPECT_EQ(f.size(), 3u);
    EXPECT_GT(at(f, 2), 0.0);
    EXPECT_GT(at(f, 3), 0.0);
}

TEST(Sampler, TopPKeepsTheNucleus) {
    // Probabilities 0.05, 0.5, 0.15, 0.3 (ids 0..3). top_p = 0.75: sorted 0.5, 0.3 | 0.15 (mass
    // before it 0.8 >= 0.75) -> {1, 3} renormalized to 0.625 / 0.375.
    auto logits = log_probs({0.05, 0.5, 0.15, 0.3});
    sampling_params p = make_params(1.0);
    p.top_p = 0.75;
    auto f = frequencies(p, logits, n_draws);
    EXPECT_EQ(f.size(), 2u);
    EXPECT_NEAR(at(f, 1), 0.625, tol);
    EXPECT_NEAR(at(f, 3), 0.375, tol);
    // 0.85: the mass before 0.15 is 0.8 < 0.85, so it joins; before 0.05 it is 0.95.
    p.top_p = 0.85;
    f = frequencies(p, logits, n_draws);
    EXPECT_EQ(f.size(), 3u);
    EXPECT_NEAR(at(f, 1), 0.5 / 0.95, tol);
    EXPECT_NEAR(at(f, 2), 0.15 / 0.95, tol);
    // Tiny top_p keeps the most likely token only.
    p.top_p = 1e-6;
    EXPECT_EQ(at(frequencies(p, logits, 500), 1), 1.0);
}

TEST(Sampler, TopPOverALargeFlatVocabulary) {
    // 10000 equal logits, top_p = 0.5: exactly the 5000 lowest ids (ties broken by id) survive;
    // the nucleus is found in growing sorted batches (64, 256, 1024, 4096, all).
    sampling_params p = make_params(1.0);
    p.top_p = 0.5;
    std::vector<float> l(10000, 0.0f);
    sampler s(p, {});
    int32_t max_id = 0;
    for (int i = 0; i < 1000; i++) {  // P(max id <= 4900) = 0.98^1000 < 2e-9
        auto v = l;
        max_id = std::max(max_id, s.sample(v));
    }
    EXPECT_LT(max_id, 5000);
    EXPECT_GT(max_id, 4900);
}

TEST(Sampler, TopPMatchesAFullSort) {
    // 5000 random logits (more than the sampler sorts outright, so the binned search runs):
    // the drawn tokens stay inside the nucleus computed here by a full sort, and the most
    // likely token's frequency is its renormalized probability.
    std::mt19937 gen(11);
    std::normal_distribution<float> nd(0.0f, 2.0f);
    std::vector<float> l(5000);
    for (float& x : l) x = nd(gen);
    std::vector<int32_t> order(l.size());
    for (size_t i = 0; i < l.size(); i++) order[i] = int32_t(i);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
    std::vector<double> p(l.size());
    double z = 0.0;
    for (size_t i = 0; i < l.size(); i++) z += p[i] = std::exp(double(l[i]) - l[order[0]]);
    std::vector<bool> in(l.size(), false);
    double mass = 0.0, kept = 0.0;
    size_t n_nucleus = 0;
    for (int32_t id : order) {
        if (mass >= 0.7 * z) break;
        in[id] = true;
        mass += p[id];
        kept += p[id];
        n_nucleus++;
    }
    ASSERT_GT(n_nucleus, 300u);
    sampling_params sp = make_params(1.0);
    sp.top_p = 0.7;
    auto f = frequencies(sp, l, n_draws);
    for (auto [id, x] : f) EXPECT_TRUE(in[id]) << id;
    EXPECT_NEAR(at(f, order[0]), p[order[0]] / kept, tol);
}

TEST(Sampler, MinPThreshold) {
    // p = 0.5, 0.3, 0.15, 0.05: min_p = 0.2 keeps p >= 0.1 (ids 0..2); min_p = 0.5 keeps p >= 0.25.
    auto logits = log_probs({0.5, 0.3, 0.15, 0.05});
    sampling_params p = make_params(1.0);
    p.min_p = 0.2;
    auto f = frequencies(p, logits, n_draws);
    EXPECT_EQ(f.size(), 3u);
    EXPECT_NEAR(at(f, 2), 0.15 / 0.95, tol);
    p.min_p = 0.5;
    f = frequencies(p, logits, n_draws);
    EXPECT_EQ(f.size(), 2u);
    EXPECT_NEAR(at(f, 0), 0.5 / 0.8, tol);
    // min_p acts on the tempered distribution: at T = 0.5, p ~ 0.25, 0.09, 0.0225, 0.0025, so
    // min_p = 0.2 (threshold 0.05) keeps only ids 0 and 1.
    p = make_params(0.5);
    p.min_p = 0.2;
    EXPECT_EQ(frequencies(p, logits, 5000).size(), 2u);
}

TEST(Sampler, FiltersCompose) {
    // min_p 0.1 drops id 4 (0.02 < 0.1 x 0.4); top_k 3 drops id 3; top_p 0.6 over the
    // renormalized {0.4, 0.3, 0.2}/0.9 keeps 0.444 then 0.333 (mass before 0.444 < 0.6) -> {0, 1}.
    auto logits = log_probs({0.4, 0.3, 0.2, 0.08, 0.02});
    sampling_params p = make_params(1.0);
    p.min_p = 0.1;
    p.top_k = 3;
    p.top_p = 0.6;
    auto f = frequencies(p, logits, n_draws);
    EXPECT_EQ(f.size(), 2u);
    EXPECT_NEAR(at(f, 0), 4.0 / 7.0, tol);
}

TEST(Sampler, RepetitionPenaltyPromptAndOutput) {
    sampling_params p = make_params(0.0);
    p.repetition_penalty = 2.0;
    std::vector<int32_t> prompt = {1, 2, 2};
    sampler s(p, prompt);
    std::vector<float> l = {1.0f, 4.0f, -2.0f, 3.0f, 0.0f};
    s.apply_penalties(l);
    EXPECT_EQ(l, (std::vector<float>{1.0f, 2.0f, -4.0f, 3.0f, 0.0f}));  // once per distinct token
    s.accept(3);
    s.accept(3);
    l = {1.0f, 4.0f, -2.0f, 3.0f, 0.0f};
    s.apply_penalties(l);
    EXPECT_EQ(l, (std::vector<float>{1.0f, 2.0f, -4.0f, 1.5f, 0.0f}));
    // Greedy sees the penalized logits: id 1 (4 -> 2) and id 3 (3 -> 1.5) lose to id 0 (2.5).
    l = {2.5f, 4.0f, -2.0f, 3.0f, 0.0f};
    EXPECT_EQ(s.sample(l), 0);
}

TEST(Sampler, FrequencyAndPresencePenaltiesOutputOnly) {
    sampling_params p = make_params(0.0);
    p.frequency_penalty = 0.5;
    p.presence_penalty = 0.25;
    std::vector<int32_t> prompt = {0};
    sampler s(p, prompt);
    s.accept(1);
    s.accept(1);
    s.accept(2);
    std::vector<float> l = {1.0f, 1.0f, 1.0f, 1.0f};
    s.apply_penalties(l);
    // id 1: 1 - 0.5 x 2 - 0.25 = -0.25; id 2: 1 - 0.5 - 0.25 = 0.25; prompt id 0 untouched.
    EXPECT_FLOAT_EQ(l[0], 1.0f);
    EXPECT_FLOAT_EQ(l[1], -0.25f);
    EXPECT_FLOAT_EQ(l[2], 0.25f);
    EXPECT_FLOAT_EQ(l[3], 1.0f);
    EXPECT_EQ(s.n_generated(), 3);
    // Negative penalties encourage repetition.
    p.frequency_penalty = -1.0;
    p.presence_penalty = 0.0;
    sampler r(p, {});
    r.accept(2);
    l = {1.0f, 1.5f, 1.0f};
    EXPECT_EQ(r.sample(l), 2);
}

TEST(Sampler, RepetitionBeforeFrequency) {
    // vLLM order: repetition, then frequency: 4 / 2 - 1 = 1 (not (4 - 1) / 2 = 1.5).
    sampling_params p = make_params(0.0);
    p.repetition_penalty = 2.0;
    p.frequency_penalty = 1.0;
    sampler s(p, {});
    s.accept(0);
    std::vector<float> l = {4.0f};
    s.apply_penalties(l);
    EXPECT_FLOAT_EQ(l[0], 1.0f);
}

TEST(Sampler, MinTokensMasksStopIds) {
    sampling_params p = make_params(0.0);
    p.min_tokens = 2;
    p.eos_token_id = 3;
    p.extra_eos_token_ids = {4};
    p.stop_token_ids = {5};
    sampler s(p, {});
    const std::vector<float> l = {0.0f, 1.0f, 0.0f, 9.0f, 8.0f, 7.0f};
    auto v = l;
    EXPECT_EQ(s.sample(v), 1);
    EXPECT_EQ(v[3], -INFINITY);
    EXPECT_EQ(v[4], -INFINITY);
    EXPECT_EQ(v[5], -INFINITY);
    v = l;
    EXPECT_EQ(s.sample(v), 1);
    v = l;
    EXPECT_EQ(s.sample(v), 3);  // the third token may end the sequence
    // Sampling (not greedy) never draws a masked id either.
    sampling_params q = make_params(1.0);
    q.min_tokens = 1000;
    q.eos_token_id = 3;
    q.ignore_eos = true;  // still masked, as vLLM's all_stop_token_ids
    sampler t(q, {});
    for (int i = 0; i < 500; i++) {
        v = l;
        EXPECT_NE(t.sample(v), 3);
    }
}

TEST(Sampler, LogitBias) {
    sampling_params p = make_params(0.0);
    p.logit_bias = {{0, 10.0f}, {2, -100.0f}};
    sampler s(p, {});
    std::vector<float> l = {0.0f, 5.0f, 6.0f};
    EXPECT_EQ(s.sample(l), 0);
    sampling_params q = make_params(1.0);
    q.logit_bias = {{2, -100.0f}};
    auto f = frequencies(q, {0.0f, 0.0f, 0.0f}, 3000);
    EXPECT_EQ(at(f, 2), 0.0);
}

TEST(Sampler, LogprobOfRawLogits) {
    sampling_params p = make_params(0.0);
    p.logit_bias = {{0, 10.0f}};
    sampler s(p, {});
    std::vector<float> l = {0.0f, std::log(3.0f)};
    float lp = 0.0f;
    EXPECT_EQ(s.sample(l, &lp), 0);
    EXPECT_NEAR(lp, std::log(0.25), 1e-6);  // of the raw logits, before the bias
    std::vector<float> raw = {1.0f, 3.0f, 2.0f, 3.0f};
    EXPECT_NEAR(logsumexp(raw), std::log(std::exp(1.0) + 2 * std::exp(3.0) + std::exp(2.0)), 1e-5);
    auto top = top_logprobs(raw, 3);
    ASSERT_EQ(top.size(), 3u);
    EXPECT_EQ(top[0].token, 1);
    EXPECT_EQ(top[1].token, 3);
    EXPECT_EQ(top[2].token, 2);
    EXPECT_NEAR(top[0].logprob, 3.0f - logsumexp(raw), 1e-6);
    EXPECT_EQ(top_logprobs(raw, 10).size(), 4u);
    EXPECT_EQ(logsumexp(std::vector<float>{-INFINITY}), -INFINITY);
}

TEST(Sampler, AllMaskedFallsBackToArgmax) {
    sampling_params p = make_params(1.0);
    p.logit_bias = {{1, 1.0f}};
    sampler s(p, {});
    std::vector<float> l = {-INFINITY, -INFINITY};
    EXPECT_EQ(s.sample(l), 0);
}

TEST(Sampler, LargeVocabularySpeed) {
    // Qwen3's vocabulary. Reported, bounded loosely (shared CI machines): a sampling step must not
    // sort the vocabulary.
    std::mt19937 gen(3);
    std::normal_distribution<float> nd(0.0f, 4.0f);
    std::vector<float> logits(151936);
    for (float& x : logits) x = nd(gen);
    struct config {
        const char* name;
        double temperature, top_p;
        int32_t top_k;
        double min_p;
    };
    for (config c : {config{"greedy", 0.0, 1.0, 0, 0.0}, config{"T=1", 1.0, 1.0, 0, 0.0},
                     config{"T=0.6 top_p=0.95 top_k=20", 0.6, 0.95, 20, 0.0},
                     config{"T=1 top_p=0.9", 1.0, 0.9, 0, 0.0}, config{"T=1 min_p=0.1", 1.0, 1.0, 0, 0.1}}) {
        sampling_params p = make_params(c.temperature);
        p.top_p = c.top_p;
        p.top_k = c.top_k;
        p.min_p = c.min_p;
        p.repetition_penalty = 1.1;
        sampler s(p, std::vector<int32_t>(2000, 17));
        const int n = 50;
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < n; i++) {
            auto v = logits;
            s.sample(v);
        }
        double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / n;
        std::printf("  sample, vocab 151936, %s: %.3f ms (incl. a 600 KB copy)\n", c.name, ms);
        EXPECT_LT(ms, 100.0) << c.name;
    }
}
