// The BPE model of tokenizer.json ("model": {"type": "BPE", ...}): vocab, merges (as "a b" strings
// or ["a", "b"] pairs), ignore_merges, byte_fallback, unk_token.
//
// Byte-level vocabularies are written in the GPT-2 alphabet (unicode.h); when `byte_level` is set the
// model takes raw bytes and maps them itself, so no mapped string is built on the hot path.
// Merges are applied lowest rank first, leftmost first on ties (HF's heap order), over ids: the
// merge table is keyed on the pair of ids. Results for pieces up to 256 bytes are cached.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace nibble {

struct string_hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using string_id_map = std::unordered_map<std::string, int32_t, string_hash, std::equal_to<>>;

class bpe_model {
  public:
    // Parses j["model"]. Fails naming the field: missing vocab/merges, a non-BPE type (WordPiece,
    // Unigram, ...), merges naming tokens not in the vocab.
    static bpe_model parse(const nlohmann::json& model, bool byte_level);

    // Appends the ids of one pre-tokenized piece: raw bytes when byte_level, else text in the
    // vocabulary's alphabet. Thread-safe.
    void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;

    // -1 when absent.
    int32_t token_to_id(std::string_view token) const;
    // The vocabulary string of `id` ("" when the id is not in the vocab).
    const std::string& id_to_token(int32_t id) const;
    // Raw bytes of `id` for byte-level vocabularies; false when the token is not byte-level text.
    bool id_to_bytes(int32_t id, std::string& out) const;
    int32_t n_vocab() const { return int32_t(tokens_.size()); }  // 1 + the largest id
    bool byte_level() const { return byte_level_; }
    bool byte_fallback() const { return byte_fallback_; }

  private:
    struct merge {
        int32_t rank;
        int32_t id;
    };
    void merge_symbols(std::vector<int32_t>& syms) const;
    void initial_symbols(std::string_view piece, std::vector<int32_t>& syms) const;
    const merge* find_merge(int32_t left, int32_t right) const;

    std::vector<std::string> tokens_;   // [n_vocab] id -> vocab string ("" for holes)
    string_id_map ids_;                 // vocab string -> id
    string_id_map raw_ids_;             // byte_level: raw bytes -> id
    std::vector<uint64_t> merge_keys_;  // open addressing table: (left << 32 | right), ~0 = empty
    std::vector<merge> merge_vals_;     // [merge_keys_.size()]
    uint64_t merge_mask_ = 0;
    std::array<int32_t, 256> byte_ids_{};      // byte_level: id of each single byte, -1 if absent
    std::array<int32_t, 256> fallback_ids_{};  // byte_fallback: id of "<0xXX>", -1 if absent
    int32_t unk_id_ = -1;
    bool byte_level_ = false;
    bool ignore_merges_ = false;
    bool byte_fallback_ = false;
    bool fuse_unk_ = false;

    // Piece -> ids cache (pieces up to 256 bytes; cleared when it reaches k_cache_capacity).
    mutable std::unique_ptr<std::mutex> cache_mutex_ = std::make_unique<std::mutex>();
    mutable std::unordered_map<std::string, std::vector<int32_t>, string_hash, std::equal_to<>> cache_;
};

}  // namespace nibble
