#include "tokenizer/jinja_lexer.h"

#include <cctype>

#include "core/error.h"
#include "tokenizer/jinja_value.h"

namespace nibble::jinja {

namespace {

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
bool is_name_start(char c) {
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}
bool is_name_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

class lexer {
  public:
    lexer(std::string src, const lexer_options& opt) : src_(std::move(src)), opt_(opt) {}

    std::vector<token> run() {
        size_t pos = 0;
        bool line_starting = true;
        bool strip_next = false;  // the previous tag ended with '-'
        while (pos < src_.size()) {
            if (strip_next) {
                while (pos < src_.size() && is_space(src_[pos])) ++pos;
                strip_next = false;
                continue;
            }
            size_t tag = find_tag(pos);
            std::string text = src_.substr(pos, tag - pos);
            if (tag < src_.size()) {
                char kind = src_[tag + 1];
                char sign = tag + 2 < src_.size() ? src_[tag + 2] : 0;
                if (sign == '-') {
                    size_t end = text.size();
                    while (end > 0 && is_space(text[end - 1])) --end;
                    text.resize(end);
                } else if (sign != '+' && opt_.lstrip_blocks && kind != '{') {
                    size_t l_pos = text.rfind('\n');
                    l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
                    if (l_pos > 0 || line_starting) {
                        bool blank = true;
                        for (size_t i = l_pos; i < text.size(); ++i)
                            blank = blank && (text[i] == ' ' || text[i] == '\t');
                        if (blank) text.resize(l_pos);
                    }
                }
            }
            if (!text.empty()) push(token_kind_text, text, pos);
            if (tag >= src_.size()) break;
            pos = tag;
            char kind = src_[tag + 1];
            size_t inner = tag + 2;
            if (inner < src_.size() && (src_[inner] == '-' || src_[inner] == '+')) ++inner;
            char close_sign = 0;
            if (kind == '#') {
                size_t end = src_.find("#}", inner);
                if (end == std::string::npos) fail_at(tag, "unterminated comment");
                if (end > inner && (src_[end - 1] == '-' || src_[end - 1] == '+')) close_sign = src_[end - 1];
                pos = end + 2;
            } else if (kind == '{') {
                push(token_kind_var_begin, "{{", tag);
                pos = lex_inside(inner, '}', close_sign);
                push(token_kind_var_end, "}}", pos - 2);
            } else {
                if (is_raw(inner)) {
                    pos = lex_raw(tag, inner, close_sign);
                } else {
                    push(token_kind_block_begin, "{%", tag);
                    pos = lex_inside(inner, '%', close_sign);
                    push(token_kind_block_end, "%}", pos - 2);
                }
            }
            size_t after = pos;
            if (close_sign == '-') {
                strip_next = true;
            } else if (close_sign != '+' && opt_.trim_blocks && kind != '{' && pos < src_.size() &&
                       src_[pos] == '\n') {
                ++pos;
            }
            line_starting = pos > after || (after >= 1 && src_[after - 1] == '\n');
        }
        push(token_kind_eof, "", src_.size());
        return std::move(tokens_);
    }

  private:
    std::string src_;
    lexer_options opt_;
    std::vector<token> tokens_;

    // Position of the next "{{", "{%" or "{#" at or after pos (src_.size() when none).
    size_t find_tag(size_t pos) const {
        while (true) {
            size_t p = src_.find('{', pos);
            if (p == std::string::npos || p + 1 >= src_.size()) return src_.size();
            char c = src_[p + 1];
            if (c == '{' || c == '%' || c == '#') return p;
            pos = p + 1;
        }
    }

    void location(size_t pos, int& line, int& col) const {
        line = 1;
        size_t line_start = 0;
        for (size_t i = 0; i < pos && i < src_.size(); ++i)
            if (src_[i] == '\n') {
                ++line;
                line_start = i + 1;
            }
        col = 1 + int(utf8_length(src_.substr(line_start, pos - line_start)));
    }

    [[noreturn]] void fail_at(size_t pos, const std::string& what) const {
        int line, col;
        location(pos, line, col);
        fail("template line {}, column {}: {}", line, col, what);
    }

    void push(token_kind kind, std::string text, size_t pos) {
        token t{kind, std::move(text), 1, 1};
        location(pos, t.line, t.col);
        tokens_.push_back(std::move(t));
    }

    size_t skip_ws(size_t p) const {
        while (p < src_.size() && is_space(src_[p])) ++p;
        return p;
    }

    bool word_at(size_t p, const char* w) const {
        size_t n = std::char_traits<char>::length(w);
        return src_.compare(p, n, w) == 0 && (p + n >= src_.size() || !is_name_char(src_[p + n]));
    }

    // After "{%[-+]": is this `raw -?%}`?
    bool is_raw(size_t p) const {
        p = skip_ws(p);
        if (!word_at(p, "raw")) return false;
        p = skip_ws(p + 3);
        if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
        return src_.compare(p, 2, "%}") == 0;
    }

