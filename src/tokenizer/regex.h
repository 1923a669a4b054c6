// A compiled PCRE2 pattern (UTF + UCP, JIT when available) with a leftmost-match iterator.
// Patterns come from tokenizer.json Split pre-tokenizers; compile errors name the pattern and
// carry PCRE2's message and offset.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nibble {

struct regex_match {
    size_t begin;  // byte offsets into the searched text
    size_t end;
};

class regex {
  public:
    // `literal` compiles `pattern` as a plain string (Split {"String": ...}). `what` names the
    // pattern's origin in error messages.
    regex(const std::string& pattern, bool literal, const std::string& what);
    ~regex();
    regex(regex&&) noexcept;
    regex& operator=(regex&&) noexcept;

    // All non-overlapping matches, left to right; an empty match advances by one character.
    // `text` must be valid UTF-8. Thread-safe (per-thread match scratch).
    void find_all(std::string_view text, std::vector<regex_match>& out) const;
    bool jit() const { return jit_; }

  private:
    void* code_ = nullptr;  // pcre2_code_8*
    bool jit_ = false;
    std::string pattern_;
};

}  // namespace nibble
