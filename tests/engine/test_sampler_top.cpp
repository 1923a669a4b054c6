// The sampler's candidate path (sample_top) against sample() on the full row: over seeds, parameters
// (greedy; temperature 0.6 / 1.0 / 1.5; top_k 0 / 1 / 20 / 50; top_p 0.8 / 0.95 / 1; min_p 0 / 0.05 /
// 0.2) and random rows (normal, heavy ties, -inf and NaN entries; vocab 1 to 5000), fed the top-K lists of
// the CPU reference (cpu_top_k_rows) for K 1 / 21 / 64 / 256. When it answers, the token is the full
// path's, the RNG advanced the same (the next full draws agree) and the logprob is the raw logit - lse;
// when it declines, the list could not prove it held every survivor (an independent threshold here).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "cpu/cpu_backend.h"
#include "engine/sampler.h"

using namespace nibble;

namespace {

constexpr float neg_inf = -std::numeric_limits<float>::infinity();

// kind 0: N(0, 3); 1: heavy ties (8 levels); 2: N(0, 2) with 30% -inf; 3: ties with a few NaN and -inf.
std::vector<float> random_row(std::mt19937& g, size_t v, int kind) {
    std::normal_distribution<float> nd(0.0f, kind == 0 ? 3.0f : 2.0f);
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    std::vector<float> l(v);
    for (float& x : l) {
        x = nd(g);
        if (kind == 1 || kind == 3) x = std::round(x);
        if (kind == 2 && u(g) < 0.3f) x = neg_inf;
        if (kind == 3 && u(g) < 0.05f) x = u(g) < 0.5f ? neg_inf : std::numeric_limits<float>::quiet_NaN();
    }
    return l;
}

struct case_params {
    double temperature, top_p, min_p;
    int32_t top_k;
};

// The full path's final logit threshold, computed independently (NaN never survives).
float full_threshold(const std::vector<float>& l, const case_params& c) {
    float m = neg_inf;
    for (float x : l)
        if (x > m) m = x;
    const float t = float(c.temperature);
    float thr = c.min_p > 0 ? float(double(m) + double(t) * std::log(c.min_p)) : neg_inf;
    if (c.top_k > 0 && size_t(c.top_k) < l.size()) {
        std::vector<float> s;
        for (float x : l)
            if (x >= thr) s.push_back(x);
        std::sort(s.begin(), s.end(), std::greater<float>());
        if (s.size() >= size_t(c.top_k)) thr = std::max(thr, s[size_t(c.top_k) - 1]);
    }
    return thr;
}

sampling_params make(const case_params& c, uint64_t seed) {
    sampling_params p;
    p.temperature = c.temperature;
    p.top_p = c.top_p;
    p.min_p = c.min_p;
    p.top_k = c.top_k;
    p.seed = int64_t(seed);
    return p;
}

}  // namespace

