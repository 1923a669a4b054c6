// A Hugging Face `tokenizer.json` tokenizer (byte-level BPE: Qwen2/3, Llama-3.x, gpt-oss,
// DeepSeek-V3), plus the BOS/EOS rules of `tokenizer_config.json`.
//
// encode(): invalid UTF-8 is first replaced by U+FFFD per maximal ill-formed subpart (what a JS or
// Python caller of HF tokenizers sees: their strings cannot hold invalid UTF-8, and decoding bytes
// with TextDecoder / errors="replace" does exactly this). Then added tokens are matched on the raw
// text (leftmost-longest), the rest is normalized, pre-tokenized and run through BPE; with
// add_special the post-processor's ids (e.g. Llama-3's <|begin_of_text|>) are placed around it.
// `add_bos_token`/`add_eos_token` in tokenizer_config.json, when present, decide whether the BOS /
// EOS id is added (as transformers' Llama tokenizers do), overriding the post-processor.
//
// decode(): tokens through the tokenizer.json decoder; added tokens decode to their content, ids
// outside the vocabulary are skipped; ill-formed UTF-8 in the result becomes U+FFFD. No
// clean_up_tokenization_spaces is applied (vLLM's detokenizer does not apply it either).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/added_tokens.h"

namespace nibble {

struct tokenizer_impl;

class tokenizer {
  public:
    // Reads DIR/tokenizer.json (required) and DIR/tokenizer_config.json (optional). Errors name the
    // file and field.
    static tokenizer load(const std::string& dir);
    // Same from the files' text; `config_json` may be empty.
    static tokenizer from_json(const std::string& tokenizer_json, const std::string& config_json = "");

    // `parse_special` = false treats special added tokens in the text as plain text (non-special
    // added tokens still match). Thread-safe.
    std::vector<int32_t> encode(std::string_view text, bool add_special = true,
                                bool parse_special = true) const;
    // Always valid UTF-8.
    std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
    // Raw decoded bytes of one token (may be part of a UTF-8 character); "" for skipped or unknown
    // ids. `first`: the token starts the output (decoders that strip a leading space use it).
    std::string token_bytes(int32_t id, bool first, bool skip_special) const;

    int32_t token_id(std::string_view token) const;  // vocab or added token string; -1 if absent
    std::string token_text(int32_t id) const;        // the vocab/added string; "" if absent
    bool is_special(int32_t id) const;               // a special added token
    int32_t n_vocab() const;                         // 1 + the largest id (vocab and added tokens)
    const std::vector<added_token>& added_tokens() const;

    int32_t bos_id() const;  // -1 when the tokenizer has none
    int32_t eos_id() const;
    const std::string& bos_token() const;  // "" when none
    const std::string& eos_token() const;
    const std::string& pad_token() const;
    // The pre-tokenizer regexes run through PCRE2's JIT (false: the interpreter is used).
    bool regex_jit() const;

    tokenizer(tokenizer&&) noexcept;
    tokenizer& operator=(tokenizer&&) noexcept;
    ~tokenizer();

  private:
    tokenizer();
    std::unique_ptr<tokenizer_impl> impl_;
};

// The streaming detokenizer: push ids one at a time and get the newly completed text. Bytes of an
// incomplete UTF-8 character are held back until a later token completes them; flush() releases
// what is left (ill-formed parts as U+FFFD). The concatenation of all outputs equals
// decode(ids, skip_special). The tokenizer must outlive the decoder.
class stream_decoder {
  public:
    explicit stream_decoder(const tokenizer& tok, bool skip_special = true);
    std::string push(int32_t id);
    std::string flush();
    size_t n_pending() const { return pending_.size(); }  // bytes held back

  private:
    const tokenizer* tok_;
    bool skip_special_;
    bool first_ = true;
    std::string pending_;  // decoded bytes not yet returned: a valid, unfinished UTF-8 prefix
};

}  // namespace nibble
