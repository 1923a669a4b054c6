#include "tokenizer/pretokenize.h"

#include <algorithm>

#include "core/error.h"

namespace nibble {

namespace {

const char* k_gpt2_pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

split_behavior parse_behavior(const std::string& b) {
    if (b == "Removed") return split_removed;
    if (b == "Isolated") return split_isolated;
    if (b == "MergedWithPrevious") return split_merged_with_previous;
    if (b == "MergedWithNext") return split_merged_with_next;
    if (b == "Contiguous") return split_contiguous;
    fail("tokenizer.json: pre_tokenizer Split: unknown behavior \"{}\"", b);
}

void parse_into(const nlohmann::json& j, pretokenizer& p) {
    if (j.is_null()) return;
    if (!j.is_object() || !j.contains("type"))
        fail("tokenizer.json: pre_tokenizer: expected an object with a \"type\"");
    std::string type = j["type"].get<std::string>();
    if (type == "Sequence") {
        if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array())
            fail("tokenizer.json: pre_tokenizer Sequence: missing \"pretokenizers\" array");
        for (const auto& sub : j["pretokenizers"]) parse_into(sub, p);
    } else if (type == "Split") {
        if (!j.contains("pattern") || !j["pattern"].is_object())
            fail("tokenizer.json: pre_tokenizer Split: missing \"pattern\"");
        const auto& pat = j["pattern"];
        bool literal = pat.contains("String");
        if (!literal && !pat.contains("Regex"))
            fail("tokenizer.json: pre_tokenizer Split: \"pattern\" needs \"Regex\" or \"String\", got {}",
                 pat.dump());
        std::string text = pat[literal ? "String" : "Regex"].get<std::string>();
        pretokenizer_step s{pretokenizer_split,
                            regex(text, literal, "tokenizer.json: pre_tokenizer Split pattern")};
        s.behavior = parse_behavior(j.value("behavior", std::string("Isolated")));
        s.invert = j.value("invert", false);
        p.steps.push_back(std::move(s));
    } else if (type == "ByteLevel") {
        pretokenizer_step s{pretokenizer_byte_level, regex(k_gpt2_pattern, false, "ByteLevel GPT-2 pattern")};
        s.add_prefix_space = j.value("add_prefix_space", true);
        s.use_regex = j.value("use_regex", true);
        p.steps.push_back(std::move(s));
        p.byte_level = true;
    } else {
        fail("tokenizer.json: pre_tokenizer type \"{}\" is not supported (Split, ByteLevel, Sequence)", type);
    }
}

// Splits one piece by `re` following `behavior`/`invert`, appending the results to `out`.
void split_piece(std::string_view piece, const regex& re, split_behavior behavior, bool invert,
                 std::vector<regex_match>& matches, std::vector<std::string_view>& out) {
    matches.clear();
    re.find_all(piece, matches);
    // Segments cover the piece: (begin, end, is_delimiter).
    struct segment {
        size_t b, e;
        bool delim;
    };
    std::vector<segment> segs;
    segs.reserve(matches.size() * 2 + 1);
    size_t prev = 0;
    for (const regex_match& m : matches) {
        if (m.begin > prev) segs.push_back({prev, m.begin, invert});
        segs.push_back({m.begin, m.end, !invert});
        prev = m.end;
    }
    if (prev < piece.size()) segs.push_back({prev, piece.size(), invert});

    if (behavior == split_removed) {
        for (const segment& s : segs)
            if (!s.delim && s.e > s.b) out.push_back(piece.substr(s.b, s.e - s.b));
        return;
    }
    // HF's folds: a delimiter joins its non-delimiter neighbour (previous or next); Contiguous
    // joins runs of delimiters; Isolated keeps every segment.
    std::vector<std::pair<size_t, size_t>> acc;
    bool prev_delim = false;
    if (behavior == split_merged_with_next) {
        for (size_t k = segs.size(); k-- > 0;) {
            const segment& s = segs[k];
            if (s.delim && !prev_delim && !acc.empty())
                acc.back().first = s.b;
            else
                acc.push_back({s.b, s.e});
            prev_delim = s.delim;
        }
        std::reverse(acc.begin(), acc.end());
    } else {
        for (const segment& s : segs) {
            bool join = false;
            if (behavior == split_merged_with_previous) join = s.delim && !prev_delim && !acc.empty();
            if (behavior == split_contiguous) join = s.delim == prev_delim && !acc.empty();
            if (join)
                acc.back().second = s.e;
            else
                acc.push_back({s.b, s.e});
            prev_delim = s.delim;
        }
    }
    for (auto [b, e] : acc)
        if (e > b) out.push_back(piece.substr(b, e - b));
}

}  // namespace

pretokenizer pretokenizer_parse(const nlohmann::json& j) {
    pretokenizer p;
    parse_into(j, p);
    return p;
}

void pretokenizer::apply(std::string_view text, pretokenized& out) const {
    if (text.empty()) return;
    std::vector<std::string_view> cur{text}, next;
    std::vector<regex_match> matches;
    for (const pretokenizer_step& s : steps) {
        next.clear();
        if (s.kind == pretokenizer_split) {
            for (std::string_view piece : cur)
                split_piece(piece, s.pattern, s.behavior, s.invert, matches, next);
        } else {
            for (std::string_view piece : cur) {
                if (s.add_prefix_space && piece.front() != ' ') {
                    out.storage.push_back(" " + std::string(piece));
                    piece = out.storage.back();
                }
                if (s.use_regex)
                    split_piece(piece, s.pattern, split_isolated, false, matches, next);
                else
                    next.push_back(piece);
            }
        }
        std::swap(cur, next);
    }
    out.pieces.insert(out.pieces.end(), cur.begin(), cur.end());
}

}  // namespace nibble
