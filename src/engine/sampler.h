// The token sampler of one sequence: its RNG and the token history the penalties need. Plain data
// (logits are a host span of fp32), no tensors.
//
// sample() follows vLLM's v1 sampler order (vllm/v1/sample/sampler.py), so a request behaves as it
// does under vLLM:
//   1. logit_bias is added; while fewer than min_tokens tokens were generated, eos ids, extra eos
//      ids and stop_token_ids are set to -inf (vLLM's logit-bias and min-tokens processors run
//      before the penalties);
//   2. penalties: repetition (tokens of the prompt and the output: positive logits divided by the
//      penalty, others multiplied), then frequency (minus penalty x count in the output), then
//      presence (minus penalty once per distinct output token);
//   3. greedy (temperature < 1e-5): the largest logit, lowest id on ties; done;
//   4. temperature (values in (0, 0.01) are raised to 0.01, as vLLM does);
//   5. min_p on the full tempered distribution: keep p >= min_p * p_max;
//   6. top_k on what is left (ties with the k-th logit are kept, as vLLM's mask `logit < kth` does);
//   7. top_p on the renormalized survivors: walking them by decreasing probability, keep a token
//      while the mass before it is < top_p (so at least one token is kept);
//   8. draw from the renormalized survivors.
// Why this order: it is the one users of vLLM tuned their parameters against. It matters where
// steps do not commute: penalties before greedy change the argmax; temperature before min_p and
// top_p reshapes what they measure; top_p after min_p / top_k measures mass among the survivors
// (top_k = 20, top_p = 0.95 keeps 95% of the top 20's mass, not of the vocabulary's). min_p and
// top_k commute with each other (both keep the most likely token).
// min_p and top_k are logit thresholds (p_i >= min_p p_max <=> l_i >= l_max + T ln min_p), so
// they cost a scan each and no exp (top_k keeps a k-entry heap); only top_p orders anything, and
// it bins the candidates by probability and sorts only the bin where the nucleus ends.
// Cost at vocab 152k (one core): greedy ~0.2 ms, T=1 ~0.85 ms (the exp pass), top_k 20 ~0.25 ms.
//
// The candidate path (sample_top): from the row's sorted top-K list and log-sum-exp alone
// (backend::top_k_rows, no copy of the row), the same token as sample() on the full row, when the list
// provably holds every token sample() could pick: no penalty, logit_bias or min_tokens mask changes a
// logit; greedy (the list's first id, argmax's lowest id on ties); or min_p / top_k's threshold lies
// strictly above the list's last value (ties with the k-th logit are kept, so the list must reach past
// them), or the last value is -inf, or the list is the whole vocabulary. Both paths then build the same
// candidates in id order (the same w = exp((l - m) / T), the same total) and share one tail (choose:
// top_p nucleus by more_likely, one uniform draw), so the token, the RNG consumed and the logprob (up to
// the rounding of lse) are identical.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <unordered_map>
#include <vector>

#include "engine/sampling_params.h"

namespace nibble {

struct token_logprob {
    int32_t token;
    float logprob;
};

// log(sum(exp(logits))), computed stably; -inf for an empty span or all -inf.
float logsumexp(std::span<const float> logits);
// The n most likely tokens under log_softmax(logits), most likely first (lowest id on ties).
std::vector<token_logprob> top_logprobs(std::span<const float> logits, int32_t n);

// The n first entries of a sorted top-K list (backend::top_k_rows) as logprobs l - lse.
std::vector<token_logprob> top_logprobs(std::span<const float> values, std::span<const int32_t> ids,
                                        float lse, int32_t n);

// A token that survived min_p / top_k: its unnormalized probability exp((l - l_max) / T), id and logit.
struct sample_candidate {
    float w;
    int32_t id;
    float l;
};

class sampler {
  public:
    // `prompt`: the prompt ids (the repetition penalty counts them). Copies what it needs of both.
    sampler(const sampling_params& params, std::span<const int32_t> prompt);

    // Picks the next token from `logits` ([n_vocab] fp32 of this sequence's last position), which is
    // used as scratch (overwritten), and records it as generated (see accept). With `logprob`,
    // also stores the chosen token's log-probability under the raw logits (vLLM's default
    // logprobs mode, raw_logprobs). Returns -1 only for an empty span.
    int32_t sample(std::span<float> logits, float* logprob = nullptr);

    // The candidate path (see the top): values / ids the row's largest logits, sorted by value
    // descending then id ascending (NaN as -inf), entries past the vocabulary left out; lse the row's
    // log-sum-exp; n_vocab the row's length. Returns sample()'s token on the full row (recorded as
    // generated; with `logprob`, its raw logit - lse) when the list provably holds every token it could
    // pick; otherwise std::nullopt, having changed nothing (sample the full row then).
    std::optional<int32_t> sample_top(std::span<const float> values, std::span<const int32_t> ids, float lse,
                                      int64_t n_vocab, float* logprob = nullptr);
    // The list length sample_top needs to stand a chance: 0 when it will decline whatever the list
    // (penalties in effect), 1 greedy, top_k + 1 with top_k, else `otherwise` (min_p may still cut).
    int32_t top_wanted(int32_t otherwise) const;

    // Steps 1-2 alone, in place (what sample() does before choosing; for tests and for logprobs
    // of the processed distribution).
    void apply_penalties(std::span<float> logits) const;

    // Records a generated token for the penalties and min_tokens (sample() already does this; for
    // tokens chosen elsewhere).
    void accept(int32_t token);

    int64_t n_generated() const { return n_generated_; }
    bool greedy() const { return greedy_; }

  private:
    int32_t draw(std::span<const float> logits);
    // What draw() does once the candidates (in id order, `total` their w summed in that order, m the
    // row max) are built: the top_p nucleus and the draw.
    int32_t choose(std::vector<sample_candidate>& c, float m, double total);
    // min_p's logit threshold under row max m (-inf without min_p).
    float min_p_threshold(float m) const;
    // Whether step 1-2 would change any logit now.
    bool penalties_active() const;
    double uniform();  // [0, 1), 53 random bits

    sampling_params params_;
    bool greedy_;
    float temperature_;
    std::vector<int32_t> stop_ids_;  // masked while n_generated_ < min_tokens
    std::mt19937_64 rng_;
    int64_t n_generated_ = 0;
    // Repetition penalty: the distinct tokens of prompt and output, and a bitmap of them by id.
    std::vector<int32_t> seen_;
    std::vector<uint64_t> seen_bits_;
    std::unordered_map<int32_t, int32_t> output_counts_;  // frequency / presence penalties
    // Scratch, kept across calls to avoid allocations.
    std::vector<sample_candidate> cand_;
    std::vector<float> heap_;
    std::vector<float> raw_;
};

}  // namespace nibble
