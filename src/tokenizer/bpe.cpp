#include "tokenizer/bpe.h"

#include <algorithm>
#include <queue>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace nibble {

namespace {

constexpr size_t k_cache_max_piece = 256;
constexpr size_t k_cache_capacity = 1 << 18;
constexpr uint64_t k_empty = ~uint64_t(0);

inline uint64_t pair_key(int32_t a, int32_t b) {
    return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
}

inline uint64_t mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
}

}  // namespace

const bpe_model::merge* bpe_model::find_merge(int32_t left, int32_t right) const {
    if (merge_keys_.empty()) return nullptr;
    uint64_t key = pair_key(left, right);
    for (uint64_t slot = mix(key) & merge_mask_;; slot = (slot + 1) & merge_mask_) {
        uint64_t k = merge_keys_[slot];
        if (k == key) return &merge_vals_[slot];
        if (k == k_empty) return nullptr;
    }
}

bpe_model bpe_model::parse(const nlohmann::json& model, bool byte_level) {
    if (!model.is_object()) fail("tokenizer.json: missing \"model\" object");
    std::string type = model.value("type", std::string("BPE"));
    if (type != "BPE")
        fail(
            "tokenizer.json: model.type \"{}\" is not supported (only BPE; WordPiece/Unigram/WordLevel are "
            "not)",
            type);
    if (!model.contains("vocab") || !model["vocab"].is_object())
        fail("tokenizer.json: model.vocab is missing or not an object");
    if (!model.contains("merges") || !model["merges"].is_array())
        fail("tokenizer.json: model.merges is missing or not an array");
    for (const char* field : {"continuing_subword_prefix", "end_of_word_suffix"}) {
        if (model.contains(field) && model[field].is_string() && !model[field].get<std::string>().empty())
            fail("tokenizer.json: model.{} is not supported", field);
    }

    bpe_model m;
    m.byte_level_ = byte_level;
    m.ignore_merges_ = model.value("ignore_merges", false);
    m.byte_fallback_ = model.value("byte_fallback", false);
    m.fuse_unk_ = model.value("fuse_unk", false);

    const auto& vocab = model["vocab"];
    m.ids_.reserve(vocab.size());
    int32_t max_id = -1;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        if (!it.value().is_number_integer())
            fail("tokenizer.json: model.vocab[\"{}\"]: id is not an integer", it.key());
        int64_t id = it.value().get<int64_t>();
        if (id < 0 || id > (1 << 30))
            fail("tokenizer.json: model.vocab[\"{}\"]: id {} out of range", it.key(), id);
        m.ids_[it.key()] = int32_t(id);
        max_id = std::max(max_id, int32_t(id));
    }
    m.tokens_.assign(size_t(max_id + 1), std::string());
    for (const auto& [tok, id] : m.ids_) m.tokens_[size_t(id)] = tok;

    m.byte_ids_.fill(-1);
    m.fallback_ids_.fill(-1);
    if (byte_level) {
        m.raw_ids_.reserve(m.ids_.size());
        std::string raw;
        for (const auto& [tok, id] : m.ids_)
            if (byte_level_decode(tok, raw)) m.raw_ids_[raw] = id;
        for (int b = 0; b < 256; ++b)
            m.byte_ids_[b] = m.token_to_id(byte_level_encode(std::string(1, char(b))));
    }
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        m.fallback_ids_[b] = m.token_to_id(name);
    }
    if (model.contains("unk_token") && model["unk_token"].is_string()) {
        std::string unk = model["unk_token"].get<std::string>();
        m.unk_id_ = m.token_to_id(unk);
        if (m.unk_id_ < 0) fail("tokenizer.json: model.unk_token \"{}\" is not in model.vocab", unk);
    }

    // Merges: rank = position. The table is sized to a power of two at most half full.
    const auto& merges = model["merges"];
    size_t cap = 16;
    while (cap < merges.size() * 2) cap <<= 1;
    m.merge_keys_.assign(cap, k_empty);
    m.merge_vals_.assign(cap, merge{0, 0});
    m.merge_mask_ = cap - 1;
    std::string left, right;
    for (size_t r = 0; r < merges.size(); ++r) {
        const auto& e = merges[r];
        if (e.is_string()) {
            const std::string& s = e.get_ref<const std::string&>();
            size_t sp = s.find(' ');
            if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
                fail("tokenizer.json: model.merges[{}] \"{}\" is not two tokens separated by one space", r,
                     s);
            left = s.substr(0, sp);
            right = s.substr(sp + 1);
        } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
            left = e[0].get<std::string>();
            right = e[1].get<std::string>();
        } else {
            fail("tokenizer.json: model.merges[{}] is neither \"a b\" nor [\"a\", \"b\"]: {}", r, e.dump());
        }
        int32_t a = m.token_to_id(left), b = m.token_to_id(right), ab = m.token_to_id(left + right);
        if (a < 0) fail("tokenizer.json: model.merges[{}]: token \"{}\" is not in model.vocab", r, left);
        if (b < 0) fail("tokenizer.json: model.merges[{}]: token \"{}\" is not in model.vocab", r, right);
        if (ab < 0)
            fail("tokenizer.json: model.merges[{}]: merged token \"{}\" is not in model.vocab", r,
                 left + right);
        uint64_t key = pair_key(a, b);
        uint64_t slot = mix(key) & m.merge_mask_;
        while (m.merge_keys_[slot] != k_empty && m.merge_keys_[slot] != key)
            slot = (slot + 1) & m.merge_mask_;
        m.merge_keys_[slot] = key;  // a repeated merge takes its last rank, as HF's map collect does
        m.merge_vals_[slot] = merge{int32_t(r), ab};
    }
    return m;
}

