#include "tokenizer/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>

#include "core/error.h"

namespace nibble {

std::string nfc(std::string_view text) {
    // Every code point below U+0300 is NFC-stable and none composes with a following one below
    // U+0300, so text whose bytes are all < 0xCC needs no work (ASCII, Latin-1, Latin Extended).
    bool simple = true;
    for (unsigned char c : text) {
        if (c >= 0xCC) {
            simple = false;
            break;
        }
    }
    if (simple) return std::string(text);
    utf8proc_uint8_t* out = nullptr;
    utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t*)text.data(), utf8proc_ssize_t(text.size()),
                                      &out, utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (n < 0) fail("normalizer NFC: {}", utf8proc_errmsg(n));
    std::string result((const char*)out, size_t(n));
    std::free(out);
    return result;
}

namespace {

std::string replace_all(std::string_view text, const std::string& from, const std::string& to) {
    if (from.empty()) return std::string(text);
    std::string out;
    size_t pos = 0;
    for (;;) {
        size_t hit = text.find(from, pos);
        if (hit == std::string_view::npos) break;
        out.append(text.substr(pos, hit - pos));
        out.append(to);
        pos = hit + from.size();
    }
    out.append(text.substr(pos));
    return out;
}

std::string lowercase(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    utf8proc_ssize_t i = 0, n = utf8proc_ssize_t(text.size());
    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t*)text.data() + i, n - i, &cp);
        if (k <= 0) fail("normalizer Lowercase: invalid UTF-8");
        utf8proc_uint8_t buf[4];
        utf8proc_ssize_t m = utf8proc_encode_char(utf8proc_tolower(cp), buf);
        out.append((const char*)buf, size_t(m));
        i += k;
    }
    return out;
}

void parse_into(const nlohmann::json& j, std::vector<normalizer_step>& steps) {
    if (j.is_null()) return;
    if (!j.is_object() || !j.contains("type"))
        fail("tokenizer.json: normalizer: expected an object with a \"type\"");
    std::string type = j["type"].get<std::string>();
    if (type == "Sequence") {
        if (!j.contains("normalizers") || !j["normalizers"].is_array())
            fail("tokenizer.json: normalizer Sequence: missing \"normalizers\" array");
        for (const auto& sub : j["normalizers"]) parse_into(sub, steps);
    } else if (type == "NFC") {
        steps.push_back({normalizer_nfc, "", ""});
    } else if (type == "Lowercase") {
        steps.push_back({normalizer_lowercase, "", ""});
    } else if (type == "Prepend") {
        steps.push_back({normalizer_prepend, "", j.at("prepend").get<std::string>()});
    } else if (type == "Replace") {
        const auto& pat = j.at("pattern");
        if (!pat.contains("String"))
            fail("tokenizer.json: normalizer Replace: only String patterns are supported, got {}",
                 pat.dump());
        steps.push_back(
            {normalizer_replace, pat["String"].get<std::string>(), j.at("content").get<std::string>()});
    } else {
        fail(
            "tokenizer.json: normalizer type \"{}\" is not supported (NFC, Replace, Prepend, Lowercase, "
            "Sequence)",
            type);
    }
}

}  // namespace

normalizer normalizer_parse(const nlohmann::json& j) {
    normalizer n;
    parse_into(j, n.steps);
    return n;
}

std::string normalizer::apply(std::string_view text) const {
    std::string cur(text);
    for (const normalizer_step& s : steps) {
        switch (s.kind) {
            case normalizer_nfc:
                cur = nfc(cur);
                break;
            case normalizer_replace:
                cur = replace_all(cur, s.from, s.to);
                break;
            case normalizer_prepend:
                if (!cur.empty()) cur = s.to + cur;
                break;
            case normalizer_lowercase:
                cur = lowercase(cur);
                break;
        }
    }
    return cur;
}

}  // namespace nibble
