#include "tokenizer/tokenizer.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/unicode.h"

namespace nibble {

struct tokenizer_impl {
    normalizer norm;
    pretokenizer pre;
    bpe_model model;
    post_processor post;
    decoder dec;
    std::vector<added_token> added;           // [n_added] as listed in tokenizer.json
    std::vector<int32_t> added_by_id;         // [n_vocab] index into `added`, -1 for model tokens
    string_id_map added_ids;                  // content -> id
    added_token_matcher raw_match[2];         // non-normalized tokens: [0] all, [1] non-special only
    added_token_matcher normalized_match[2];  // normalized tokens: [0] all, [1] non-special only
    int32_t n_vocab = 0;
    int32_t bos_id = -1, eos_id = -1;
    std::string bos, eos, pad;

    void encode_segment(std::string_view seg, int which, std::vector<int32_t>& out) const;
    void encode_normalized(std::string_view text, std::vector<int32_t>& out) const;
};

namespace {

std::string read_text(const std::string& path, bool required) {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
        if (required) fail("cannot open {}", path);
        return "";
    }
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// A token named in tokenizer_config.json: a string, an AddedToken object {"content": ...}, or null.
std::string config_token(const nlohmann::json& cfg, const char* key) {
    if (!cfg.contains(key)) return "";
    const auto& v = cfg[key];
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string())
        return v["content"].get<std::string>();
    return "";
}

}  // namespace

tokenizer::tokenizer() : impl_(std::make_unique<tokenizer_impl>()) {}
tokenizer::tokenizer(tokenizer&&) noexcept = default;
tokenizer& tokenizer::operator=(tokenizer&&) noexcept = default;
tokenizer::~tokenizer() = default;

tokenizer tokenizer::load(const std::string& dir) {
    std::string tj = read_text(dir + "/tokenizer.json", true);
    std::string cj = read_text(dir + "/tokenizer_config.json", false);
    try {
        return from_json(tj, cj);
    } catch (const error& e) {
        fail("{}: {}", dir, e.what());
    }
}

tokenizer tokenizer::from_json(const std::string& tokenizer_json, const std::string& config_json) {
    nlohmann::json j, cfg = nlohmann::json::object();
    try {
        j = nlohmann::json::parse(tokenizer_json);
    } catch (const nlohmann::json::exception& e) {
        fail("tokenizer.json: not valid JSON: {}", e.what());
    }
    if (!config_json.empty()) {
        try {
            cfg = nlohmann::json::parse(config_json);
        } catch (const nlohmann::json::exception& e) {
            fail("tokenizer_config.json: not valid JSON: {}", e.what());
        }
    }
    if (!j.is_object()) fail("tokenizer.json: expected a JSON object");
    if (!j.contains("model")) fail("tokenizer.json: missing \"model\"");

    tokenizer t;
    tokenizer_impl& m = *t.impl_;
    try {
        m.norm = normalizer_parse(j.value("normalizer", nlohmann::json()));
        m.pre = pretokenizer_parse(j.value("pre_tokenizer", nlohmann::json()));
        m.model = bpe_model::parse(j["model"], m.pre.byte_level);
        m.post = post_processor_parse(j.value("post_processor", nlohmann::json()));
        m.dec = decoder_parse(j.value("decoder", nlohmann::json()));
        m.added = added_tokens_parse(j.value("added_tokens", nlohmann::json()));
    } catch (const nlohmann::json::exception& e) {
        fail("tokenizer.json: unexpected structure: {}", e.what());
    }

    m.n_vocab = m.model.n_vocab();
    for (const added_token& a : m.added) m.n_vocab = std::max(m.n_vocab, a.id + 1);
    m.added_by_id.assign(size_t(m.n_vocab), -1);
    std::vector<bool> use[4];
    for (auto& u : use) u.assign(m.added.size(), false);
    for (size_t i = 0; i < m.added.size(); ++i) {
        const added_token& a = m.added[i];
        m.added_by_id[size_t(a.id)] = int32_t(i);
        m.added_ids.emplace(a.content, a.id);
        bool normalized = a.normalized && !m.norm.empty();
        use[normalized ? 2 : 0][i] = true;
        use[normalized ? 3 : 1][i] = !a.special;
    }
    for (int k = 0; k < 2; ++k) {
        m.raw_match[k] = added_token_matcher(m.added, use[k]);
        m.normalized_match[k] = added_token_matcher(m.added, use[2 + k]);
    }

    m.bos = config_token(cfg, "bos_token");
    m.eos = config_token(cfg, "eos_token");
    m.pad = config_token(cfg, "pad_token");
    m.bos_id = m.bos.empty() ? -1 : t.token_id(m.bos);
    m.eos_id = m.eos.empty() ? -1 : t.token_id(m.eos);
    if (!m.bos.empty() && m.bos_id < 0)
        fail("tokenizer_config.json: bos_token \"{}\" is not a known token", m.bos);
    if (!m.eos.empty() && m.eos_id < 0)
        fail("tokenizer_config.json: eos_token \"{}\" is not a known token", m.eos);
    if (m.bos_id < 0 && m.post.prefix.size() == 1) {
        m.bos_id = m.post.prefix[0];
        m.bos = t.token_text(m.bos_id);
    }
    // add_bos_token / add_eos_token override what the post-processor adds.
    if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean() && m.bos_id >= 0) {
        bool has = !m.post.prefix.empty() && m.post.prefix.front() == m.bos_id;
        bool want = cfg["add_bos_token"].get<bool>();
        if (want && !has) m.post.prefix.insert(m.post.prefix.begin(), m.bos_id);
        if (!want && has) m.post.prefix.erase(m.post.prefix.begin());
    }
    if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean() && m.eos_id >= 0) {
        bool has = !m.post.suffix.empty() && m.post.suffix.back() == m.eos_id;
        bool want = cfg["add_eos_token"].get<bool>();
        if (want && !has) m.post.suffix.push_back(m.eos_id);
        if (!want && has) m.post.suffix.pop_back();
    }
    return t;
}

