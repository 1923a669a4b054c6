#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <mutex>
#include <numeric>

namespace nibble {

namespace {

constexpr float neg_inf = -std::numeric_limits<float>::infinity();

// Seeds for requests without a seed: one process-wide generator, touched once per sequence.
uint64_t process_seed() {
    static std::mutex mu;
    static std::mt19937_64 rng = [] {
        std::random_device rd;
        return std::mt19937_64((uint64_t(rd()) << 32) ^ rd());
    }();
    std::lock_guard lock(mu);
    return rng();
}

// Largest finite-or-inf value, lowest index on ties; -1 when every entry is -inf or NaN.
int32_t argmax(std::span<const float> v) {
    int32_t best = -1;
    float best_v = neg_inf;
    for (size_t i = 0; i < v.size(); i++) {
        if (v[i] > best_v) {
            best_v = v[i];
            best = int32_t(i);
        }
    }
    return best;
}

using candidate = sample_candidate;

// Strict order: more likely first, lower id first on ties.
bool more_likely(const candidate& a, const candidate& b) {
    return a.w > b.w || (a.w == b.w && a.id < b.id);
}

// How many of `c` (already sorted by more_likely) to keep: walking them in order, a candidate is
// kept while the mass before it is < target (so at least one is).
size_t nucleus_prefix(std::span<const candidate> c, double mass, double target) {
    for (size_t j = 0; j < c.size(); j++) {
        if (j > 0 && mass >= target) return j;
        mass += c[j].w;
    }
    return c.size();
}

// Moves the top_p nucleus to the front of `c` and returns its size (>= 1). Without a full sort:
// candidates are binned by ln(w_max / w) = (l_max - l) / T into buckets of width 1/64 in one pass;
// whole buckets are kept while their running mass stays below the target, and only the bucket
// where the target is crossed is sorted. (152k N(0, 4) logits, top_p 0.9: a whole sample() took
// 3.0 ms with growing nth_element batches, 1.1 ms binned, of which 0.85 ms are the exp pass.)
size_t nucleus_size(std::vector<candidate>& c, float l_max, float inv_t, double top_p, double total) {
    const double target = top_p * total;
    if (c.size() <= 256) {
        std::sort(c.begin(), c.end(), more_likely);
        return nucleus_prefix(c, 0.0, target);
    }
    constexpr int n_buckets = 2048;
    constexpr float per_unit = 64.0f;  // buckets per unit of ln(w_max / w); the last one is open
    auto bucket = [&](const candidate& x) {
        float d = (l_max - x.l) * inv_t * per_unit;
        return d < float(n_buckets - 1) ? int(d) : n_buckets - 1;
    };
    std::vector<double> mass(n_buckets, 0.0);
    for (const candidate& x : c) mass[bucket(x)] += x.w;
    double before = 0.0;
    int cross = 0;
    while (cross < n_buckets - 1 && before + mass[cross] < target) before += mass[cross++];
    // Kept whole: buckets < cross, front of c; the crossing bucket after them, then the rest.
    auto mid = std::partition(c.begin(), c.end(), [&](const candidate& x) { return bucket(x) < cross; });
    auto end = std::partition(mid, c.end(), [&](const candidate& x) { return bucket(x) == cross; });
    // `before` < target, so every whole bucket is in; only the crossing one needs an order.
    std::sort(mid, end, more_likely);
    return size_t(mid - c.begin()) + nucleus_prefix(std::span<const candidate>(mid, end), before, target);
}

}  // namespace

float logsumexp(std::span<const float> logits) {
    float m = neg_inf;
    for (float l : logits) m = std::max(m, l);
    if (m == neg_inf) return neg_inf;
    double s = 0.0;
    for (float l : logits) s += std::exp(l - m);
    return m + float(std::log(s));
}

std::vector<token_logprob> top_logprobs(std::span<const float> logits, int32_t n) {
    size_t k = std::min<size_t>(size_t(std::max(n, 0)), logits.size());
    std::vector<int32_t> idx(logits.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    float lse = logsumexp(logits);
    std::vector<token_logprob> out(k);
    for (size_t i = 0; i < k; i++) out[i] = {idx[i], logits[idx[i]] - lse};
    return out;
}

std::vector<token_logprob> top_logprobs(std::span<const float> values, std::span<const int32_t> ids,
                                        float lse, int32_t n) {
    const size_t k = std::min<size_t>(size_t(std::max(n, 0)), std::min(values.size(), ids.size()));
    std::vector<token_logprob> out(k);
    for (size_t i = 0; i < k; i++) out[i] = {ids[i], values[i] - lse};
    return out;
}

sampler::sampler(const sampling_params& params, std::span<const int32_t> prompt) : params_(params) {
    double t = params.temperature.value_or(sampling_default_temperature);
    greedy_ = t < sampling_greedy_eps;
    temperature_ = float(greedy_ ? 1.0 : std::max(t, sampling_min_temperature));
    if (params.eos_token_id >= 0) stop_ids_.push_back(params.eos_token_id);
    stop_ids_.insert(stop_ids_.end(), params.extra_eos_token_ids.begin(), params.extra_eos_token_ids.end());
    stop_ids_.insert(stop_ids_.end(), params.stop_token_ids.begin(), params.stop_token_ids.end());
    rng_.seed(params.seed ? uint64_t(*params.seed) : process_seed());
    if (params.repetition_penalty.value_or(1.0) != 1.0) {
        for (int32_t t : prompt) {
            if (t < 0) continue;
            size_t word = size_t(t) / 64;
            if (word >= seen_bits_.size()) seen_bits_.resize(word + 1, 0);
            uint64_t bit = uint64_t(1) << (t % 64);
            if (!(seen_bits_[word] & bit)) {
                seen_bits_[word] |= bit;
                seen_.push_back(t);
            }
        }
    }
}

void sampler::accept(int32_t token) {
    n_generated_++;
    if (token < 0) return;
    if (params_.repetition_penalty.value_or(1.0) != 1.0) {
        size_t word = size_t(token) / 64;
        if (word >= seen_bits_.size()) seen_bits_.resize(word + 1, 0);
        uint64_t bit = uint64_t(1) << (token % 64);
        if (!(seen_bits_[word] & bit)) {
            seen_bits_[word] |= bit;
            seen_.push_back(token);
        }
    }
    if (params_.presence_penalty != 0.0 || params_.frequency_penalty != 0.0) output_counts_[token]++;
}

void sampler::apply_penalties(std::span<float> logits) const {
    const size_t n = logits.size();
    for (const auto& [id, bias] : params_.logit_bias)
        if (id >= 0 && size_t(id) < n) logits[id] += bias;
    if (n_generated_ < params_.min_tokens) {
        for (int32_t id : stop_ids_)
            if (id >= 0 && size_t(id) < n) logits[id] = neg_inf;
    }
    const float rep = float(params_.repetition_penalty.value_or(1.0));
    if (rep != 1.0f) {
        for (int32_t t : seen_) {
            if (size_t(t) >= n) continue;
            float& l = logits[t];
            l = l > 0.0f ? l / rep : l * rep;
        }
    }
    const float freq = float(params_.frequency_penalty), pres = float(params_.presence_penalty);
    for (const auto& [t, count] : output_counts_) {
        if (size_t(t) >= n) continue;
        logits[t] -= freq * float(count);
        logits[t] -= pres;
    }
}

double sampler::uniform() {
    return double(rng_() >> 11) * 0x1.0p-53;
}

float sampler::min_p_threshold(float m) const {
    const double min_p = params_.min_p.value_or(sampling_default_min_p);
    return min_p > 0.0 ? float(double(m) + double(temperature_) * std::log(min_p)) : neg_inf;
}

bool sampler::penalties_active() const {
    return !params_.logit_bias.empty() || (n_generated_ < params_.min_tokens && !stop_ids_.empty()) ||
           !seen_.empty() || !output_counts_.empty();
}

int32_t sampler::top_wanted(int32_t otherwise) const {
    if (penalties_active()) return 0;
    if (greedy_) return 1;
    const int32_t top_k = params_.top_k.value_or(sampling_default_top_k);
    return top_k > 0 ? top_k + 1 : otherwise;
}

int32_t sampler::draw(std::span<const float> logits) {
    const size_t n = logits.size();
    float m = neg_inf;
    for (float l : logits) m = std::max(m, l);
    if (m == neg_inf) return std::max(argmax(logits), 0);

    // min_p and top_k as one logit threshold.
    float thr = min_p_threshold(m);
    const int32_t top_k = params_.top_k.value_or(sampling_default_top_k);
    if (top_k > 0 && size_t(top_k) < n) {
        // The k-th largest surviving logit, through a min-heap of k values: most entries fail the
        // comparison with the heap's top and cost one compare.
        heap_.clear();
        const size_t k = size_t(top_k);
        for (float l : logits) {
            if (!(l >= thr)) continue;
            if (heap_.size() < k) {
                heap_.push_back(l);
                std::push_heap(heap_.begin(), heap_.end(), std::greater<float>());
            } else if (l > heap_.front()) {
                std::pop_heap(heap_.begin(), heap_.end(), std::greater<float>());
                heap_.back() = l;
                std::push_heap(heap_.begin(), heap_.end(), std::greater<float>());
            }
        }
        if (heap_.size() == k) thr = std::max(thr, heap_.front());
    }

    std::vector<candidate>& c = cand_;
    c.clear();
    const float inv_t = 1.0f / temperature_;
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        float l = logits[i];
        if (!(l >= thr) || l == neg_inf) continue;
        float w = std::exp((l - m) * inv_t);
        c.push_back({w, int32_t(i), l});
        total += w;
    }
    if (c.empty()) return std::max(argmax(logits), 0);
    return choose(c, m, total);
}

int32_t sampler::choose(std::vector<candidate>& c, float m, double total) {
    size_t keep = c.size();
    const double top_p = params_.top_p.value_or(sampling_default_top_p);
    if (top_p < 1.0 && c.size() > 1) {
        keep = nucleus_size(c, m, 1.0f / temperature_, top_p, total);
        total = 0.0;
        for (size_t j = 0; j < keep; j++) total += c[j].w;
    }

    const double target = uniform() * total;
    double acc = 0.0;
    for (size_t j = 0; j < keep; j++) {
        acc += c[j].w;
        if (acc > target) return c[j].id;
    }
    for (size_t j = keep; j-- > 0;)  // rounding left target >= acc: the last candidate with mass
        if (c[j].w > 0.0f) return c[j].id;
    return c[0].id;
}

std::optional<int32_t> sampler::sample_top(std::span<const float> values, std::span<const int32_t> ids,
                                           float lse, int64_t n_vocab, float* logprob) {
    const size_t n = std::min(values.size(), ids.size());
    if (n == 0 || penalties_active()) return std::nullopt;
    const float m = values[0], last = values[n - 1];
    size_t pick = 0;  // index into the list of the chosen token
    if (!greedy_ && m != neg_inf) {
        float thr = min_p_threshold(m);
        const int32_t top_k = params_.top_k.value_or(sampling_default_top_k);
        // The full path's heap holds the k largest values >= thr when it fills (then values[k - 1] >=
        // thr is its top), else thr stays: either way thr = max(thr, values[k - 1]). A list shorter than
        // k ends above no threshold the heap could set, which the coverage test below catches.
        if (top_k > 0 && top_k < n_vocab && size_t(top_k) <= n)
            thr = std::max(thr, values[size_t(top_k) - 1]);
        // Survivors are the l >= thr, l > -inf; the list holds every value > last.
        if (!(int64_t(n) >= n_vocab || last == neg_inf || thr > last)) return std::nullopt;
        std::vector<candidate>& c = cand_;
        c.clear();
        const float inv_t = 1.0f / temperature_;
        for (size_t j = 0; j < n; j++) {
            const float l = values[j];
            if (!(l >= thr) || l == neg_inf) continue;
            c.push_back({std::exp((l - m) * inv_t), ids[j], l});
        }
        int32_t chosen = ids[0];  // no candidate: argmax, the lowest id among the largest
        if (!c.empty()) {
            std::sort(c.begin(), c.end(), [](const candidate& a, const candidate& b) { return a.id < b.id; });
            double total = 0.0;  // in id order, as draw() sums it
            for (const candidate& x : c) total += x.w;
            chosen = choose(c, m, total);
        }
        while (ids[pick] != chosen) pick++;
    }
    // Greedy, or a row of only -inf / NaN (argmax -1 -> token 0, the list's first id).
    const int32_t token = m == neg_inf ? 0 : ids[pick];
    if (logprob) *logprob = values[pick] - lse;
    accept(token);
    return token;
}

int32_t sampler::sample(std::span<float> logits, float* logprob) {
    if (logits.empty()) return -1;
    if (logprob) raw_.assign(logits.begin(), logits.end());
    apply_penalties(logits);
    int32_t token = greedy_ ? std::max(argmax(logits), 0) : draw(logits);
    if (logprob) *logprob = raw_[token] - logsumexp(raw_);
    accept(token);
    return token;
}

}  // namespace nibble