TEST(SamplerTop, MatchesTheFullRow) {
    std::mt19937 g(2024);
    const std::vector<double> temps = {0.0, 0.6, 1.0, 1.5}, top_ps = {0.8, 0.95, 1.0},
                              min_ps = {0.0, 0.05, 0.2};
    const std::vector<int32_t> top_ks = {0, 1, 20, 50}, ks = {1, 21, 64, 256};
    const std::vector<size_t> vocabs = {1, 7, 50, 300, 5000};
    std::vector<float> follow = random_row(g, 1000, 0);
    int n_taken = 0, n_declined = 0;
    for (int iter = 0; iter < 6000; ++iter) {
        const case_params c{temps[g() % temps.size()], top_ps[g() % top_ps.size()],
                            min_ps[g() % min_ps.size()], top_ks[g() % top_ks.size()]};
        const size_t v = vocabs[g() % vocabs.size()];
        const int kind = int(g() % 4);
        const int32_t k = ks[g() % ks.size()];
        std::vector<float> row = random_row(g, v, kind);
        std::vector<float> vals(static_cast<size_t>(k)), lse(1);
        std::vector<int32_t> ids(static_cast<size_t>(k));
        cpu_top_k_rows(row.data(), 1, int64_t(v), k, vals.data(), ids.data(), lse.data());
        const size_t n = std::min<size_t>(size_t(k), v);
        const std::span<const float> tv(vals.data(), n);
        const std::span<const int32_t> ti(ids.data(), n);
        const uint64_t seed = g();
        sampler full(make(c, seed), {}), top(make(c, seed), {});
        std::vector<float> scratch = row;
        float lp_full = 0, lp_top = 0;
        const int32_t want = full.sample(scratch, &lp_full);
        const std::optional<int32_t> got = top.sample_top(tv, ti, lse[0], int64_t(v), &lp_top);
        SCOPED_TRACE(testing::Message()
                     << "iter " << iter << " T " << c.temperature << " top_p " << c.top_p << " min_p "
                     << c.min_p << " top_k " << c.top_k << " vocab " << v << " kind " << kind << " K " << k);
        const bool has_nan = std::any_of(row.begin(), row.end(), [](float x) { return std::isnan(x); });
        if (got) {
            ++n_taken;
            ASSERT_EQ(*got, want);
            EXPECT_EQ(top.n_generated(), 1);
            if (!has_nan && std::isfinite(lp_full)) {
                EXPECT_NEAR(lp_top, lp_full, 1e-5);
            }
            // The same RNG state: the next draws of both (full rows, T from the params) agree.
            for (int j = 0; j < 3; ++j) {
                std::vector<float> a = follow, b = follow;
                ASSERT_EQ(full.sample(a), top.sample(b)) << "follow-up draw " << j;
            }
        } else {
            ++n_declined;
            EXPECT_EQ(top.n_generated(), 0);
            // Declining is right only where the list cannot prove it holds every survivor.
            ASSERT_GT(c.temperature, 0.0);
            const float last = tv[n - 1];
            EXPECT_LT(n, v);
            EXPECT_NE(last, neg_inf);
            EXPECT_LE(full_threshold(row, c), last);
        }
    }
    // Both outcomes were exercised.
    EXPECT_GT(n_taken, 1000);
    EXPECT_GT(n_declined, 300);
}

TEST(SamplerTop, TiesWithTheKthLogitPastTheListDecline) {
    // top_k 2 keeps every logit tied with the 2nd (ids 1..4): a list of 3 cannot hold them all.
    std::vector<float> row = {5.0f, 3.0f, 3.0f, 3.0f, 3.0f, 1.0f};
    sampling_params p;
    p.temperature = 1.0;
    p.top_k = 2;
    p.seed = 7;
    sampler s(p, {});
    std::vector<float> vals(3), lse(1);
    std::vector<int32_t> ids(3);
    cpu_top_k_rows(row.data(), 1, 6, 3, vals.data(), ids.data(), lse.data());
    EXPECT_FALSE(s.sample_top(vals, ids, lse[0], 6));
    // A list of 5 ends on the tied value (it cannot tell whether more ties follow); with the 6th value
    // (1, below the threshold 3) it can.
    vals.resize(6), ids.resize(6);
    cpu_top_k_rows(row.data(), 1, 6, 6, vals.data(), ids.data(), lse.data());
    EXPECT_FALSE(s.sample_top(std::span<const float>(vals.data(), 5), std::span<const int32_t>(ids.data(), 5),
                              lse[0], 7));
    EXPECT_TRUE(s.sample_top(vals, ids, lse[0], 7));
}

