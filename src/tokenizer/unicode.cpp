#include "tokenizer/unicode.h"

namespace nibble {

int utf8_seq_len(unsigned char b) {
    if (b < 0x80) return 1;
    if (b < 0xC2) return 0;
    if (b < 0xE0) return 2;
    if (b < 0xF0) return 3;
    if (b < 0xF5) return 4;
    return 0;
}

void utf8_append(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(char(cp));
    } else if (cp < 0x800) {
        out.push_back(char(0xC0 | (cp >> 6)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(char(0xE0 | (cp >> 12)));
        out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(char(0xF0 | (cp >> 18)));
        out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    }
}

uint32_t utf8_next(std::string_view s, size_t& i) {
    auto b = (unsigned char)s[i];
    int n = utf8_seq_len(b);
    if (n <= 1) {
        ++i;
        return b;
    }
    uint32_t cp = b & (0x7F >> n);
    for (int k = 1; k < n; ++k) cp = (cp << 6) | ((unsigned char)s[i + k] & 0x3F);
    i += n;
    return cp;
}

namespace {

// Valid range of the second byte after lead byte b (Unicode table 3-7).
inline bool second_byte_ok(unsigned char lead, unsigned char c) {
    switch (lead) {
        case 0xE0:
            return c >= 0xA0 && c <= 0xBF;
        case 0xED:
            return c >= 0x80 && c <= 0x9F;
        case 0xF0:
            return c >= 0x90 && c <= 0xBF;
        case 0xF4:
            return c >= 0x80 && c <= 0x8F;
        default:
            return c >= 0x80 && c <= 0xBF;
    }
}

// Length of the well-formed prefix of the sequence starting at s[i]: n (complete), or the number of
// bytes forming a valid incomplete prefix (>= 1; 1 also for an invalid lead byte). `complete` says which.
size_t scan_seq(std::string_view s, size_t i, bool& complete) {
    auto lead = (unsigned char)s[i];
    int n = utf8_seq_len(lead);
    complete = n == 1;
    if (n <= 1) return 1;
    size_t k = 1;
    for (; k < size_t(n) && i + k < s.size(); ++k) {
        auto c = (unsigned char)s[i + k];
        bool ok = k == 1 ? second_byte_ok(lead, c) : (c >= 0x80 && c <= 0xBF);
        if (!ok) return k;
    }
    complete = k == size_t(n);
    return k;
}

}  // namespace

bool utf8_is_valid(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        if ((unsigned char)s[i] < 0x80) {
            ++i;
            continue;
        }
        bool complete;
        size_t k = scan_seq(s, i, complete);
        if (!complete) return false;
        i += k;
    }
    return true;
}

std::string utf8_sanitize(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        if ((unsigned char)s[i] < 0x80) {
            out.push_back(s[i++]);
            continue;
        }
        bool complete;
        size_t k = scan_seq(s, i, complete);
        if (complete)
            out.append(s.substr(i, k));
        else
            out.append("\xEF\xBF\xBD");
        i += k;
    }
    return out;
}

size_t utf8_incomplete_tail(std::string_view s) {
    // Only the last 3 bytes can hold an unfinished sequence; find the last lead byte among them.
    size_t n = s.size();
    for (size_t back = 1; back <= 3 && back <= n; ++back) {
        auto b = (unsigned char)s[n - back];
        if (b >= 0x80 && b < 0xC0) continue;  // continuation byte: keep looking for the lead
        int len = utf8_seq_len(b);
        if (len <= int(back)) return 0;  // ASCII, invalid lead, or a complete sequence
        bool complete;
        size_t k = scan_seq(s, n - back, complete);
        return k == back ? back : 0;  // the whole tail must be a valid prefix
    }
    return 0;
}

const byte_alphabet& byte_level_alphabet() {
    static const byte_alphabet table = [] {
        byte_alphabet t{};
        t.cp_to_byte.fill(-1);
        uint32_t next = 0x100;
        for (int b = 0; b < 256; ++b) {
            bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            t.byte_to_cp[b] = printable ? uint32_t(b) : next++;
            t.cp_to_byte[t.byte_to_cp[b]] = int16_t(b);
        }
        return t;
    }();
    return table;
}

std::string byte_level_encode(std::string_view bytes) {
    const byte_alphabet& a = byte_level_alphabet();
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char b : bytes) utf8_append(out, a.byte_to_cp[b]);
    return out;
}

bool byte_level_decode(std::string_view text, std::string& out) {
    const byte_alphabet& a = byte_level_alphabet();
    out.clear();
    if (!utf8_is_valid(text)) return false;
    for (size_t i = 0; i < text.size();) {
        uint32_t cp = utf8_next(text, i);
        if (cp >= a.cp_to_byte.size() || a.cp_to_byte[cp] < 0) return false;
        out.push_back(char(a.cp_to_byte[cp]));
    }
    return true;
}

}  // namespace nibble