void tokenizer_impl::encode_normalized(std::string_view text, std::vector<int32_t>& out) const {
    pretokenized pieces;
    pre.apply(text, pieces);
    for (std::string_view p : pieces.pieces) model.encode_piece(p, out);
}

// Encodes a stretch of raw text with no raw-matched added token in it.
void tokenizer_impl::encode_segment(std::string_view seg, int which, std::vector<int32_t>& out) const {
    if (seg.empty()) return;
    if (norm.empty()) {
        encode_normalized(seg, out);
        return;
    }
    std::string text = norm.apply(seg);
    const added_token_matcher& nm = normalized_match[which];
    if (nm.empty()) {
        encode_normalized(text, out);
        return;
    }
    std::vector<added_match> matches;
    nm.find(text, added, matches);
    size_t prev = 0;
    for (const added_match& a : matches) {
        encode_normalized(std::string_view(text).substr(prev, a.begin - prev), out);
        out.push_back(added[size_t(a.index)].id);
        prev = a.end;
    }
    encode_normalized(std::string_view(text).substr(prev), out);
}

std::vector<int32_t> tokenizer::encode(std::string_view input, bool add_special, bool parse_special) const {
    const tokenizer_impl& m = *impl_;
    std::string clean;
    std::string_view text = input;
    if (!utf8_is_valid(input)) {
        clean = utf8_sanitize(input);
        text = clean;
    }
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 4);
    if (add_special) out.insert(out.end(), m.post.prefix.begin(), m.post.prefix.end());
    int which = parse_special ? 0 : 1;
    std::vector<added_match> matches;
    m.raw_match[which].find(text, m.added, matches);
    size_t prev = 0;
    for (const added_match& a : matches) {
        m.encode_segment(text.substr(prev, a.begin - prev), which, out);
        out.push_back(m.added[size_t(a.index)].id);
        prev = a.end;
    }
    m.encode_segment(text.substr(prev), which, out);
    if (add_special) out.insert(out.end(), m.post.suffix.begin(), m.post.suffix.end());
    return out;
}

std::string tokenizer::token_bytes(int32_t id, bool first, bool skip_special) const {
    const tokenizer_impl& m = *impl_;
    if (id < 0 || id >= m.n_vocab) return "";
    int32_t a = m.added_by_id[size_t(id)];
    if (a >= 0) {
        const added_token& t = m.added[size_t(a)];
        return skip_special && t.special ? std::string() : t.content;
    }
    const std::string& tok = m.model.id_to_token(id);
    if (tok.empty()) return "";
    return m.dec.apply(tok, first);
}

std::string tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
    std::string bytes;
    bool first = true;
    for (int32_t id : ids) {
        std::string piece = token_bytes(id, first, skip_special);
        if (piece.empty()) continue;
        bytes += piece;
        first = false;
    }
    return utf8_is_valid(bytes) ? bytes : utf8_sanitize(bytes);
}

int32_t tokenizer::token_id(std::string_view token) const {
    auto it = impl_->added_ids.find(token);
    if (it != impl_->added_ids.end()) return it->second;
    return impl_->model.token_to_id(token);
}

std::string tokenizer::token_text(int32_t id) const {
    const tokenizer_impl& m = *impl_;
    if (id < 0 || id >= m.n_vocab) return "";
    int32_t a = m.added_by_id[size_t(id)];
    return a >= 0 ? m.added[size_t(a)].content : m.model.id_to_token(id);
}

bool tokenizer::is_special(int32_t id) const {
    const tokenizer_impl& m = *impl_;
    if (id < 0 || id >= m.n_vocab) return false;
    int32_t a = m.added_by_id[size_t(id)];
    return a >= 0 && m.added[size_t(a)].special;
}

int32_t tokenizer::n_vocab() const {
    return impl_->n_vocab;
}
const std::vector<added_token>& tokenizer::added_tokens() const {
    return impl_->added;
}
int32_t tokenizer::bos_id() const {
    return impl_->bos_id;
}
int32_t tokenizer::eos_id() const {
    return impl_->eos_id;
}
const std::string& tokenizer::bos_token() const {
    return impl_->bos;
}
const std::string& tokenizer::eos_token() const {
    return impl_->eos;
}
const std::string& tokenizer::pad_token() const {
    return impl_->pad;
}

bool tokenizer::regex_jit() const {
    for (const pretokenizer_step& s : impl_->pre.steps)
        if ((s.kind == pretokenizer_split || s.use_regex) && !s.pattern.jit()) return false;
    return true;
}

}  // namespace nibble
