#include "tokenizer/added_tokens.h"

#include <utf8proc.h>

#include <algorithm>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace nibble {

bool is_unicode_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

namespace {

// Rust's char::is_alphanumeric (approximated by the L and N categories) or '_'.
bool is_word_char(uint32_t cp) {
    if (cp == '_') return true;
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
    utf8proc_category_t c = utf8proc_category(utf8proc_int32_t(cp));
    return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
           (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
}

// Start of the character that ends just before byte offset i (i > 0).
size_t prev_char(std::string_view s, size_t i) {
    do --i;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80);
    return i;
}

}  // namespace

std::vector<added_token> added_tokens_parse(const nlohmann::json& j) {
    std::vector<added_token> out;
    if (j.is_null()) return out;
    if (!j.is_array()) fail("tokenizer.json: added_tokens is not an array");
    for (size_t i = 0; i < j.size(); ++i) {
        const auto& e = j[i];
        if (!e.is_object() || !e.contains("id") || !e.contains("content") || !e["id"].is_number_integer() ||
            !e["content"].is_string())
            fail("tokenizer.json: added_tokens[{}] needs an integer \"id\" and a string \"content\"", i);
        added_token t;
        t.id = e["id"].get<int32_t>();
        t.content = e["content"].get<std::string>();
        if (t.id < 0) fail("tokenizer.json: added_tokens[{}]: negative id {}", i, t.id);
        if (t.content.empty()) fail("tokenizer.json: added_tokens[{}]: empty content", i);
        t.special = e.value("special", false);
        t.lstrip = e.value("lstrip", false);
        t.rstrip = e.value("rstrip", false);
        t.single_word = e.value("single_word", false);
        t.normalized = e.value("normalized", !t.special);
        out.push_back(std::move(t));
    }
    return out;
}

added_token_matcher::added_token_matcher(const std::vector<added_token>& tokens,
                                         const std::vector<bool>& use) {
    nodes_.emplace_back();
    root_.assign(256, -1);
    for (size_t i = 0; i < tokens.size(); ++i) {
        if (!use[i]) continue;
        const std::string& s = tokens[i].content;
        int32_t n = 0;
        for (size_t k = 0; k < s.size(); ++k) {
            auto b = (uint8_t)s[k];
            int32_t c = child(n, b);
            if (c < 0) {
                c = int32_t(nodes_.size());
                nodes_.emplace_back();
                if (n == 0) {
                    root_[b] = c;
                } else {
                    auto& edges = nodes_[size_t(n)].edges;
                    auto it = std::lower_bound(edges.begin(), edges.end(), std::make_pair(b, int32_t(-1)));
                    edges.insert(it, {b, c});
                }
            }
            n = c;
        }
        if (nodes_[size_t(n)].token < 0) {
            nodes_[size_t(n)].token = int32_t(i);
            ++n_tokens_;
        }
    }
}

int32_t added_token_matcher::child(int32_t n, uint8_t b) const {
    if (n == 0) return root_[b];
    const auto& edges = nodes_[size_t(n)].edges;
    auto it = std::lower_bound(edges.begin(), edges.end(), std::make_pair(b, int32_t(-1)));
    return it != edges.end() && it->first == b ? it->second : -1;
}

void added_token_matcher::find(std::string_view text, const std::vector<added_token>& tokens,
                               std::vector<added_match>& out) const {
    if (n_tokens_ == 0) return;
    size_t floor = 0;  // end of the previous match: lstrip may not reach before it
    for (size_t i = 0; i < text.size();) {
        int32_t n = root_[(uint8_t)text[i]];
        if (n < 0) {
            ++i;
            continue;
        }
        int32_t best = -1;
        size_t best_end = 0;
        for (size_t k = i + 1;; ++k) {
            if (nodes_[size_t(n)].token >= 0) {
                best = nodes_[size_t(n)].token;
                best_end = k;
            }
            if (k >= text.size()) break;
            n = child(n, (uint8_t)text[k]);
            if (n < 0) break;
        }
        if (best < 0) {
            ++i;
            continue;
        }
        const added_token& t = tokens[size_t(best)];
        if (t.single_word) {
            bool ok = true;
            if (i > 0) {
                size_t p = prev_char(text, i);
                ok = !is_word_char(utf8_next(text, p));
            }
            if (ok && best_end < text.size()) {
                size_t p = best_end;
                ok = !is_word_char(utf8_next(text, p));
            }
            if (!ok) {
                ++i;
                continue;
            }
        }
        size_t b = i, e = best_end;
        if (t.lstrip) {
            while (b > floor) {
                size_t p = prev_char(text, b), q = p;
                if (!is_unicode_space(utf8_next(text, q))) break;
                b = p;
            }
        }
        if (t.rstrip) {
            while (e < text.size()) {
                size_t q = e;
                if (!is_unicode_space(utf8_next(text, q))) break;
                e = q;
            }
        }
        out.push_back({b, e, best});
        floor = e;
        i = e;
    }
}

}  // namespace nibble
