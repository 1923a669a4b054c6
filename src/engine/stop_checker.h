// When a sequence ends, and which of its text may be streamed now. Plain data, no tensors.
//
// push() takes each generated token with its decoded text piece (stream_decoder::push) and
// returns the text safe to emit. Rules, as vLLM (v1 scheduler check_stop, detokenizer
// check_stop_strings, include_stop_str_in_output = false):
//   - length: the token count reached max_tokens (or the context limit given at construction):
//     finish_reason "length"; the token's text is kept;
//   - otherwise, once more than min_tokens tokens were generated: the tokenizer's eos (unless
//     ignore_eos; stop_reason none), an extra generation_config eos id (unless ignore_eos) or a
//     stop_token_ids entry (stop_reason = the id) ends with "stop"; the token's text is dropped;
//   - stop strings, searched in the text once more than min_tokens tokens were generated, end with
//     "stop" and stop_reason = the string, also on the token that hits the length limit (vLLM's
//     detokenizer overrides "length" there). Text before the match is emitted, the stop string
//     and anything after it never. When several stop strings match, the one starting first wins
//     (the first listed among those starting there).
// Text that could still become the start of a stop string (the longest suffix that is a proper
// prefix of one) is held back until it cannot; when the sequence finishes without a stop string
// it is released. With valid UTF-8 pieces, every returned text is valid UTF-8 (a held suffix
// starts where a stop string starts, on a character boundary).
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sampling_params.h"

namespace nibble {

enum finish_reason : uint8_t {
    finish_reason_none,    // still running
    finish_reason_stop,    // eos, stop token or stop string
    finish_reason_length,  // max_tokens or the context limit
};
// OpenAI's spelling: "stop", "length"; "" for none.
const char* finish_reason_name(finish_reason r);

struct stop_result {
    std::string text;  // emit now (may be empty)
    finish_reason finish = finish_reason_none;
    // vLLM's stop_reason: the matched stop string or stop token id; both unset for eos and length.
    std::optional<std::string> stop_string;
    std::optional<int32_t> stop_token;
    bool finished() const { return finish != finish_reason_none; }
};

class stop_checker {
  public:
    // `max_new_tokens`: the context limit (max_model_len - prompt length); the token limit is the
    // smaller of it and params.max_tokens. Both must leave room for at least one token.
    explicit stop_checker(const sampling_params& params,
                          int64_t max_new_tokens = std::numeric_limits<int64_t>::max());

    // One generated token and its decoded text. Calling it after a finish is an error.
    // When it finishes by token or length, the caller appends stream_decoder::flush() (bytes of an
    // unfinished UTF-8 character, rarely any) to the text.
    stop_result push(int32_t token, std::string_view piece);
    // Releases the held-back text when the sequence ends for another reason (abort). "" after a
    // finish.
    std::string flush();

    int64_t n_generated() const { return n_generated_; }
    int64_t max_tokens() const { return max_tokens_; }
    finish_reason finished() const { return finish_; }

  private:
    // Earliest match of a stop string in `text` that ends after its first n_old bytes (the held
    // text, which matched nothing before; vLLM searches the new text the same way):
    // (position, index in stop_), position npos when none.
    std::pair<size_t, size_t> find_stop(std::string_view text, size_t n_old) const;
    // Length of the longest suffix of `text` that is a proper prefix of a stop string.
    size_t held_suffix(std::string_view text) const;

    std::vector<std::string> stop_;
    std::vector<int32_t> stop_token_ids_;  // stop_reason = the id
    int32_t eos_token_id_;                 // -1 when none or ignore_eos
    int64_t min_tokens_;
    int64_t max_tokens_;
    int64_t n_generated_ = 0;
    finish_reason finish_ = finish_reason_none;
    std::string held_;  // text not yet emitted: a proper prefix of some stop string
};

}  // namespace nibble
