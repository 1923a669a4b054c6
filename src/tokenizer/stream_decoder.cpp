#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace nibble {

stream_decoder::stream_decoder(const tokenizer& tok, bool skip_special)
    : tok_(&tok), skip_special_(skip_special) {}

std::string stream_decoder::push(int32_t id) {
    std::string piece = tok_->token_bytes(id, first_, skip_special_);
    if (piece.empty()) return "";
    first_ = false;
    pending_ += piece;
    size_t keep = utf8_incomplete_tail(pending_);
    std::string_view ready = std::string_view(pending_).substr(0, pending_.size() - keep);
    std::string out = utf8_is_valid(ready) ? std::string(ready) : utf8_sanitize(ready);
    pending_.erase(0, pending_.size() - keep);
    return out;
}

std::string stream_decoder::flush() {
    std::string out = utf8_sanitize(pending_);
    pending_.clear();
    return out;
}

}  // namespace nibble
