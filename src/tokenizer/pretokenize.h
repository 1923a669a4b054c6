// The `pre_tokenizer` section of tokenizer.json: Split (regex or string, every HF delimiter
// behavior, invert), ByteLevel (add_prefix_space, use_regex with the GPT-2 pattern) and Sequence.
// Pre-tokenizing cuts normalized text into pieces; BPE then runs on each piece independently.
// Regexes run in PCRE2 with UTF+UCP: \p{..} come from PCRE2's Unicode tables, and \s matches
// U+0085 (as HF's Oniguruma does) but not U+FEFF (which JavaScript's \s, hence transformers.js,
// matches); the oracle corpus avoids those two code points.
#pragma once

#include <deque>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"

namespace nibble {

enum split_behavior {
    split_removed,
    split_isolated,
    split_merged_with_previous,
    split_merged_with_next,
    split_contiguous,
};

enum pretokenizer_kind { pretokenizer_split, pretokenizer_byte_level };

struct pretokenizer_step {
    pretokenizer_kind kind;
    regex pattern;  // split: the pattern; byte_level: the GPT-2 pattern (used when use_regex)
    split_behavior behavior = split_isolated;
    bool invert = false;
    bool add_prefix_space = false;  // byte_level
    bool use_regex = false;         // byte_level
};

// Pieces point into the caller's text or into `storage` (for pieces that had a prefix added).
struct pretokenized {
    std::vector<std::string_view> pieces;  // [n_pieces] non-empty, in text order
    std::deque<std::string> storage;
};

struct pretokenizer {
    std::vector<pretokenizer_step> steps;  // applied in order; empty = the whole text is one piece
    bool byte_level = false;               // a ByteLevel step is present: the model sees bytes

    // Cuts `text` (valid UTF-8, must outlive `out`) into pieces, appended to out.pieces.
    void apply(std::string_view text, pretokenized& out) const;
};

// Parses `j` (the "pre_tokenizer" value, may be null). Fails naming the field on unknown types and
// on regexes PCRE2 rejects (with its message and offset).
pretokenizer pretokenizer_parse(const nlohmann::json& j);

}  // namespace nibble
