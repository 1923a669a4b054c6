// UTF-8 helpers and the byte-level alphabet.
#include <gtest/gtest.h>

#include "tokenizer/normalizer.h"
#include "tokenizer/unicode.h"

namespace {

TEST(tokenizer_unicode, byte_level_alphabet_matches_gpt2) {
    const nibble::byte_alphabet& a = nibble::byte_level_alphabet();
    EXPECT_EQ(a.byte_to_cp[' '], 0x120u);   // Ġ
    EXPECT_EQ(a.byte_to_cp['\n'], 0x10Au);  // Ċ
    EXPECT_EQ(a.byte_to_cp['\t'], 0x109u);  // ĉ
    EXPECT_EQ(a.byte_to_cp[0x7F], 0x121u);
    EXPECT_EQ(a.byte_to_cp[0xAD], 0x143u);
    EXPECT_EQ(a.byte_to_cp['A'], uint32_t('A'));
    EXPECT_EQ(a.byte_to_cp[0xE9], 0xE9u);
    for (int b = 0; b < 256; ++b) EXPECT_EQ(a.cp_to_byte[a.byte_to_cp[b]], b);
    std::string raw;
    EXPECT_TRUE(nibble::byte_level_decode(nibble::byte_level_encode("h\xC3\xA9llo \n"), raw));
    EXPECT_EQ(raw, "h\xC3\xA9llo \n");
    EXPECT_FALSE(nibble::byte_level_decode("\xE4\xBD\xA0", raw));  // 你 is not in the alphabet
}

TEST(tokenizer_unicode, sanitize_replaces_maximal_subparts) {
    EXPECT_EQ(nibble::utf8_sanitize("ok"), "ok");
    EXPECT_EQ(nibble::utf8_sanitize("\xFF"), "\xEF\xBF\xBD");
    // E2 82 is one maximal subpart (one U+FFFD); F0 80 is two (80 cannot follow F0).
    EXPECT_EQ(nibble::utf8_sanitize("\xE2\x82z"), "\xEF\xBF\xBDz");
    EXPECT_EQ(nibble::utf8_sanitize("\xF0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");
    EXPECT_EQ(nibble::utf8_sanitize("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
    EXPECT_EQ(nibble::utf8_sanitize("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong
    EXPECT_FALSE(nibble::utf8_is_valid("\xF4\x90\x80\x80"));                                   // > U+10FFFF
    EXPECT_TRUE(nibble::utf8_is_valid("\xF4\x8F\xBF\xBF"));
}

TEST(tokenizer_unicode, incomplete_tail) {
    EXPECT_EQ(nibble::utf8_incomplete_tail(""), 0u);
    EXPECT_EQ(nibble::utf8_incomplete_tail("a"), 0u);
    EXPECT_EQ(nibble::utf8_incomplete_tail("a\xE2"), 1u);
    EXPECT_EQ(nibble::utf8_incomplete_tail("a\xE2\x82"), 2u);
    EXPECT_EQ(nibble::utf8_incomplete_tail("a\xE2\x82\xAC"), 0u);
    EXPECT_EQ(nibble::utf8_incomplete_tail("\xF0\x9F\x98"), 3u);
    EXPECT_EQ(nibble::utf8_incomplete_tail("\xED\xA0"), 0u);  // can never complete
    EXPECT_EQ(nibble::utf8_incomplete_tail("\x82"), 0u);
}

TEST(tokenizer_unicode, nfc) {
    EXPECT_EQ(nibble::nfc("caf\x65\xCC\x81"), "caf\xC3\xA9");
    EXPECT_EQ(nibble::nfc("plain ascii"), "plain ascii");
    EXPECT_EQ(nibble::nfc("\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB"), "\xED\x95\x9C");  // Hangul jamo -> 한
}

}  // namespace
