// Added tokens (tokenizer.json "added_tokens"): matched in the text before normalization and BPE,
// leftmost-longest, with HF's flags: `lstrip`/`rstrip` absorb whitespace beside the match,
// `single_word` rejects matches touching a word character, `normalized` tokens are matched on the
// normalized text (a second pass) instead of the raw text.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace nibble {

struct added_token {
    int32_t id = -1;
    std::string content;
    bool special = false;
    bool lstrip = false;
    bool rstrip = false;
    bool single_word = false;
    bool normalized = false;
};

// Parses the "added_tokens" array (absent/null = none). Fails naming the entry on missing fields.
std::vector<added_token> added_tokens_parse(const nlohmann::json& j);

struct added_match {
    size_t begin;  // byte span in the searched text, whitespace absorbed by lstrip/rstrip included
    size_t end;
    int32_t index;  // index into the token list given to the matcher
};

// A byte trie over a subset of the added tokens.
class added_token_matcher {
  public:
    added_token_matcher() = default;
    // Indexes tokens[i] for every i where use[i]; later duplicates of a content are ignored.
    added_token_matcher(const std::vector<added_token>& tokens, const std::vector<bool>& use);
    bool empty() const { return n_tokens_ == 0; }
    // Appends the matches in `text` (valid UTF-8), left to right, non-overlapping.
    void find(std::string_view text, const std::vector<added_token>& tokens,
              std::vector<added_match>& out) const;

  private:
    struct node {
        int32_t token = -1;                              // index of the token ending here, -1 if none
        std::vector<std::pair<uint8_t, int32_t>> edges;  // sorted by byte
    };
    int32_t child(int32_t n, uint8_t b) const;
    std::vector<node> nodes_;      // [0] is the root
    std::vector<int32_t> root_{};  // [256] child of the root per first byte, -1 if none
    size_t n_tokens_ = 0;
};

// Unicode White_Space (Rust char::is_whitespace), used for lstrip/rstrip.
bool is_unicode_space(uint32_t cp);

}  // namespace nibble
