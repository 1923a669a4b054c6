#include "engine/stop_checker.h"

#include <algorithm>

#include "core/error.h"

namespace nibble {

const char* finish_reason_name(finish_reason r) {
    switch (r) {
        case finish_reason_stop:
            return "stop";
        case finish_reason_length:
            return "length";
        case finish_reason_none:
            break;
    }
    return "";
}

stop_checker::stop_checker(const sampling_params& params, int64_t max_new_tokens)
    : stop_(params.stop), min_tokens_(params.min_tokens) {
    for (const auto& s : stop_)
        if (s.empty()) fail("stop_checker: stop strings cannot be empty");
    eos_token_id_ = params.ignore_eos ? -1 : params.eos_token_id;
    if (!params.ignore_eos) stop_token_ids_ = params.extra_eos_token_ids;
    stop_token_ids_.insert(stop_token_ids_.end(), params.stop_token_ids.begin(), params.stop_token_ids.end());
    max_tokens_ = std::min(max_new_tokens, params.max_tokens.value_or(std::numeric_limits<int64_t>::max()));
    if (max_tokens_ < 1) fail("stop_checker: no room for a generated token (token limit {})", max_tokens_);
}

std::pair<size_t, size_t> stop_checker::find_stop(std::string_view text, size_t n_old) const {
    std::pair<size_t, size_t> best{std::string_view::npos, 0};
    for (size_t i = 0; i < stop_.size(); i++) {
        // Matches ending in the new text only: start past n_old - len.
        size_t from = n_old >= stop_[i].size() ? n_old - stop_[i].size() + 1 : 0;
        size_t pos = text.find(stop_[i], from);
        if (pos < best.first) best = {pos, i};
    }
    return best;
}

size_t stop_checker::held_suffix(std::string_view text) const {
    size_t best = 0;
    for (const auto& s : stop_) {
        // Longest first; shorter lengths than the current best cannot improve it.
        for (size_t len = std::min(s.size() - 1, text.size()); len > best; len--) {
            if (text.substr(text.size() - len) == std::string_view(s).substr(0, len)) {
                best = len;
                break;
            }
        }
    }
    return best;
}

stop_result stop_checker::push(int32_t token, std::string_view piece) {
    if (finish_ != finish_reason_none) fail("stop_checker: push after the sequence finished");
    n_generated_++;
    stop_result r;
    const bool past_min = n_generated_ > min_tokens_;
    const bool at_length = n_generated_ >= max_tokens_;

    if (!at_length && past_min) {
        bool is_stop_id =
            std::find(stop_token_ids_.begin(), stop_token_ids_.end(), token) != stop_token_ids_.end();
        if ((eos_token_id_ >= 0 && token == eos_token_id_) || is_stop_id) {
            if (is_stop_id && token != eos_token_id_) r.stop_token = token;
            r.text = std::move(held_);
            held_.clear();
            r.finish = finish_ = finish_reason_stop;
            return r;
        }
    }

    std::string text = std::move(held_);
    held_.clear();
    const size_t n_old = text.size();
    text.append(piece);
    if (past_min && !stop_.empty()) {
        auto [pos, which] = find_stop(text, n_old);
        if (pos != std::string_view::npos) {
            text.resize(pos);
            r.text = std::move(text);
            r.stop_string = stop_[which];
            r.finish = finish_ = finish_reason_stop;
            return r;
        }
    }
    if (at_length) {
        r.text = std::move(text);
        r.finish = finish_ = finish_reason_length;
        return r;
    }
    size_t hold = held_suffix(text);
    held_.assign(text, text.size() - hold, hold);
    text.resize(text.size() - hold);
    r.text = std::move(text);
    return r;
}

std::string stop_checker::flush() {
    std::string out = std::move(held_);
    held_.clear();
    return out;
}

}  // namespace nibble
