// UTF-8 helpers and the GPT-2 byte <-> unicode alphabet used by byte-level BPE vocabularies.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace nibble {

// Length in bytes of the UTF-8 sequence announced by lead byte `b` (1..4), or 0 for a byte that
// cannot start a sequence (continuation byte, 0xC0/0xC1, 0xF5..0xFF).
int utf8_seq_len(unsigned char b);

// Appends the UTF-8 encoding of code point `cp` (must be <= 0x10FFFF, not a surrogate).
void utf8_append(std::string& out, uint32_t cp);

// Decodes the code point at s[i] and advances i. Input must be valid UTF-8.
uint32_t utf8_next(std::string_view s, size_t& i);

// True when `s` is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool utf8_is_valid(std::string_view s);

// Copies `s`, replacing each maximal ill-formed subpart with U+FFFD: the WHATWG TextDecoder /
// Rust String::from_utf8_lossy rule, so byte streams decode exactly as HF tokenizers and
// transformers.js decode them.
std::string utf8_sanitize(std::string_view s);

// Number of trailing bytes of `s` that form a valid but incomplete UTF-8 prefix (0..3): the part
// a streaming decoder must hold back until more bytes arrive.
size_t utf8_incomplete_tail(std::string_view s);

// The GPT-2 byte-level alphabet: byte b -> code point byte_to_cp[b]; printable bytes map to
// themselves, the other 68 to U+0100.. in increasing byte order (serving.md section 5.3).
struct byte_alphabet {
    std::array<uint32_t, 256> byte_to_cp;  // [256] code point for each byte
    std::array<int16_t, 324> cp_to_byte;   // [U+0000..U+0143] byte, -1 where not in the alphabet
};
const byte_alphabet& byte_level_alphabet();

// Maps raw bytes to their byte-level string (UTF-8 of the mapped code points).
std::string byte_level_encode(std::string_view bytes);
// Maps a byte-level string back to bytes; false if a character is outside the alphabet or the
// input is not valid UTF-8 (out is then unspecified).
bool byte_level_decode(std::string_view text, std::string& out);

}  // namespace nibble