int32_t bpe_model::token_to_id(std::string_view token) const {
    auto it = ids_.find(token);
    return it == ids_.end() ? -1 : it->second;
}

const std::string& bpe_model::id_to_token(int32_t id) const {
    static const std::string empty;
    return id >= 0 && id < int32_t(tokens_.size()) ? tokens_[size_t(id)] : empty;
}

bool bpe_model::id_to_bytes(int32_t id, std::string& out) const {
    const std::string& tok = id_to_token(id);
    if (tok.empty()) return false;
    return byte_level_decode(tok, out);
}

void bpe_model::initial_symbols(std::string_view piece, std::vector<int32_t>& syms) const {
    auto push_unknown = [&](std::string_view bytes) {
        if (byte_fallback_) {
            bool all = true;
            for (unsigned char c : bytes) all = all && fallback_ids_[c] >= 0;
            if (all) {
                for (unsigned char c : bytes) syms.push_back(fallback_ids_[c]);
                return;
            }
        }
        if (unk_id_ < 0) return;  // no unk token: the character is dropped (as HF does)
        if (fuse_unk_ && !syms.empty() && syms.back() == unk_id_) return;
        syms.push_back(unk_id_);
    };
    if (byte_level_) {
        for (size_t i = 0; i < piece.size(); ++i) {
            int32_t id = byte_ids_[(unsigned char)piece[i]];
            if (id >= 0)
                syms.push_back(id);
            else
                push_unknown(piece.substr(i, 1));
        }
        return;
    }
    for (size_t i = 0; i < piece.size();) {
        size_t n = std::max(1, utf8_seq_len((unsigned char)piece[i]));
        n = std::min(n, piece.size() - i);
        int32_t id = token_to_id(piece.substr(i, n));
        if (id >= 0)
            syms.push_back(id);
        else
            push_unknown(piece.substr(i, n));
        i += n;
    }
}

void bpe_model::merge_symbols(std::vector<int32_t>& syms) const {
    size_t n = syms.size();
    if (n < 2) return;
    if (n == 2) {
        if (const merge* m = find_merge(syms[0], syms[1])) syms = {m->id};
        return;
    }
    // Symbols form a linked list; candidate merges sit in a min-heap ordered by (rank, position).
    // Stale entries are skipped when popped: the pair at `pos` must still be (left, right).
    std::vector<int32_t> next(n), prev(n);
    for (size_t i = 0; i < n; ++i) {
        next[i] = i + 1 < n ? int32_t(i + 1) : -1;
        prev[i] = int32_t(i) - 1;
    }
    struct cand {
        int32_t rank, pos, left, right, id;
        bool operator>(const cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::vector<cand> heap;
    heap.reserve(n * 2);
    auto push = [&](int32_t pos) {
        int32_t nx = next[size_t(pos)];
        if (nx < 0) return;
        if (const merge* m = find_merge(syms[size_t(pos)], syms[size_t(nx)])) {
            heap.push_back({m->rank, pos, syms[size_t(pos)], syms[size_t(nx)], m->id});
            std::push_heap(heap.begin(), heap.end(), std::greater<>());
        }
    };
    for (size_t i = 0; i + 1 < n; ++i) push(int32_t(i));
    std::vector<bool> dead(n, false);
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), std::greater<>());
        cand c = heap.back();
        heap.pop_back();
        size_t pos = size_t(c.pos);
        if (dead[pos] || syms[pos] != c.left) continue;
        int32_t nx = next[pos];
        if (nx < 0 || syms[size_t(nx)] != c.right) continue;
        syms[pos] = c.id;
        dead[size_t(nx)] = true;
        next[pos] = next[size_t(nx)];
        if (next[pos] >= 0) prev[size_t(next[pos])] = int32_t(pos);
        if (prev[pos] >= 0) push(prev[pos]);
        push(int32_t(pos));
    }
    size_t w = 0;
    for (int32_t i = 0; i >= 0; i = next[size_t(i)]) syms[w++] = syms[size_t(i)];
    syms.resize(w);
}

void bpe_model::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
    if (piece.empty()) return;
    if (ignore_merges_) {
        const string_id_map& whole = byte_level_ ? raw_ids_ : ids_;
        auto it = whole.find(piece);
        if (it != whole.end()) {
            out.push_back(it->second);
            return;
        }
    }
    bool cacheable = piece.size() <= k_cache_max_piece;
    if (cacheable) {
        std::lock_guard<std::mutex> lock(*cache_mutex_);
        auto it = cache_.find(piece);
        if (it != cache_.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    std::vector<int32_t> syms;
    syms.reserve(piece.size());
    initial_symbols(piece, syms);
    merge_symbols(syms);
    out.insert(out.end(), syms.begin(), syms.end());
    if (cacheable) {
        std::lock_guard<std::mutex> lock(*cache_mutex_);
        if (cache_.size() >= k_cache_capacity) cache_.clear();
        cache_.emplace(std::string(piece), std::move(syms));
    }
}

}  // namespace nibble