TEST(SamplerTop, PenaltiesNeedTheFullRow) {
    std::vector<float> row = {1.0f, 2.0f, 3.0f};
    std::vector<float> vals(3), lse(1);
    std::vector<int32_t> ids(3);
    cpu_top_k_rows(row.data(), 1, 3, 3, vals.data(), ids.data(), lse.data());
    sampling_params p;
    p.temperature = 0.0;
    EXPECT_EQ(sampler(p, {}).top_wanted(64), 1);
    EXPECT_EQ(*sampler(p, {}).sample_top(vals, ids, lse[0], 3), 2);
    sampling_params rep = p;
    rep.repetition_penalty = 1.2;
    sampler r(rep, std::vector<int32_t>{2});
    EXPECT_EQ(r.top_wanted(64), 0);
    EXPECT_FALSE(r.sample_top(vals, ids, lse[0], 3));
    sampling_params bias = p;
    bias.logit_bias = {{0, 5.0f}};
    EXPECT_FALSE(sampler(bias, {}).sample_top(vals, ids, lse[0], 3));
    sampling_params mt = p;
    mt.eos_token_id = 2;
    mt.min_tokens = 1;
    sampler m(mt, {});
    EXPECT_FALSE(m.sample_top(vals, ids, lse[0], 3));
    m.accept(0);  // min_tokens reached: the mask is off
    EXPECT_EQ(*m.sample_top(vals, ids, lse[0], 3), 2);
    sampling_params freq = p;
    freq.frequency_penalty = 0.5;
    sampler f(freq, {});
    EXPECT_EQ(*f.sample_top(vals, ids, lse[0], 3), 2);  // nothing generated yet: no penalty applies
    EXPECT_FALSE(f.sample_top(vals, ids, lse[0], 3));
    sampling_params tk = p;
    tk.temperature = 1.0;
    tk.top_k = 20;
    EXPECT_EQ(sampler(tk, {}).top_wanted(64), 21);
    tk.top_k = 0;
    EXPECT_EQ(sampler(tk, {}).top_wanted(64), 64);
}

TEST(SamplerTop, TopLogprobsFromTheList) {
    std::mt19937 g(5);
    std::vector<float> row = random_row(g, 500, 1);
    std::vector<float> vals(20), lse(1);
    std::vector<int32_t> ids(20);
    cpu_top_k_rows(row.data(), 1, 500, 20, vals.data(), ids.data(), lse.data());
    EXPECT_EQ(lse[0], logsumexp(row));  // the same formula (float exp, double sum)
    auto a = top_logprobs(row, 20), b = top_logprobs(vals, ids, lse[0], 20);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].token, b[i].token);
        EXPECT_EQ(a[i].logprob, b[i].logprob);
    }
}

TEST(SamplerTop, CpuTopKRowsReference) {
    // Sorted by value then id, NaN as -inf, padding past the vocabulary, lse of -inf rows.
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> row = {1.0f, nan, 3.0f, 1.0f, neg_inf, 3.0f, -0.0f};
    std::vector<float> vals(9), lse(1);
    std::vector<int32_t> ids(9);
    cpu_top_k_rows(row.data(), 1, 7, 9, vals.data(), ids.data(), lse.data());
    EXPECT_EQ(ids, (std::vector<int32_t>{2, 5, 0, 3, 6, 1, 4, -1, -1}));
    EXPECT_EQ(vals[4], 0.0f);
    EXPECT_EQ(vals[5], neg_inf);
    EXPECT_EQ(vals[8], neg_inf);
    EXPECT_NEAR(lse[0], std::log(2 * std::exp(1.0) + 2 * std::exp(3.0) + 1.0), 1e-6);
    std::vector<float> dead = {neg_inf, nan};
    cpu_top_k_rows(dead.data(), 1, 2, 1, vals.data(), ids.data(), lse.data());
    EXPECT_EQ(ids[0], 0);
    EXPECT_EQ(lse[0], neg_inf);
    EXPECT_THROW(cpu_top_k_rows(row.data(), 1, 7, 0, vals.data(), ids.data(), lse.data()), std::exception);
    EXPECT_THROW(cpu_top_k_rows(row.data(), 1, 7, 257, vals.data(), ids.data(), lse.data()), std::exception);
}