    size_t lex_raw(size_t tag, size_t inner, char& close_sign) {
        size_t p = skip_ws(skip_ws(inner) + 3);
        bool strip_inner = src_[p] == '-';
        if (src_[p] == '-' || src_[p] == '+') ++p;
        size_t body = p + 2;
        if (strip_inner) body = skip_ws(body);
        for (size_t q = src_.find("{%", body); q != std::string::npos; q = src_.find("{%", q + 2)) {
            size_t r = q + 2;
            bool strip_before = r < src_.size() && src_[r] == '-';
            if (r < src_.size() && (src_[r] == '-' || src_[r] == '+')) ++r;
            r = skip_ws(r);
            if (!word_at(r, "endraw")) continue;
            r = skip_ws(r + 6);
            close_sign = 0;
            if (r < src_.size() && (src_[r] == '-' || src_[r] == '+')) close_sign = src_[r++];
            if (src_.compare(r, 2, "%}") != 0) fail_at(q, "expected '%}' after endraw");
            std::string text = src_.substr(body, q - body);
            if (strip_before)
                while (!text.empty() && is_space(text.back())) text.pop_back();
            if (!text.empty()) push(token_kind_text, text, body);
            return r + 2;
        }
        fail_at(tag, "unterminated raw block");
    }

    // Lexes expression tokens from p up to the closing "}}" or "%}" (close = '}' or '%');
    // returns the position after the closer; close_sign receives '-' or '+' when present.
    size_t lex_inside(size_t p, char close, char& close_sign) {
        int depth = 0;
        while (true) {
            p = skip_ws(p);
            if (p >= src_.size()) fail_at(p, close == '}' ? "expected '}}'" : "expected '%}'");
            char c = src_[p];
            if (depth == 0) {
                for (char sign : {'-', '+', '\0'}) {
                    size_t q = p + (sign ? 1 : 0);
                    if (sign && c != sign) continue;
                    if (q + 1 < src_.size() && src_[q] == close && src_[q + 1] == '}') {
                        close_sign = sign;
                        return q + 2;
                    }
                }
            }
            if (is_name_start(c)) {
                size_t s = p;
                while (p < src_.size() && is_name_char(src_[p])) ++p;
                push(token_kind_name, src_.substr(s, p - s), s);
            } else if (std::isdigit(static_cast<unsigned char>(c))) {
                p = lex_number(p);
            } else if (c == '\'' || c == '"') {
                p = lex_string(p);
            } else {
                static const char* two[] = {"//", "**", "==", "!=", "<=", ">="};
                std::string op(1, c);
                for (const char* t : two)
                    if (src_.compare(p, 2, t) == 0) op = t;
                if (op.size() == 1 && std::string("+-*/%~<>=()[]{},.:|").find(c) == std::string::npos)
                    fail_at(p, fmt::format("unexpected character '{}'", c));
                if (c == '(' || c == '[' || c == '{') ++depth;
                if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
                push(token_kind_op, op, p);
                p += op.size();
            }
        }
    }

    size_t lex_number(size_t p) {
        size_t s = p;
        bool after_dot =
            !tokens_.empty() && tokens_.back().kind == token_kind_op && tokens_.back().text == ".";
        auto digits = [&] {
            while (p < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[p])) || src_[p] == '_'))
                ++p;
        };
        digits();
        bool is_float = false;
        if (!after_dot && p + 1 < src_.size() && src_[p] == '.' &&
            std::isdigit(static_cast<unsigned char>(src_[p + 1]))) {
            is_float = true;
            ++p;
            digits();
        }
        if (!after_dot && p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
            size_t q = p + 1;
            if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
            if (q < src_.size() && std::isdigit(static_cast<unsigned char>(src_[q]))) {
                is_float = true;
                p = q;
                digits();
            }
        }
        std::string text;
        for (size_t i = s; i < p; ++i)
            if (src_[i] != '_') text += src_[i];
        push(is_float ? token_kind_float : token_kind_integer, text, s);
        return p;
    }

    size_t lex_string(size_t p) {
        size_t s = p;
        char quote = src_[p++];
        std::string out;
        while (true) {
            if (p >= src_.size()) fail_at(s, "unterminated string literal");
            char c = src_[p++];
            if (c == quote) break;
            if (c != '\\') {
                out += c;
                continue;
            }
            if (p >= src_.size()) fail_at(s, "unterminated string literal");
            char e = src_[p++];
            switch (e) {
                case 'n':
                    out += '\n';
                    break;
                case 't':
                    out += '\t';
                    break;
                case 'r':
                    out += '\r';
                    break;
                case 'b':
                    out += '\b';
                    break;
                case 'f':
                    out += '\f';
                    break;
                case 'v':
                    out += '\v';
                    break;
                case 'a':
                    out += '\a';
                    break;
                case '0':
                    out += '\0';
                    break;
                case '\\':
                    out += '\\';
                    break;
                case '\'':
                    out += '\'';
                    break;
                case '"':
                    out += '"';
                    break;
                case '\n':
                    break;  // line continuation
                case 'x':
                case 'u':
                case 'U': {
                    size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                    if (p + n > src_.size()) fail_at(p - 2, "truncated escape in string literal");
                    std::string hex = src_.substr(p, n);
                    for (char h : hex)
                        if (!std::isxdigit(static_cast<unsigned char>(h)))
                            fail_at(p - 2, "bad escape in string literal");
                    out += utf8_encode({uint32_t(std::stoul(hex, nullptr, 16))});
                    p += n;
                    break;
                }
                default:
                    out += '\\';
                    out += e;
            }
        }
        push(token_kind_string, out, s);
        return p;
    }
};

std::string normalize_newlines(const std::string& src) {
    std::string out;
    out.reserve(src.size());
    for (size_t i = 0; i < src.size(); ++i) {
        if (src[i] == '\r') {
            out += '\n';
            if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
        } else {
            out += src[i];
        }
    }
    if (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
}

}  // namespace

std::vector<token> jinja_tokenize(const std::string& source, const lexer_options& opt) {
    return lexer(normalize_newlines(source), opt).run();
}

}  // namespace nibble::jinja
