#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"

namespace nibble {

namespace {

// Per-thread match state: one match block and a JIT stack large enough for long whitespace or
// letter runs (the default 32 KiB machine stack is not enough for 100k-character pieces).
struct match_scratch {
    pcre2_match_data* data = pcre2_match_data_create(16, nullptr);
    pcre2_jit_stack* stack = pcre2_jit_stack_create(64 * 1024, 16 * 1024 * 1024, nullptr);
    pcre2_match_context* ctx = pcre2_match_context_create(nullptr);
    match_scratch() { pcre2_jit_stack_assign(ctx, nullptr, stack); }
    ~match_scratch() {
        pcre2_match_context_free(ctx);
        pcre2_jit_stack_free(stack);
        pcre2_match_data_free(data);
    }
};

match_scratch& scratch() {
    thread_local match_scratch s;
    return s;
}

std::string pcre2_message(int code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(code, buf, sizeof buf);
    return std::string((const char*)buf);
}

}  // namespace

regex::regex(const std::string& pattern, bool literal, const std::string& what) : pattern_(pattern) {
    int err = 0;
    PCRE2_SIZE offset = 0;
    uint32_t options = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    pcre2_code* code =
        pcre2_compile((PCRE2_SPTR)pattern.data(), pattern.size(), options, &err, &offset, nullptr);
    if (!code)
        fail("{}: bad regex at offset {}: {} (pattern: {})", what, size_t(offset), pcre2_message(err),
             pattern);
    code_ = code;
    jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

regex::~regex() {
    if (code_) pcre2_code_free((pcre2_code*)code_);
}

regex::regex(regex&& o) noexcept : code_(o.code_), jit_(o.jit_), pattern_(std::move(o.pattern_)) {
    o.code_ = nullptr;
}

regex& regex::operator=(regex&& o) noexcept {
    if (this != &o) {
        if (code_) pcre2_code_free((pcre2_code*)code_);
        code_ = o.code_;
        jit_ = o.jit_;
        pattern_ = std::move(o.pattern_);
        o.code_ = nullptr;
    }
    return *this;
}

void regex::find_all(std::string_view text, std::vector<regex_match>& out) const {
    match_scratch& s = scratch();
    auto* code = (pcre2_code*)code_;
    size_t pos = 0;
    while (pos <= text.size()) {
        int rc =
            pcre2_match(code, (PCRE2_SPTR)text.data(), text.size(), pos, PCRE2_NO_UTF_CHECK, s.data, s.ctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) fail("regex match failed: {} (pattern: {})", pcre2_message(rc), pattern_);
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(s.data);
        size_t b = ov[0], e = ov[1];
        if (e > b) {
            out.push_back({b, e});
            pos = e;
        } else {
            if (b >= text.size()) break;
            // Empty match: step over one whole character.
            size_t step = 1;
            while (b + step < text.size() && ((unsigned char)text[b + step] & 0xC0) == 0x80) ++step;
            pos = b + step;
        }
    }
}

}  // namespace nibble
