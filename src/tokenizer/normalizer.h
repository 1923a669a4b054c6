// The `normalizer` section of tokenizer.json: NFC (utf8proc), Replace (literal string), Prepend,
// Lowercase, and Sequence of those. An absent/null normalizer is the identity.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace nibble {

enum normalizer_kind { normalizer_nfc, normalizer_replace, normalizer_prepend, normalizer_lowercase };

struct normalizer_step {
    normalizer_kind kind;
    std::string from;  // Replace: literal pattern; Prepend: unused
    std::string to;    // Replace: replacement; Prepend: the prefix
};

struct normalizer {
    std::vector<normalizer_step> steps;  // applied in order; empty = identity

    bool empty() const { return steps.empty(); }
    // Text must be valid UTF-8; returns the normalized text.
    std::string apply(std::string_view text) const;
};

// Parses `j` (the "normalizer" value, may be null). Fails naming the field on unknown types.
normalizer normalizer_parse(const nlohmann::json& j);

// NFC of valid UTF-8 text (fast path: text without code points >= U+0300 is returned unchanged).
std::string nfc(std::string_view text);

}  // namespace nibble
