#include "server/reasoning.h"

#include <algorithm>

#include "core/error.h"

namespace nibble {

namespace {

constexpr std::string_view k_think = "<think>", k_end_think = "</think>";

// The length of the longest suffix of `s` that is a proper prefix of `tag`.
size_t partial_suffix(std::string_view s, std::string_view tag) {
    for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n)
        if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
    return 0;
}

}  // namespace

reasoning_parser::reasoning_parser(bool thinking) : phase_(thinking ? phase::start : phase::content) {}

reasoning_delta reasoning_parser::feed(std::string_view piece) {
    reasoning_delta d;
    if (phase_ == phase::content) {
        d.content = piece;
        return d;
    }
    held_ += piece;
    if (phase_ == phase::start) {
        if (held_.size() < k_think.size() && k_think.substr(0, held_.size()) == held_) return d;
        if (std::string_view(held_).substr(0, k_think.size()) == k_think) held_.erase(0, k_think.size());
        phase_ = phase::reasoning;
    }
    if (size_t end = held_.find(k_end_think); end != std::string::npos) {
        d.reasoning = held_.substr(0, end);
        d.content = held_.substr(end + k_end_think.size());
        held_.clear();
        phase_ = phase::content;
        return d;
    }
    const size_t keep = partial_suffix(held_, k_end_think);
    d.reasoning = held_.substr(0, held_.size() - keep);
    held_.erase(0, held_.size() - keep);
    return d;
}

reasoning_delta reasoning_parser::finish() {
    reasoning_delta d;
    if (phase_ != phase::content) d.reasoning = std::move(held_);  // no "</think>": all reasoning
    held_.clear();
    phase_ = phase::content;
    return d;
}

const std::vector<std::string>& reasoning_parser_names() {
    static const std::vector<std::string> names = {"qwen3"};
    return names;
}

bool reasoning_parser_known(const std::string& name) {
    const auto& names = reasoning_parser_names();
    return std::find(names.begin(), names.end(), name) != names.end();
}

std::unique_ptr<reasoning_parser> reasoning_parser_make(const std::string& name, bool thinking) {
    if (!reasoning_parser_known(name)) fail("unknown reasoning parser '{}'", name);
    return std::make_unique<reasoning_parser>(thinking);
}

}  // namespace nibble
