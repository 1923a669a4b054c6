#include "tokenizer/decoder.h"

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace nibble {

namespace {

void replace_all(std::string& s, const std::string& from, const std::string& to) {
    if (from.empty()) return;
    for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
        s.replace(pos, from.size(), to);
}

void parse_into(const nlohmann::json& j, decoder& d, bool& fused) {
    if (j.is_null()) return;
    if (!j.is_object() || !j.contains("type"))
        fail("tokenizer.json: decoder: expected an object with a \"type\"");
    std::string type = j["type"].get<std::string>();
    if (type == "Sequence") {
        if (!j.contains("decoders") || !j["decoders"].is_array())
            fail("tokenizer.json: decoder Sequence: missing \"decoders\" array");
        for (const auto& sub : j["decoders"]) parse_into(sub, d, fused);
    } else if (type == "ByteLevel") {
        d.steps.push_back({decoder_byte_level});
    } else if (type == "Replace") {
        const auto& pat = j.at("pattern");
        if (!pat.contains("String"))
            fail("tokenizer.json: decoder Replace: only String patterns are supported, got {}", pat.dump());
        decoder_step s{decoder_replace};
        s.from = pat["String"].get<std::string>();
        s.to = j.at("content").get<std::string>();
        d.steps.push_back(s);
    } else if (type == "ByteFallback") {
        d.steps.push_back({decoder_byte_fallback});
    } else if (type == "Fuse") {
        fused = true;  // pieces are concatenated anyway; later per-token steps see one string
    } else if (type == "Strip") {
        decoder_step s{decoder_strip};
        s.from = j.value("content", std::string(" "));
        s.n_start = j.value("start", 0);
        s.n_stop = j.value("stop", 0);
        s.first_only = fused;
        if (fused && s.n_stop > 0)
            fail("tokenizer.json: decoder Strip with \"stop\" after Fuse is not supported");
        d.steps.push_back(s);
    } else if (type == "Metaspace") {
        decoder_step s{decoder_metaspace};
        s.from = j.value("replacement", std::string("\xE2\x96\x81"));
        std::string scheme =
            j.value("prepend_scheme", std::string(j.value("add_prefix_space", true) ? "always" : "never"));
        s.first_only = scheme != "never";  // the first token loses its leading space
        d.steps.push_back(s);
    } else {
        fail(
            "tokenizer.json: decoder type \"{}\" is not supported (ByteLevel, Replace, ByteFallback, Fuse, "
            "Strip, "
            "Metaspace, Sequence)",
            type);
    }
}

// Removes up to n leading (or trailing) copies of the one-character string c.
void strip(std::string& s, const std::string& c, int n_start, int n_stop) {
    for (int k = 0; k < n_start && s.compare(0, c.size(), c) == 0; ++k) s.erase(0, c.size());
    for (int k = 0; k < n_stop && s.size() >= c.size() && s.compare(s.size() - c.size(), c.size(), c) == 0;
         ++k)
        s.erase(s.size() - c.size());
}

}  // namespace

decoder decoder_parse(const nlohmann::json& j) {
    decoder d;
    bool fused = false;
    parse_into(j, d, fused);
    d.present = !j.is_null();
    return d;
}

std::string decoder::apply(const std::string& token, bool first) const {
    if (!present) return first ? token : " " + token;
    std::string s = token, raw;
    for (const decoder_step& st : steps) {
        switch (st.kind) {
            case decoder_byte_level:
                if (byte_level_decode(s, raw)) s = raw;  // characters outside the alphabet stay as they are
                break;
            case decoder_replace:
                replace_all(s, st.from, st.to);
                break;
            case decoder_byte_fallback:
                if (s.size() == 6 && s.compare(0, 3, "<0x") == 0 && s[5] == '>') {
                    unsigned v = 0;
                    bool ok = true;
                    for (int k = 3; k < 5; ++k) {
                        char c = s[size_t(k)];
                        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
                        ok = ok && d >= 0;
                        v = v * 16 + unsigned(d);
                    }
                    if (ok) s = std::string(1, char(v));
                }
                break;
            case decoder_strip:
                if (!st.first_only || first) strip(s, st.from, st.n_start, st.first_only ? 0 : st.n_stop);
                break;
            case decoder_metaspace:
                replace_all(s, st.from, " ");
                if (st.first_only && first && !s.empty() && s[0] == ' ') s.erase(0, 1);
                break;
        }
    }
    return s;
}

}  // namespace nibble
