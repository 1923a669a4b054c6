// The `decoder` section of tokenizer.json, applied token by token so the streaming detokenizer and
// decode() share it: ByteLevel, Replace (string), ByteFallback, Fuse, Strip, Metaspace, Sequence.
// A token's decoded piece is raw bytes: it may end inside a UTF-8 character (the caller fixes up
// UTF-8 over the concatenation, replacing ill-formed parts with U+FFFD).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace nibble {

enum decoder_kind {
    decoder_byte_level,
    decoder_replace,
    decoder_byte_fallback,
    decoder_strip,
    decoder_metaspace,
};

struct decoder_step {
    decoder_kind kind;
    std::string from{};       // replace: pattern; strip: the character stripped; metaspace: replacement
    std::string to{};         // replace: replacement
    int n_start = 0;          // strip: characters removed at the start
    int n_stop = 0;           // strip: characters removed at the end
    bool first_only = false;  // strip after Fuse / metaspace prefix: only the first token is stripped
};

struct decoder {
    std::vector<decoder_step> steps;  // in order; empty = no decoder (tokens joined by spaces, as HF)
    bool present = false;             // a decoder was declared

    // Decoded bytes of one vocabulary token; `first` is true for the first token of the output.
    std::string apply(const std::string& token, bool first) const;
};

// Parses `j` (the "decoder" value, may be null); fails naming unsupported types.
decoder decoder_parse(const nlohmann::json& j);

}  // namespace nibble
